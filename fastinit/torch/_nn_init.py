"""The drop-in: every function of ``torch.nn.init``, with torch's signature, checks, messages
and warnings, filled by fastinit's kernels where it can (see ``fastinit.torch``).

One implementation per name: a tensor's path (native, DTensor, torch's own) is decided by the
target (``fastinit.torch._target``, ``fastinit.torch._dtensor``), not by a second copy of the
function.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from .. import _fills, _orthogonal, _schemes
from .._stream import DrawnKey
from . import _dtensor, _integrations
from ._target import (
    ORIGINALS,
    check_generator,
    check_no_fixed_seed,
    draw_seed,
    fixed_seed_value,
    is_native,
    warn_outside,
    written,
)

__all__ = [
    "calculate_gain",
    "constant",
    "constant_",
    "dirac",
    "dirac_",
    "eye",
    "eye_",
    "kaiming_normal",
    "kaiming_normal_",
    "kaiming_uniform",
    "kaiming_uniform_",
    "normal",
    "normal_",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "sparse",
    "sparse_",
    "trunc_normal_",
    "uniform",
    "uniform_",
    "xavier_normal",
    "xavier_normal_",
    "xavier_uniform",
    "xavier_uniform_",
    "zeros_",
]

_NonlinearityType = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
_FanMode = Literal["fan_in", "fan_out"]
_T = TypeVar("_T")


def _native_target(tensor: Tensor) -> bool:
    """Whether fastinit's kernels write ``tensor`` (a DTensor: its local tensor)."""
    if _dtensor.is_dtensor(tensor):
        return _dtensor.native_local(tensor) is not None
    return is_native(tensor)


def _seed_of(tensor: Tensor, generator: torch.Generator | None) -> int:
    """The seed of one fill: :func:`fixed_seed`'s if set, else one draw from ``generator``
    (made common to the mesh for a DTensor)."""
    seed = fixed_seed_value()
    if _dtensor.is_dtensor(tensor):
        return _dtensor.draw_seed(tensor, generator, seed)
    return draw_seed(generator) if seed is None else seed


def _local_seed(generator: torch.Generator | None) -> int | DrawnKey:
    """The seed of one fill of a plain tensor: :func:`fixed_seed`'s if set, else a key that
    the native call draws from ``generator`` only once its checks have passed."""
    seed = fixed_seed_value()
    if seed is not None:
        return seed
    check_generator(generator)
    return DrawnKey(lambda: draw_seed(generator))


def _fallback_generator(
    tensor: Tensor, generator: torch.Generator | None
) -> torch.Generator | None:
    """The generator of a torch fallback: ``generator``, else the one ``materialize_`` set for
    this thread and the tensor's device, else None (torch's default generator)."""
    if generator is not None:
        return generator
    return _integrations.thread_generator(tensor.device.type)


def _torch_uniform(
    tensor: Tensor, a: float, b: float, generator: torch.Generator | None
) -> Callable[[], Tensor]:
    def fallback() -> Tensor:
        with torch.no_grad():
            return tensor.uniform_(a, b, generator=_fallback_generator(tensor, generator))

    return fallback


def _torch_normal(
    tensor: Tensor, mean: float, std: float, generator: torch.Generator | None
) -> Callable[[], Tensor]:
    def fallback() -> Tensor:
        with torch.no_grad():
            return tensor.normal_(mean, std, generator=_fallback_generator(tensor, generator))

    return fallback


