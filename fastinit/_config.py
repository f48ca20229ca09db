"""Build and runtime configuration report."""

from __future__ import annotations

import importlib.util
from typing import Any

from . import _core

__version__ = "0.1.0"


def _cuda_info() -> dict[str, Any]:
    built = importlib.util.find_spec("fastinit._cuda") is not None
    info: dict[str, Any] = {"built": built, "available": False, "devices": 0}
    if built:
        try:
            from . import _cuda

            info["devices"] = int(_cuda.device_count())
            info["available"] = info["devices"] > 0
        except Exception as exc:  # a build without a driver reports why
            info["error"] = str(exc)
    return info


def _blas_info() -> dict[str, Any]:
    try:
        from ._orthogonal import blas_info

        return blas_info()
    except ImportError:
        return {"name": None}


def config() -> dict[str, Any]:
    """fastinit's build and runtime configuration.

    Returns
    -------
    dict
        ``isa``: the CPU kernel set in use; ``compiled_isas`` and ``supported_isas``;
        ``threads``; ``cuda``: whether the CUDA module was built and can see a GPU; ``blas``:
        the BLAS used by orthogonal initialization.
    """
    return {
        "version": __version__,
        "isa": _core.get_isa(),
        "compiled_isas": list(_core.compiled_isas()),
        "supported_isas": list(_core.supported_isas()),
        "threads": int(_core.get_num_threads()),
        "cuda": _cuda_info(),
        "blas": _blas_info(),
    }


def show_config() -> None:
    """Print :func:`config` in a readable form."""
    for key, value in config().items():
        print(f"{key:>15}: {value}")
