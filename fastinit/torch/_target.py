"""Which path a torch tensor takes, and the seed it is filled with.

The lowest room of ``fastinit.torch``: torch's original ``torch.nn.init`` functions (captured
at import, before any patch), the test that sends a tensor to fastinit's kernels or to torch,
the one draw of a 64-bit seed from a torch generator, and the autograd version bump after a
native write. Everything else in ``fastinit.torch`` imports from here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.init as _torch_init
from torch import Tensor, nn

from .._stream import wrap_u64

__all__ = ["NATIVE_DTYPES", "ORIGINALS", "cuda_native", "draw_seed", "is_native", "written"]

#: torch.nn.init's own functions, captured when fastinit.torch was first imported.
ORIGINALS: dict[str, Callable[..., Any]] = {
    name: getattr(_torch_init, name) for name in _torch_init.__all__
}
NATIVE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@functools.cache
def cuda_native() -> bool:
    """Whether fastinit's CUDA module is built and sees a GPU (asked once)."""
    from .._config import config

    return bool(config()["cuda"].get("available", False))


def is_native(tensor: Tensor) -> bool:
    """True when fastinit's kernels fill ``tensor``; False sends it to torch's implementation."""
    if tensor.dtype not in NATIVE_DTYPES:
        return False
    if type(tensor) is not Tensor and type(tensor) is not nn.Parameter:
        return False
    device = tensor.device.type
    if device != "cpu" and not (device == "cuda" and cuda_native()):
        return False
    if tensor.is_neg() or torch.compiler.is_compiling():
        return False
    return True


def draw_seed(generator: torch.Generator | None) -> int:
    """One 64-bit seed from ``generator``, or from torch's default CPU generator when None."""
    if generator is None:
        value = torch.randint(-(1 << 63), (1 << 63) - 1, (), dtype=torch.int64, device="cpu")
    else:
        value = torch.randint(
            -(1 << 63),
            (1 << 63) - 1,
            (),
            dtype=torch.int64,
            device=generator.device,
            generator=generator,
        )
    return wrap_u64(int(value.item()))


def written(tensor: Tensor) -> Tensor:
    # A native fill writes through DLPack, behind autograd's back: bump the version counter
    # as an in-place torch op would, so a stale saved tensor is still detected.
    with contextlib.suppress(RuntimeError):
        torch.autograd.graph.increment_version(tensor)
    return tensor