def _random(
    tensor: Tensor,
    fill: Callable[..., Any],
    args: tuple[Any, ...],
    generator: torch.Generator | None,
    fallback: Callable[[], Tensor],
    torch_decides: bool = False,
) -> Tensor:
    """The one path of a random initializer, after torch's checks: ``fill(x, *args, seed=,
    global_shape=, global_offset=)`` (a ``fastinit`` fill, on the whole tensor's shape) where
    fastinit's kernels write ``tensor``, else torch's ``fallback()``.

    ``torch_decides``: the caller found arguments torch rejects or fills its own way (reversed
    bounds, a bound the dtype cannot hold, NaN): torch's ``fallback()`` before any seed is
    drawn, so a rejected call leaves the generator as torch would. Under :func:`fixed_seed`
    (which never reaches torch's generator) fastinit's own checks answer instead.

    A DTensor is a target like any other: its placements are checked before the seed is
    drawn (so a rejected call draws nothing), the seed is common to its mesh, and each rank
    fills its own box of the global tensor.
    """
    if not _native_target(tensor):
        check_no_fixed_seed(tensor)
        if _dtensor.is_dtensor(tensor) and tensor.is_meta:
            return tensor
        return fallback()
    if torch_decides and fixed_seed_value() is None:
        return fallback()
    # A DTensor's seed is drawn first, and made common to the mesh (a collective, which every
    # rank must reach whatever its shard); a plain tensor's only after the kernels' checks.
    dtensor = _dtensor.is_dtensor(tensor)
    if dtensor:
        _dtensor.shard_spec(tensor)
        mesh_seed = _seed_of(tensor, generator)
    else:
        seed = _local_seed(generator)
    try:
        if dtensor:
            return _dtensor.apply_to_dtensor(fill, tensor, *args, seed=mesh_seed)
        fill(tensor.detach(), *args, seed=seed)
    except ValueError:
        # Arguments torch accepts and fastinit's kernels cannot honour (a non-finite mean,
        # a truncation interval with no float32 probability mass, overlapping elements):
        # torch's own values or error, as the drop-in never fails where torch works. Nothing
        # was written, and a plain tensor's seed was not drawn, so torch's call finds the
        # generator as torch.nn.init's would. (A DTensor's was: the generator is one draw on.)
        if fixed_seed_value() is not None:
            raise
        return fallback()
    if isinstance(seed, DrawnKey):
        seed()  # one draw per call, as for a tensor the call wrote (an empty one writes none)
    return written(tensor)


def _deterministic(
    tensor: Tensor, fill: Callable[..., Any], args: tuple[Any, ...], fallback: Callable[[], Tensor]
) -> Tensor:
    """As :func:`_random`, for the initializers without a seed (constants, eye, dirac)."""
    if not _native_target(tensor):
        if _dtensor.is_dtensor(tensor) and tensor.is_meta:
            return tensor
        return fallback()
    try:
        if _dtensor.is_dtensor(tensor):
            return _dtensor.apply_to_dtensor(fill, tensor, *args)
        fill(tensor.detach(), *args)
    except ValueError:
        # e.g. elements that overlap (an expanded tensor), which torch's fill_ accepts:
        # torch's own result or error. Nothing was written.
        return fallback()
    return written(tensor)


def _in_range(tensor: Tensor, *values: Any) -> bool:
    """Whether torch would store every value in ``tensor``'s floating dtype without its
    overflow error: plain ints within int64 and floats that are infinite or within the dtype's
    finite range (anything else, NaN included, takes torch's path and torch's answer)."""
    if not tensor.is_floating_point():
        return True  # not a native dtype: torch's path anyway
    top = torch.finfo(tensor.dtype).max
    for v in values:
        if type(v) is int:
            if not -(1 << 63) <= v < (1 << 63):
                return False
            v = float(v)
        elif type(v) is not float:
            return False
        if math.isnan(v) or (math.isfinite(v) and abs(v) > top):
            return False
    return True


def _fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    return _schemes.compute_fans(tuple(tensor.shape), layout="torch")


# --------------------------------------------------------------------------------------------
# the drop-in functions (same order of checks as torch.nn.init)
# --------------------------------------------------------------------------------------------


def calculate_gain(nonlinearity: _NonlinearityType, param: int | float | None = None) -> float:
    """Return the recommended gain value for the given nonlinearity (as ``torch.nn.init``).

    See :func:`fastinit.calculate_gain`.
    """
    return _schemes.calculate_gain(nonlinearity, param)


