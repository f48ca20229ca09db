#!/usr/bin/env bash
# Build fastinit with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests under it.
#
# It never touches the checkout's editable install or its build/ directory: the working tree
# (tracked and untracked-but-not-ignored files, as they are now) is copied to a scratch
# directory, built there as a regular (non-editable) wheel with FASTINIT_SANITIZE=ON and
# FASTINIT_CUDA=OFF, installed into a private virtual environment, and the tests are run from
# a copy of tests/ so that `import fastinit` can only find the sanitized install.
#
# Usage: tools/sanitize.sh [--all] [--torch] [--keep DIR] [TEST_FILE...] [-- PYTEST_ARGS...]
#   (default)   the core tests: test_philox, test_golden, test_invariance, test_validation,
#               test_dlpack and test_stats, without the `slow` (4 GiB) test
#   TEST_FILE   run these files of tests/ instead (e.g. test_orthogonal.py)
#   --all       every file in tests/ (still without -m slow)
#   --torch     also install torch==2.13.0 (CPU) in the venv, so that the torch tests run
#               instead of skipping (about a minute more, ~1 GB of disk)
#   --keep DIR  use DIR as the scratch directory and keep it: later runs reuse the venv and
#               rebuild incrementally (default: a fresh mktemp -d, removed at exit)
#   -- ARGS     passed on to pytest (e.g. -- -k dlpack -x)
# Environment: PYTHON (default python3) makes the venv; FASTINIT_SANITIZE_OPT (default
# "-O1 -g1": line tables for the reports, and half the compile time of -O2 -g) sets the
# optimization of the sanitized build.
# Exit status 0 when the build and every test pass and no sanitizer reported anything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OPT="${FASTINIT_SANITIZE_OPT:--O1 -g1}"
TESTS=(test_philox.py test_golden.py test_invariance.py test_validation.py test_dlpack.py test_stats.py)
ALL=0 TORCH=0 KEEP="" PICKED=() PYTEST_EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --all) ALL=1 ;;
    --torch) TORCH=1 ;;
    --keep) KEEP="${2:?--keep needs a directory}"; shift ;;
    --) shift; PYTEST_EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "sanitize.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) PICKED+=("${1#tests/}") ;;
  esac
  shift
done
if [[ $ALL == 1 ]]; then TESTS=(""); elif [[ ${#PICKED[@]} -gt 0 ]]; then TESTS=("${PICKED[@]}"); fi

t0=$SECONDS
stamp() { echo "== sanitize.sh [$((SECONDS - t0))s] $*"; }

if [[ -n "$KEEP" ]]; then
  mkdir -p "$KEEP"; WORK="$(cd "$KEEP" && pwd)"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastinit-sanitize.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
case "$WORK/" in "$ROOT"/*) echo "sanitize.sh: the scratch directory must be outside $ROOT" >&2; exit 2 ;; esac
stamp "scratch directory $WORK"

# --- 1. A snapshot of the working tree: what git sees, without ignored files such as build/.
#        File times are kept, so that a kept build directory rebuilds only what changed.
rm -rf "$WORK/src"; mkdir -p "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard --deduplicate \
   | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$WORK/src" -xf -
test -f "$WORK/src/pyproject.toml" || { echo "sanitize.sh: copying the source tree failed" >&2; exit 1; }

# --- 2. A private venv with the test and build requirements of pyproject.toml.
export PIP_DISABLE_PIP_VERSION_CHECK=1
VPY="$WORK/venv/bin/python"
[[ -x "$VPY" ]] || "$PYTHON" -m venv "$WORK/venv"
pip_q() {  # pip, quiet unless it fails
  "$VPY" -m pip install "$@" >>"$WORK/pip.log" 2>&1 || { tail -n 30 "$WORK/pip.log"; exit 1; }
}
stamp "installing the requirements (log: $WORK/pip.log)"
pip_q numpy scikit-build-core
# The [test] extra and [build-system] requires; cmake/ninja too where scikit-build-core finds
# none it can use on PATH (the check that build isolation would make).
mapfile -t REQS < <(cd "$WORK/src" && "$VPY" - <<'PY'
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from scikit_build_core.build import get_requires_for_build_wheel
with open("pyproject.toml", "rb") as f:
    meta = tomllib.load(f)
reqs = meta["project"]["optional-dependencies"]["test"] + meta["build-system"]["requires"]
print("\n".join(reqs + get_requires_for_build_wheel()))
PY
)
pip_q "${REQS[@]}"
if [[ $TORCH == 1 ]]; then pip_q torch==2.13.0; fi

# --- 3. The sanitized, non-editable build. RelWithDebInfo, with its flags set to $OPT: pybind11
#        neither strips nor LTO-links such a build, so the reports name functions and lines.
stamp "building the sanitized wheel with $OPT (log: $WORK/build.log)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! FASTINIT_SANITIZE=ON FASTINIT_CUDA=OFF "$VPY" -m pip install -v --no-deps --no-build-isolation \
       --force-reinstall --no-cache-dir \
       -C build-dir="$WORK/build" -C cmake.build-type=RelWithDebInfo \
       -C cmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO="$OPT" "$WORK/src" \
       >"$WORK/build.log" 2>&1; then
  tail -n 60 "$WORK/build.log"; echo "sanitize.sh: the sanitized build failed" >&2; exit 1
fi

# --- 4. The run directory: a copy of tests/ and the pytest configuration, no fastinit/ package,
#        so that `import fastinit` resolves to the venv. Nothing is written to the checkout.
rm -rf "$WORK/run"; mkdir -p "$WORK/run"
cp -r "$WORK/src/tests" "$WORK/run/tests"
cp "$WORK/src/pyproject.toml" "$WORK/run/pyproject.toml"
cd "$WORK/run"

PLATLIB="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
# The runtimes the sanitized module links against. libasan must be the first library in the
# process, and libstdc++ has to be loaded when libasan starts: Python is a C program that
# loads libstdc++ only with the extension, too late for ASan's __cxa_throw interceptor,
# which then aborts at the first C++ exception ("CHECK failed: ... real___cxa_throw != 0").
DEPS="$(ldd "$PLATLIB"/fastinit/_core*.so)"
ASAN_LIB="$(awk '/libasan/ {print $3; exit}' <<<"$DEPS")"
STDCXX_LIB="$(awk '/libstdc\+\+/ {print $3; exit}' <<<"$DEPS")"
[[ -f "$ASAN_LIB" && -f "$STDCXX_LIB" ]] || { echo "sanitize.sh: libasan/libstdc++ not found in: $DEPS" >&2; exit 1; }
unset PYTHONPATH PYTHONHOME
export LD_PRELOAD="$ASAN_LIB:$STDCXX_LIB${LD_PRELOAD:+:$LD_PRELOAD}"
# Reports go to files, one per process: pytest captures file descriptor 2, and a process that
# a sanitizer ends never prints what was captured; subprocesses (tests that run
# `python -m fastinit`) report there too, whatever the test makes of their exit status.
REPORTS="$WORK/reports"; rm -rf "$REPORTS"; mkdir -p "$REPORTS"
# detect_leaks=0: CPython and NumPy keep memory until exit by design.
# allocator_may_return_null=1: an impossible allocation is a MemoryError, as without ASan.
export ASAN_OPTIONS="log_path=$REPORTS/asan:detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$REPORTS/ubsan:halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Python objects through malloc too, so that ASan sees their lifetimes (reference-count bugs).
export PYTHONMALLOC=malloc
show_reports() {  # prints the sanitizer reports; false when there were some
  compgen -G "$REPORTS/*" >/dev/null || return 0
  for f in "$REPORTS"/*; do echo "---- $f"; cat "$f"; done
  echo "sanitize.sh: a sanitizer reported an error (reports above, kept in $REPORTS)" >&2
  [[ -n "$KEEP" ]] || trap - EXIT  # keep the scratch directory for a look
  return 1
}

# --- 5. Make sure that the sanitized modules are the ones imported.
stamp "checking the sanitized modules (LD_PRELOAD=$LD_PRELOAD)"
"$VPY" - "$WORK/venv" "$ROOT" <<'PY' || { show_reports; echo "sanitize.sh: the sanitized install is not the one imported" >&2; exit 1; }
import glob, os, subprocess, sys
venv, root = (os.path.realpath(p) for p in sys.argv[1:3])
import fastinit
from fastinit import _core
pkg = os.path.dirname(os.path.realpath(fastinit.__file__))
so = os.path.realpath(_core.__file__)
assert pkg.startswith(venv + os.sep), f"fastinit imported from {pkg}, not from {venv}"
assert not so.startswith(root + os.sep), f"_core imported from the checkout: {so}"
mods = sorted(glob.glob(os.path.join(pkg, "_*.so")))
assert so in mods, (so, mods)
# The core library that every module links (thread count, kernel sets, fills).
core = os.path.join(pkg, "libfastinit_core.so")
assert os.path.isfile(core), f"{core} is missing"
assert os.path.realpath(_core._native_state()["library"]) == os.path.realpath(core), _core._native_state()
mods.append(core)
for m in mods:
    syms = subprocess.run(["nm", "-D", m], capture_output=True, text=True, check=True).stdout
    assert "__asan_init" in syms or "__asan_version_mismatch_check" in syms, f"{m}: no ASan"
    assert "__ubsan_handle" in syms, f"{m}: no UBSan"
    print("  sanitized:", m)
cfg = fastinit.config()
print(f"  kernels: {cfg['supported_isas']} (all are tested), threads: {cfg['threads']}")
PY

# --- 6. The tests.
stamp "pytest under ASan+UBSan: ${TESTS[*]/#/tests/}"
set +e
"$VPY" -m pytest -p no:cacheprovider -m "not slow" -q "${TESTS[@]/#/tests/}" "${PYTEST_EXTRA[@]}"
rc=$?
set -e
show_reports || { [[ $rc != 0 ]] || rc=1; }
[[ $rc == 0 ]] || echo "sanitize.sh: FAILED (exit status $rc) after $((SECONDS - t0))s" >&2
exit "$rc"
