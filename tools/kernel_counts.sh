#!/usr/bin/env bash
# Instruction counts and a same-run timing ratio of the x86 kernel sets, without Python bindings
# (tests/native/kernel_count.cpp):
#   1. dynamic instructions per element of the AVX2 (and scalar) kernels under
#      valgrind --tool=callgrind (repeatable on a loaded machine; valgrind cannot run AVX-512);
#   2. static instructions per element of each emit_group instantiation (one group of Philox
#      blocks, branch-free except the rare tail branches) in the AVX2 and AVX-512 objects, with
#      the 32x32-bit multiplies, shuffles, FMAs and divisions broken out (Philox's ten rounds
#      are unrolled, so the static count of uniform/normal is close to the executed count; GCC
#      may copy a group's tail once per store kind, which the static count includes twice);
#   3. `kernel_count ratio avx2 avx512`: both sets alternated in one process on a 32768-element
#      (cache-resident) buffer, one thread, medians.
# Usage: tools/kernel_counts.sh [ROUNDS]   (needs g++, objdump, python3; valgrind for part 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-31}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
f=(-std=c++17 -O2 -ffp-contract=off -fno-fast-math -fno-math-errno -w -Icsrc/include)
g++ "${f[@]}" -DFASTINIT_ISA=scalar -DFASTINIT_ISA_SCALAR=1 -c csrc/kernels_isa.cpp -o "$work/scalar.o" &
g++ "${f[@]}" -mavx2 -mfma -mf16c -mbmi2 -DFASTINIT_ISA=avx2 -DFASTINIT_ISA_AVX2=1 \
  -c csrc/kernels_isa.cpp -o "$work/avx2.o" &
g++ "${f[@]}" -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c -mbmi2 \
  -DFASTINIT_ISA=avx512 -DFASTINIT_ISA_AVX512=1 -c csrc/kernels_isa.cpp -o "$work/avx512.o" &
wait
have=(-DFASTINIT_HAVE_AVX2=1 -DFASTINIT_HAVE_AVX512=1)
g++ "${f[@]}" "${have[@]}" -DFASTINIT_COMPILED_ISAS='"scalar,avx2,avx512,"' -c csrc/dispatch.cpp -o "$work/dispatch.o"
g++ "${f[@]}" -fopenmp -c csrc/fill.cpp -o "$work/fill.o"
g++ "${f[@]}" "${have[@]}" -fopenmp tests/native/kernel_count.cpp "$work"/{scalar,avx2,avx512,dispatch,fill}.o -o "$work/kc"

if [[ "${SKIP_CALLGRIND:-0}" == 0 ]] && command -v valgrind >/dev/null; then
  echo "== dynamic instructions per element (callgrind; difference of 3 and 1 fills of 65536)"
  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/kc" "$@" 2>&1 |
           sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  for isa in avx2 scalar; do
    for op in uniform normal trunc_normal; do
      for dt in f32 bf16; do
        a=$(ir "$isa" "$op" "$dt" 65536 1)
        b=$(ir "$isa" "$op" "$dt" 65536 3)
        printf '%-7s %-13s %-5s %6.2f\n' "$isa" "$op" "$dt" "$(echo "($b - $a) / 131072" | bc -l)"
      done
    done
  done
fi

echo "== static instructions per element of one group (emit_group, 64 elements per group;"
echo "   trunc_normal includes its rarely taken tail branch, and a tail copied per store kind"
echo "   counts twice, so static counts overstate)"
python3 - "$work/avx2.o" "$work/avx512.o" <<'PY'
import collections, re, subprocess, sys
cats = {"vpmuludq": lambda i: i == "vpmuludq",
        "shuffle": lambda i: re.match(r"v(p?shuf|perm|punpck|unpck|insert|extract|pack|palignr)", i),
        "fma": lambda i: i.startswith(("vfmadd", "vfnmadd", "vfmsub", "vfnmsub")),
        "div": lambda i: i.startswith("vdiv"),
        "broadcast": lambda i: "broadcast" in i}
names = {0: "uniform", 1: "normal", 2: "trunc_normal"}
types = {0: "f32", 3: "bf16", 1: "f64", 2: "f16"}
res = {}
for obj in sys.argv[1:]:
    isa = obj.rsplit("/", 1)[-1][:-2]
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", obj], capture_output=True,
                          text=True, check=True).stdout
    cur = None
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            mm = re.search(r"emit_group<.*?\(fastinit::Dist\)(\d), \(fastinit::DType\)(\d)", m.group(1))
            cur = (isa, int(mm.group(1)), int(mm.group(2))) if mm else None
            if "philox_vec_half" in m.group(1):  # AVX2: called twice per group, out of line
                cur = (isa, "philox")
            if cur:
                res[cur] = []
        elif cur and re.match(r"^\s+[0-9a-f]+:\t\S", line):
            res[cur].append(line.split("\t")[1].split()[0])
print(f"{'op':13s} {'dtype':5s} {'set':7s} {'total':>6s} " + " ".join(f"{c:>9s}" for c in cats))
for d in (0, 1, 2):
    for t in (0, 3):
        for isa in ("avx2", "avx512"):
            ins = res.get((isa, d, t), []) + 2 * res.get((isa, "philox"), [])
            c = collections.Counter(ins)
            row = [sum(n for i, n in c.items() if f(i)) / 64 for f in cats.values()]
            print(f"{names[d]:13s} {types[t]:5s} {isa:7s} {len(ins) / 64:6.2f} " +
                  " ".join(f"{v:9.2f}" for v in row))
PY

echo "== one thread, 32768 elements, $rounds rounds alternating the sets (medians)"
[[ "$rounds" == 0 ]] || "$work/kc" ratio avx2 avx512 32768 "$rounds"
