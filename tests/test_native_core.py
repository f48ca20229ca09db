"""One native core per process.

The thread count and the active kernel set live in one shared library (libfastinit_core) that
fastinit._core, fastinit._blas and fastinit._cuda all link, so a setting made through fastinit
is the one every module (the orthogonal path, the CUDA module's host side) runs with. Each
module reports what it sees through ``_native_state()``; a module that carried its own copy of
the core would report its own library file and its own, unchanged, settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import fastinit
from fastinit import _core

from .conftest import ISAS


def _modules() -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {"_core": _core}
    try:
        from fastinit import _orthogonal

        mods["_blas"] = _orthogonal.load_blas()
    except RuntimeError:  # built with FASTINIT_ORTHOGONAL=OFF
        pass
    try:
        from fastinit import _cuda  # type: ignore[attr-defined]

        mods["_cuda"] = _cuda
    except ImportError:  # built without the CUDA module
        pass
    return mods


MODULES = _modules()


@pytest.fixture
def restore_state() -> Iterator[None]:
    isa, threads = _core.get_isa(), fastinit.get_num_threads()
    yield
    _core.set_isa(isa)
    fastinit.set_num_threads(threads)


def test_every_module_links_the_one_core_library() -> None:
    lib = Path(_core.__file__).parent / "libfastinit_core.so"
    assert lib.is_file(), f"the core library is not installed next to _core: {lib}"
    for name, mod in MODULES.items():
        reported = Path(mod._native_state()["library"])
        assert reported.resolve() == lib.resolve(), f"{name} runs another copy: {reported}"


@pytest.mark.parametrize("name", list(MODULES))
def test_thread_count_is_one_setting(name: str, restore_state: None) -> None:
    for n in (3, 1, 2):
        fastinit.set_num_threads(n)
        assert MODULES[name]._native_state()["threads"] == n


@pytest.mark.parametrize("name", list(MODULES))
def test_kernel_set_is_one_setting(name: str, restore_state: None) -> None:
    for isa in [*ISAS, *reversed(ISAS)]:
        _core.set_isa(isa)
        assert MODULES[name]._native_state()["isa"] == isa


def test_orthogonal_module_has_no_kernel_switch_of_its_own() -> None:
    if "_blas" not in MODULES:
        pytest.skip("fastinit was built without orthogonal initialization")
    assert not hasattr(MODULES["_blas"], "set_isa")


def test_environment_choice_is_seen_by_every_module() -> None:
    """FASTINIT_CPU picks the kernel set once, for the whole process."""
    code = (
        "import json, fastinit\n"
        "from tests.test_native_core import MODULES\n"
        "print(json.dumps({k: m._native_state()['isa'] for k, m in MODULES.items()}))\n"
    )
    env = dict(os.environ, FASTINIT_CPU="scalar")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    assert seen == dict.fromkeys(MODULES, "scalar")


def test_dlpack_device_types_come_from_the_native_core() -> None:
    # The DLPack specification's numbers: CPU 1, CUDA 2, CUDA host 3, CUDA managed 13.
    assert _core.DLPACK_HOST_DEVICES == (1, 3, 13)
    assert _core.DLPACK_CUDA == 2


@pytest.mark.parametrize(
    ("dist", "params"), [("laplace", [0.0, 1.0]), ("normal", [0.0]), ("uniform", [0, 1, 2])]
)
def test_unknown_distribution_or_arity_is_an_error(dist: str, params: list[float]) -> None:
    x = np.full(10, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"unknown distribution|takes \d parameters"):
        _core.fill(x, dist, params, 1, 0)
    assert (x == 7.0).all()
    if "_cuda" in MODULES:
        with pytest.raises(ValueError, match=r"unknown distribution|takes \d parameters"):
            MODULES["_cuda"]._emulate_fill(x, dist, params, 1, 0)
        assert (x == 7.0).all()
