"""cmake/cuda.cmake's FASTINIT_CUDA=AUTO choice of CUDA architectures, configured (not built)
with the real nvcc and a stand-in nvidia-smi and driver library, so that what a machine with
given GPUs gets is checked on a machine without any."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cmake() -> str | None:
    try:  # the cmake that pip installs for the build (README), else one on PATH
        import cmake

        exe = Path(cmake.CMAKE_BIN_DIR) / "cmake"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("cmake")


def _nvcc() -> str | None:
    for c in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if c and Path(c).exists():
            return c
    return None


CMAKE, NVCC = _cmake(), _nvcc()
pytestmark = pytest.mark.skipif(
    CMAKE is None or NVCC is None, reason="needs cmake and nvcc (CUDA is configured, not built)"
)


def configure(tmp_path: Path, caps: list[str]) -> str:
    """Configures fastinit with FASTINIT_CUDA=AUTO on a machine whose nvidia-smi lists caps."""
    pybind11 = pytest.importorskip("pybind11")
    fake = tmp_path / "driver"
    (fake / "bin").mkdir(parents=True)
    (fake / "lib").mkdir()
    smi = fake / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(caps) + "\n")
    smi.chmod(0o755)
    (fake / "lib" / "libcuda.so.1").write_bytes(b"")  # found by name; never loaded
    env = dict(os.environ)
    env["PATH"] = f"{fake / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CMAKE_LIBRARY_PATH"] = str(fake / "lib")
    env["CUDACXX"] = str(NVCC)
    r = subprocess.run(
        [
            str(CMAKE),
            "-S",
            str(ROOT),
            "-B",
            str(tmp_path / "build"),
            "-DFASTINIT_CUDA=AUTO",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    if "no working CUDA compiler" in r.stdout:
        pytest.skip(f"CMake cannot use {NVCC} here (e.g. an unsupported host compiler)")
    return "\n".join(line for line in r.stdout.splitlines() if "fastinit:" in line)


def nvcc_archs() -> list[int]:
    out = subprocess.run([str(NVCC), "--list-gpu-arch"], capture_output=True, text=True).stdout
    archs = sorted(int(w.split("_")[1]) for w in out.split() if w.startswith("compute_"))
    if not archs:
        pytest.skip("this nvcc does not list its architectures (--list-gpu-arch)")
    return archs


def archs_line(log: str) -> list[str]:
    (line,) = [ln for ln in log.splitlines() if "CUDA architectures" in ln]
    return line.rsplit(" ", 1)[1].split(";")


def test_auto_builds_for_the_gpus_present_and_leaves_out_what_nvcc_cannot_target(
    tmp_path: Path,
) -> None:
    archs = nvcc_archs()
    oldest, newest = archs[0], archs[-1]
    too_old = oldest - 1  # e.g. 7.4 with CUDA 13, whose oldest is 7.5
    too_new = newest + 10  # a GPU newer than this toolkit
    # A revision nvcc does not list, after one of the same major that it does (7.6 after 7.5
    # with CUDA 13): that one's SASS runs it.
    unlisted = next(c for c in range(oldest + 1, newest) if c not in archs)
    same_major = max(a for a in archs if a < unlisted)
    assert same_major // 10 == unlisted // 10
    caps = [f"{c // 10}.{c % 10}" for c in (too_old, oldest, unlisted, newest, too_new)]
    log = configure(tmp_path, [*caps, "[N/A]"])
    assert f"leaving out the GPUs of compute capability {caps[0]}" in log, log
    assert "building for the GPUs of this machine only" in log, log
    # SASS for the GPUs nvcc targets, PTX of the newest architecture for the newer GPU, and
    # PTX of the oldest GPU's architecture (for GPUs added later).
    assert sorted(archs_line(log)) == sorted(
        {
            f"{oldest}-real",
            f"{same_major}-real",
            f"{newest}-real",
            f"{newest}-virtual",
            f"{oldest}-virtual",
        }
    ), log


def test_auto_does_not_build_when_no_gpu_can_run_the_code(tmp_path: Path) -> None:
    oldest = nvcc_archs()[0]
    log = configure(tmp_path, [f"{(oldest - 1) // 10}.{(oldest - 1) % 10}"])
    assert "CUDA module not built (FASTINIT_CUDA=AUTO): no GPU of this machine" in log, log
    assert "CUDA architectures" not in log, log
