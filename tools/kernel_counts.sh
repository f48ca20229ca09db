#!/usr/bin/env bash
# Instruction counts and a same-run timing ratio of the x86 kernel sets, without Python bindings
# (tests/native/kernel_count.cpp):
#   1. dynamic instructions per element of the scalar kernels under valgrind --tool=callgrind
#      (repeatable on a loaded machine; valgrind cannot run AVX-512);
#   2. the AVX2 kernels' instructions and vector ALU operations per element (executed, the same
#      callgrind runs), AVX-512's (static), and the AVX2 / AVX-512 time ratio they bound on each
#      kind of core (tools/op_mix.py);
#   3. `kernel_count ratio avx2 avx512` (or avx2 scalar on a CPU without AVX-512): both sets
#      alternated in one process on a 32768-element (cache-resident) buffer, one thread, medians.
# (Static per-group counts went with the group function: the AVX2 words now come from generated
# assembly, whose schedule tools/gen_philox_avx2.py states: 8 vector operations per round of
# four blocks for rounds 3 to 9, 7 for rounds 0 and 1 with the restart and 7 for round 2 when
# the blocks share the counter's high word (else 6 + 8 + 8), plus the stores; float32 uniform_'s
# variant ends in 12 operations that leave the words in memory order.)
# Usage: tools/kernel_counts.sh [ROUNDS]   (needs g++; valgrind and bc for part 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-31}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# -O3 as the package builds (CMake's Release): a change measured at -O2 once read 0.93x there and
# 1.08x at -O3.
f=(-std=c++17 -O3 -ffp-contract=off -fno-fast-math -fno-math-errno -w -Icsrc/include)
g++ "${f[@]}" -DFASTINIT_ISA=scalar -DFASTINIT_ISA_SCALAR=1 -c csrc/kernels_isa.cpp -o "$work/scalar.o" &
g++ "${f[@]}" -mavx2 -mfma -mf16c -mbmi2 -DFASTINIT_ISA=avx2 -DFASTINIT_ISA_AVX2=1 \
  -c csrc/kernels_isa.cpp -o "$work/avx2.o" &
g++ "${f[@]}" -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c -mbmi2 \
  -DFASTINIT_ISA=avx512 -DFASTINIT_ISA_AVX512=1 -c csrc/kernels_isa.cpp -o "$work/avx512.o" &
wait
have=(-DFASTINIT_HAVE_AVX2=1 -DFASTINIT_HAVE_AVX512=1)
g++ "${f[@]}" "${have[@]}" -DFASTINIT_COMPILED_ISAS='"scalar,avx2,avx512,"' -c csrc/dispatch.cpp -o "$work/dispatch.o"
g++ "${f[@]}" -fopenmp -c csrc/fill.cpp -o "$work/fill.o"
# -no-pie: fixed addresses, so op_mix.py can match callgrind's instruction counts to objdump's.
g++ "${f[@]}" "${have[@]}" -fopenmp -no-pie tests/native/kernel_count.cpp "$work"/{scalar,avx2,avx512,dispatch,fill}.o -o "$work/kc"

if [[ "${SKIP_CALLGRIND:-0}" == 0 ]] && command -v valgrind >/dev/null; then
  echo "== scalar: dynamic instructions per element (callgrind; difference of 3 and 1 fills of 65536)"
  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/kc" "$@" 2>&1 |
           sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  for isa in scalar; do
    for op in uniform normal trunc_normal; do
      for dt in f32 bf16; do
        a=$(ir "$isa" "$op" "$dt" 65536 1)
        b=$(ir "$isa" "$op" "$dt" 65536 3)
        printf '%-7s %-13s %-5s %6.2f\n' "$isa" "$op" "$dt" "$(echo "($b - $a) / 131072" | bc -l)"
      done
    done
  done
fi

if [[ "${SKIP_CALLGRIND:-0}" == 0 ]] && command -v valgrind >/dev/null && command -v objdump >/dev/null; then
  echo "== AVX2 against AVX-512 (tools/op_mix.py)"
  python3 tools/op_mix.py "$work/kc" "$work/avx512.o"
fi

# The best set against AVX2 where the CPU has AVX-512 (the issue's ratio), else AVX2 against scalar.
other=scalar
grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512bw /proc/cpuinfo && other=avx512
echo "== one thread, 32768 elements, $rounds rounds alternating avx2 and $other (medians)"
[[ "$rounds" == 0 ]] || "$work/kc" ratio avx2 "$other" 32768 "$rounds"
