"""Which path a torch tensor takes, and the seed it is filled with.

The lowest room of ``fastinit.torch``: torch's original ``torch.nn.init`` functions (captured
at import, before any patch), the test that sends a tensor to fastinit's kernels or to torch,
the one draw of a 64-bit seed from a torch generator, and the autograd version bump after a
native write. Everything else in ``fastinit.torch`` imports from here.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.init as _torch_init
from torch import Tensor, nn

from .._stream import wrap_u64
from . import _integrations

__all__ = [
    "NATIVE_DTYPES",
    "ORIGINALS",
    "check_generator",
    "check_no_fixed_seed",
    "cuda_native",
    "draw_seed",
    "fixed_seed",
    "fixed_seed_value",
    "is_native",
    "warn_outside",
    "written",
]

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
    if tensor.layout != torch.strided or tensor.is_nested:  # sparse, nested: torch's own ops
        return False
    device = tensor.device.type
    if device != "cpu" and not (device == "cuda" and cuda_native()):
        return False
    if tensor.is_neg() or torch.compiler.is_compiling():
        return False
    if tensor.is_inference() and not torch.is_inference_mode_enabled():
        return False  # torch raises for an in-place update of it: its own error, nothing written
    return True


def check_generator(generator: Any) -> None:
    """TypeError, as torch's, unless ``generator`` is a torch.Generator or None."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"argument 'generator' must be torch.Generator, not {type(generator).__name__}"
        )


def draw_seed(generator: torch.Generator | None) -> int:
    """One 64-bit seed from ``generator``, or from torch's default CPU generator when None.

    Inside ``materialize_`` "None" means the generator it set for this thread.
    """
    check_generator(generator)
    if generator is None:
        generator = _integrations.thread_generator("cpu")
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
    _integrations.note_write(tensor)
    return tensor


# --------------------------------------------------------------------------------------------
# an explicit seed instead of a draw
# --------------------------------------------------------------------------------------------

_FIXED_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fastinit_torch_fixed_seed", default=None
)


@contextlib.contextmanager
def fixed_seed(seed: int) -> Iterator[None]:
    """Inside the block, ``fastinit.torch``'s random initializers use ``seed`` (key ``seed``,
    stream 0) instead of drawing one from a torch generator: nothing is drawn, and for a
    DTensor nothing is exchanged between ranks (every rank must pass the same ``seed``).

    Raises
    ------
    TypeError
        ``seed`` is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    token = _FIXED_SEED.set(wrap_u64(seed))
    try:
        yield
    finally:
        _FIXED_SEED.reset(token)


def fixed_seed_value() -> int | None:
    """The seed set by :func:`fixed_seed`, or None."""
    return _FIXED_SEED.get()


def check_no_fixed_seed(tensor: Any) -> None:
    """A tensor that goes to torch's implementation cannot honour :func:`fixed_seed`."""
    if _FIXED_SEED.get() is not None:
        raise TypeError(
            "fastinit: seed= needs a float32, float64, float16 or bfloat16 tensor on a device "
            f"fastinit fills; got {tensor.dtype} on {tensor.device}"
        )


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_outside(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributed to the first caller outside the fastinit package (user code, or
    torch's ``reset_parameters``), however many fastinit frames are in between."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