def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` with values drawn from U(a, b); drop-in for ``torch.nn.init.uniform_``.

    Parameters
    ----------
    tensor : torch.Tensor
        An n-dimensional tensor.
    a, b : float
        Lower and upper bound.
    generator : torch.Generator, optional
        Source of the 64-bit seed (default: torch's default generator).

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            uniform_, (tensor,), tensor=tensor, a=a, b=b, generator=generator
        )
    fallback = _torch_uniform(tensor, a, b, generator)
    torch_decides = not (_in_range(tensor, a, b) and a <= b)
    return _random(tensor, _fills.uniform_, (a, b), generator, fallback, torch_decides)


def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` from N(mean, std²); drop-in for ``torch.nn.init.normal_``.

    Parameters
    ----------
    tensor : torch.Tensor
        An n-dimensional tensor.
    mean, std : float
        Mean and standard deviation.
    generator : torch.Generator, optional
        Source of the 64-bit seed (default: torch's default generator).

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            normal_, (tensor,), tensor=tensor, mean=mean, std=std, generator=generator
        )
    fallback = _torch_normal(tensor, mean, std, generator)
    torch_decides = not (_in_range(tensor, mean, std) and std >= 0)
    return _random(tensor, _fills.normal_, (mean, std), generator, fallback, torch_decides)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` from N(mean, std²) truncated to [a, b] (absolute bounds, torch semantics).

    Drop-in for ``torch.nn.init.trunc_normal_``. The native path uses an exact inverse CDF, so
    the distribution is right even far from the mean; torch's warning for a mean more than 2
    std outside [a, b] is still issued, for parity.

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if tensor.is_meta:
        return tensor
    if _native_target(tensor) and ((mean < a - 2 * std) or (mean > b + 2 * std)):
        warn_outside(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
            "The distribution of values may be incorrect."
        )

    def fallback() -> Tensor:
        return ORIGINALS["trunc_normal_"](
            tensor, mean, std, a, b, generator=_fallback_generator(tensor, generator)
        )

    return _random(tensor, _fills.trunc_normal_, (mean, std, a, b), generator, fallback)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill ``tensor`` with ``val``; drop-in for ``torch.nn.init.constant_``."""
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(constant_, (tensor,), tensor=tensor, val=val)

    def fallback() -> Tensor:
        with torch.no_grad():
            return tensor.fill_(val)

    if not _in_range(tensor, val):
        return fallback()  # NaN, a tensor, or a value the dtype overflows on: torch decides
    return _deterministic(tensor, _fills.constant_, (val,), fallback)


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 1; drop-in for ``torch.nn.init.ones_``."""

    def fallback() -> Tensor:
        with torch.no_grad():
            return tensor.fill_(1.0)

    return _deterministic(tensor, _fills.ones_, (), fallback)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 0; drop-in for ``torch.nn.init.zeros_``."""

    def fallback() -> Tensor:
        with torch.no_grad():
            return tensor.zero_()

    return _deterministic(tensor, _fills.zeros_, (), fallback)


def eye_(tensor: Tensor) -> Tensor:
    """Fill the 2-D ``tensor`` with the identity matrix; drop-in for ``torch.nn.init.eye_``.

    Raises
    ------
    ValueError
        "Only tensors with 2 dimensions are supported".
    """
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return _deterministic(tensor, _schemes.eye_, (), lambda: ORIGINALS["eye_"](tensor))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill the {3, 4, 5}-D ``tensor`` with the Dirac delta; drop-in for ``torch.nn.init.dirac_``.

    Raises
    ------
    ValueError
        torch's messages for the wrong number of dimensions or dim 0 not divisible by groups.
    """
    dimensions = tensor.ndimension()
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if tensor.size(0) % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if tensor.is_meta:
        return tensor
    return _deterministic(
        tensor, _schemes.dirac_, (groups,), lambda: ORIGINALS["dirac_"](tensor, groups)
    )


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Glorot uniform: U(-b, b), ``b = gain * sqrt(6 / (fan_in + fan_out))``.

    Drop-in for ``torch.nn.init.xavier_uniform_`` (same bound, bit for bit).
    """
    fan_in, fan_out = _fan_in_and_fan_out(tensor)
    bound = _schemes.uniform_bound(_schemes.xavier_std(fan_in, fan_out, gain))
    return _random(
        tensor,
        _fills.uniform_,
        (-bound, bound),
        generator,
        _torch_uniform(tensor, -bound, bound, generator),
    )


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Glorot normal: N(0, std²), ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Drop-in for ``torch.nn.init.xavier_normal_``.
    """
    fan_in, fan_out = _fan_in_and_fan_out(tensor)
    std = _schemes.xavier_std(fan_in, fan_out, gain)
    return _random(
        tensor, _fills.normal_, (0.0, std), generator, _torch_normal(tensor, 0.0, std, generator)
    )


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    return _schemes.kaiming_fan_std(tuple(tensor.shape), a, mode, nonlinearity, layout="torch")


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He uniform: U(-b, b), ``b = gain * sqrt(3 / fan_mode)``.

    Drop-in for ``torch.nn.init.kaiming_uniform_``, including its warning for zero-element
    tensors. ``nn.Linear``/``nn.Conv*`` call it with ``a=math.sqrt(5)``.
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            kaiming_uniform_,
            (tensor,),
            tensor=tensor,
            a=a,
            mode=mode,
            nonlinearity=nonlinearity,
            generator=generator,
        )
    if 0 in tensor.shape:
        warn_outside("Initializing zero-element tensors is a no-op")
        return tensor
    bound = _schemes.uniform_bound(_kaiming_std(tensor, a, mode, nonlinearity))
    return _random(
        tensor,
        _fills.uniform_,
        (-bound, bound),
        generator,
        _torch_uniform(tensor, -bound, bound, generator),
    )


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He normal: N(0, std²), ``std = gain / sqrt(fan_mode)``.

    Drop-in for ``torch.nn.init.kaiming_normal_``, including its zero-element warning.
    """
    if 0 in tensor.shape:
        warn_outside("Initializing zero-element tensors is a no-op")
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return _random(
        tensor, _fills.normal_, (0.0, std), generator, _torch_normal(tensor, 0.0, std, generator)
    )


def orthogonal_(
    tensor: Tensor,
    gain: float = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` with a (semi-)orthogonal matrix; drop-in for ``torch.nn.init.orthogonal_``.

    Uses ``fastinit.orthogonal_`` (Householder reflections from the Philox stream) when the
    installed fastinit provides it; otherwise torch's QR-based algorithm, with the same
    ``generator``.
    """
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    if _dtensor.is_dtensor(tensor) and _native_target(tensor):
        # The one fill that is not elementwise: every rank builds the whole matrix.
        _dtensor.shard_spec(tensor)  # placements are checked before the seed is drawn
        return _dtensor.orthogonal_to_dtensor(tensor, gain, _seed_of(tensor, generator))
    return _random(
        tensor,
        _orthogonal.orthogonal_,
        (gain,),
        generator,
        lambda: ORIGINALS["orthogonal_"](tensor, gain, _fallback_generator(tensor, generator)),
    )


def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill the 2-D ``tensor`` as a sparse matrix; drop-in for ``torch.nn.init.sparse_``.

    Each column gets ``ceil(sparsity * rows)`` zeros at random rows, the rest N(0, std²).
    Unlike torch (whose zero rows come from ``torch.randperm`` on the default generator even
    when ``generator`` is given), values and pattern both follow ``generator``: see
    :func:`fastinit.sparse_` for the stream derivation. ``sparsity`` outside [0, 1] raises
    ValueError.
    """
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if tensor.is_meta:
        return tensor
    return _random(
        tensor,
        _schemes.sparse_,
        (sparsity, std),
        generator,
        lambda: ORIGINALS["sparse_"](tensor, sparsity, std, _fallback_generator(tensor, generator)),
    )


def _make_deprecate(meth: Callable[..., _T]) -> Callable[..., _T]:
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args: Any, **kwargs: Any) -> _T:
        warnings.warn(
            f"`nn.init.{old_name}` is now deprecated in favor of `nn.init.{new_name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = f"""
    {old_name}(...)

    .. warning::
        Deprecated in favor of :func:`fastinit.torch.{new_name}` (as in torch).
    """
    deprecated_init.__name__ = old_name
    deprecated_init.__qualname__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)
