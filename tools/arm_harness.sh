#!/usr/bin/env bash
# The native kernel harness (tests/native/kernel_equality.cpp), without Python or CMake:
#   1. cross-compiled for aarch64 (g++-aarch64-linux-gnu) and run under qemu-user: the NEON
#      kernel set against the scalar set, plus the frozen golden values;
#   2. natively on x86-64 (skip with --arm-only): AVX2 and AVX-512 against scalar, where the
#      CPU has them.
# Needs the Debian packages g++-aarch64-linux-gnu and qemu-user. Exit status 0 only if every
# build and every check passed. This checks bits only: Arm speed is not measured under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."

arm_only=0
[[ "${1:-}" == "--arm-only" ]] && arm_only=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The same floating-point flags as CMakeLists.txt: no contraction, no fast math.
common=(-std=c++17 -O2 -ffp-contract=off -fno-fast-math -fno-math-errno -Wall -Wextra
        -Wno-unused-parameter -Icsrc/include)
# Warnings are errors on both builds (kernel_cpu.hpp silences GCC 12's AVX-512 header warnings).
extra=(-Werror)

# build CXX OUT ISA_NAME:FLAGS...  -- compiles the kernels once per ISA, the host code with
# FASTINIT_HAVE_<ISA> for each, and links the harness.
build() {
  local cxx="$1" out="$2"
  shift 2
  local dir="$work/$(basename "$out").d" have=() list="" objs=() pids=()
  mkdir -p "$dir"
  for spec in "$@"; do
    local isa="${spec%%:*}" flags="${spec#*:}"
    local up="${isa^^}"
    have+=("-DFASTINIT_HAVE_${up}=1")
    list+="${isa},"
    # shellcheck disable=SC2086  # flags are a word list
    "$cxx" "${common[@]}" "${extra[@]}" $flags -DFASTINIT_ISA="$isa" -DFASTINIT_ISA_"$up"=1 \
      -c csrc/kernels_isa.cpp -o "$dir/kernels_$isa.o" &
    pids+=($!)
    objs+=("$dir/kernels_$isa.o")
  done
  for src in dispatch fill; do
    "$cxx" "${common[@]}" "${extra[@]}" -fopenmp "${have[@]}" -DFASTINIT_COMPILED_ISAS="\"$list\"" \
      -c "csrc/$src.cpp" -o "$dir/$src.o" &
    pids+=($!)
    objs+=("$dir/$src.o")
  done
  "$cxx" "${common[@]}" "${extra[@]}" "${have[@]}" -c tests/native/kernel_equality.cpp -o "$dir/main.o" &
  pids+=($!)
  for p in "${pids[@]}"; do wait "$p"; done
  "$cxx" -fopenmp "$dir/main.o" "${objs[@]}" -o "$out"
}

start=$SECONDS
echo "== aarch64 (NEON vs scalar) under qemu-user"
command -v aarch64-linux-gnu-g++ >/dev/null || { echo "missing aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)"; exit 2; }
command -v qemu-aarch64 >/dev/null || { echo "missing qemu-aarch64 (apt-get install qemu-user)"; exit 2; }
build aarch64-linux-gnu-g++ "$work/harness_arm" "scalar:" "neon:"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/harness_arm"

if [[ $arm_only == 0 && "$(uname -m)" == "x86_64" ]]; then
  echo "== x86-64 (AVX2, AVX-512 vs scalar) natively"
  build "${CXX:-g++}" "$work/harness_x86" "scalar:" \
    "avx2:-mavx2 -mfma -mf16c -mbmi2" \
    "avx512:-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c -mbmi2"
  "$work/harness_x86"
fi
echo "kernel harness passed in $((SECONDS - start)) s"
