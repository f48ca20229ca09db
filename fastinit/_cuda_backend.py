"""Loads the CUDA extension on first use, so that ``import fastinit`` needs no CUDA libraries."""

from __future__ import annotations

from typing import Any


def cuda_module(device_id: int) -> Any:
    """The ``fastinit._cuda`` module, or a BufferError explaining why CUDA buffers cannot be
    filled here."""
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as exc:
        raise BufferError(
            "fastinit: this buffer lives on a CUDA device, but this build of fastinit has no "
            f"CUDA module (build with FASTINIT_CUDA=ON; see fastinit.config()): {exc}"
        ) from None
    return _cuda
