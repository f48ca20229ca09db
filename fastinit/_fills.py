"""The core in-place fills: argument checking, then the hand-off to the native kernels.

Seeds are resolved by ``fastinit._stream`` and buffers by ``fastinit._buffer``; this module
owns the distributions' argument rules (finite bounds, ``std >= 0``, ``a < b``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from . import _core
from ._buffer import Target
from ._stream import DrawnKey, Generator, Key, as_u64, run_seeded

__all__ = [
    "check_finite",
    "constant_",
    "fill_at",
    "get_num_threads",
    "normal_",
    "ones_",
    "philox4x32",
    "random_words",
    "scatter_constant_",
    "set_num_threads",
    "trunc_normal_",
    "truncated_normal_",
    "uniform_",
    "zeros_",
]

T = TypeVar("T")


def philox4x32(counter: Sequence[int], key: Sequence[int]) -> tuple[int, int, int, int]:
    """The raw Philox4x32-10 block function.

    Parameters
    ----------
    counter : sequence of 4 ints
        Counter words, word 0 first (each in ``[0, 2**32)``).
    key : sequence of 2 ints
        Key words, word 0 first.

    Returns
    -------
    tuple of 4 ints
        The output block. fastinit uses ``counter = (block & 0xffffffff, block >> 32,
        stream & 0xffffffff, stream >> 32)`` and ``key = (seed & 0xffffffff, seed >> 32)``.
    """
    c = [operator.index(v) for v in counter]
    k = [operator.index(v) for v in key]
    if len(c) != 4 or len(k) != 2:
        raise ValueError("philox4x32 takes 4 counter words and 2 key words")
    for w in (*c, *k):
        if not 0 <= w < (1 << 32):
            raise ValueError(f"Philox words are 32-bit unsigned integers, got {w}")
    return _core.philox4x32(c, k)


def set_num_threads(n: int) -> None:
    """Set the number of threads fastinit's kernels use (default: OpenMP's, which honours
    ``OMP_NUM_THREADS``). Values do not depend on it."""
    n = operator.index(n)
    _core.set_num_threads(n)
    for hook in _THREAD_HOOKS:  # e.g. OpenBLAS follows now (if loaded)
        hook(n)


#: Called with the new thread count by :func:`set_num_threads`; modules above this one (the
#: orthogonal BLAS) register here instead of being imported from below.
_THREAD_HOOKS: list[Callable[[int], None]] = []


def on_num_threads(hook: Callable[[int], None]) -> None:
    """Register ``hook(n)`` to run whenever :func:`set_num_threads` sets ``n`` threads."""
    _THREAD_HOOKS.append(hook)


def get_num_threads() -> int:
    """The number of threads fastinit's kernels use."""
    return int(_core.get_num_threads())


def real_number(name: str, value: Any) -> float:
    """``value`` as a float; TypeError for anything but a real number (strings and bytes
    are not numbers, even when ``float()`` would parse them)."""
    if isinstance(value, (str, bytes, bytearray, complex)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    except OverflowError:
        raise ValueError(f"{name} is too large for a float: {value}") from None


def check_finite(name: str, value: Any) -> float:
    """``value`` as a float that is not NaN (see :func:`real_number`)."""
    v = real_number(name, value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def _shard_args(
    global_shape: Sequence[int] | None, global_offset: Sequence[int] | None
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    gs = None if global_shape is None else tuple(operator.index(v) for v in global_shape)
    go = None if global_offset is None else tuple(operator.index(v) for v in global_offset)
    for name, vals in (("global_shape", gs), ("global_offset", go)):
        # Global indices are int64: say so, instead of the binding's failed conversion.
        if vals is not None and any(not -(1 << 63) <= v < (1 << 63) for v in vals):
            raise ValueError(f"fastinit: {name} {vals} has an entry outside [0, 2**63)")
    return gs, go


def fill_at(
    x: T,
    dist: str,
    params: tuple[float, ...],
    key: Key,
    stream: int,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Fill ``x`` with ``dist`` (parameters already validated) from the Philox pair
    ``(key, stream)``: the one hand-off of a random fill to its backend."""
    gs, go = _shard_args(global_shape, global_offset)
    target = Target(x)
    if not target.skip:
        target.run(lambda: target.backend.fill(target.handle, dist, params, key, stream, gs, go))
    return x


def _random_fill(
    x: T,
    dist: str,
    params: tuple[float, ...],
    seed: int | Generator | DrawnKey | None,
    global_shape: Sequence[int] | None,
    global_offset: Sequence[int] | None,
) -> T:
    gs, go = _shard_args(global_shape, global_offset)
    target = Target(x)
    if target.skip:
        return x

    def call(key: Key, stream: int) -> None:
        target.run(lambda: target.backend.fill(target.handle, dist, params, key, stream, gs, go))

    run_seeded(seed, call)
    return x


def uniform_(
    x: T,
    low: float = 0.0,
    high: float = 1.0,
    *,
    seed: int | Generator | None = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Fill ``x`` in place with values uniform on ``[low, high]``.

    Parameters
    ----------
    x : array
        A writable NumPy array (float32, float64, float16, ml_dtypes.bfloat16) or any object
        with ``__dlpack__`` (torch tensors and Parameters, CuPy arrays) of those dtypes.
    low, high : float
        Finite bounds, ``low <= high``. Every value lies in ``[low, high]`` after rounding to
        the dtype (the bounds are moved inwards to the nearest representable values).
    seed : int, fastinit.Generator or None
        ``int``: a pure function of (seed, position). ``Generator``: its next stream. ``None``:
        the default generator's next stream.
    global_shape, global_offset : sequence of int, optional
        ``x`` is the block ``[offset, offset + x.shape)`` of a tensor of shape ``global_shape``
        and receives exactly the values that tensor has there.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    TypeError
        Unsupported dtype or object.
    ValueError
        Non-finite or reversed bounds, read-only or overlapping buffer, shard outside its
        global shape. Nothing is written in that case.
    """
    lo = check_finite("low", low)
    hi = check_finite("high", high)
    if math.isinf(lo) or math.isinf(hi):
        raise ValueError("uniform_ bounds must be finite")
    if lo > hi:
        raise ValueError(f"uniform_ expects low <= high, got low={lo}, high={hi}")
    return _random_fill(x, "uniform", (lo, hi), seed, global_shape, global_offset)


def normal_(
    x: T,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    seed: int | Generator | None = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Fill ``x`` in place with normal values N(mean, std**2) (Box-Muller on the Philox stream).

    Tails reach 6.6 std for 32-bit (and 16-bit) dtypes and 8.5 std for float64. See
    :func:`uniform_` for ``x``, ``seed``, the shard keywords and the errors; 32-bit and 16-bit
    buffers compute in float32, so their ``mean`` and ``std`` must lie within float32's range
    (``ValueError`` otherwise; ``trunc_normal_`` likewise).
    """
    m = check_finite("mean", mean)
    s = check_finite("std", std)
    if math.isinf(m) or math.isinf(s):
        raise ValueError("normal_ needs a finite mean and std")
    if s < 0:
        raise ValueError(f"normal_ expects std >= 0, got {s}")
    return _random_fill(x, "normal", (m, s), seed, global_shape, global_offset)


def trunc_normal_(
    x: T,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    seed: int | Generator | None = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Fill ``x`` with N(mean, std**2) truncated to ``[a, b]`` (torch semantics: absolute bounds).

    Sampled by the inverse CDF, evaluated in whichever tail keeps full precision, so intervals
    deep in a tail (e.g. ``[5 std, 6 std]``) are sampled accurately. Every value lies in
    ``[a, b]`` after rounding to the dtype. ``std == 0`` fills with ``mean`` (which must lie in
    ``[a, b]``). See :func:`uniform_` for the other arguments.
    """
    m = check_finite("mean", mean)
    s = check_finite("std", std)
    lo = check_finite("a", a)
    hi = check_finite("b", b)
    if math.isinf(m) or math.isinf(s):
        raise ValueError("trunc_normal_ needs a finite mean and std")
    if s < 0:
        raise ValueError(f"trunc_normal_ expects std >= 0, got {s}")
    if not lo < hi:
        raise ValueError(f"trunc_normal_ expects a < b, got a={lo}, b={hi}")
    if s == 0:
        if not lo <= m <= hi:
            raise ValueError(f"trunc_normal_ with std=0 needs a <= mean <= b, got mean={m}")
        # The mean rounded to nearest, as normal_ with std=0 writes it (a uniform on [m, m]
        # moves its bounds inwards to representable values: empty unless m is one).
        return _random_fill(x, "normal", (m, 0.0), seed, global_shape, global_offset)
    return _random_fill(x, "trunc_normal", (m, s, lo, hi), seed, global_shape, global_offset)


def truncated_normal_(
    x: T,
    stddev: float = 1.0,
    mean: float = 0.0,
    lower: float = -2.0,
    upper: float = 2.0,
    *,
    seed: int | Generator | None = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Truncated normal with JAX/Keras semantics: bounds in units of ``stddev`` about ``mean``.

    Equivalent to ``trunc_normal_(x, mean, stddev, mean + lower * stddev, mean + upper *
    stddev)``; ``stddev`` is the scale before truncation (no variance correction here; see
    ``variance_scaling_`` for Keras' corrected form).
    """
    s = check_finite("stddev", stddev)
    m = check_finite("mean", mean)
    lo = check_finite("lower", lower)
    hi = check_finite("upper", upper)
    if not lo < hi:
        raise ValueError(f"truncated_normal_ expects lower < upper, got {lo}, {hi}")
    if s == 0 and math.isfinite(m):
        # A point mass at the mean, whatever the bounds in units of a zero stddev (computing
        # them would give 0 * inf = NaN for an infinite bound).
        return trunc_normal_(
            x,
            m,
            0.0,
            -math.inf,
            math.inf,
            seed=seed,
            global_shape=global_shape,
            global_offset=global_offset,
        )
    return trunc_normal_(
        x,
        m,
        s,
        m + lo * s,
        m + hi * s,
        seed=seed,
        global_shape=global_shape,
        global_offset=global_offset,
    )


def constant_(
    x: T,
    value: float,
    *,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Fill ``x`` with ``value`` (rounded to the dtype). The shard keywords are accepted (and
    checked) for symmetry with the random fills."""
    v = real_number("value", value)
    gs, go = _shard_args(global_shape, global_offset)
    target = Target(x)
    if target.skip:
        return x
    target.run(lambda: target.backend.constant(target.handle, v, gs, go))
    return x


def zeros_(x: T, **shard: Any) -> T:
    """Fill ``x`` with zeros."""
    return constant_(x, 0.0, **shard)


def ones_(x: T, **shard: Any) -> T:
    """Fill ``x`` with ones."""
    return constant_(x, 1.0, **shard)


def scatter_constant_(
    x: T,
    value: float,
    flat_indices: Any,
    *,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> T:
    """Set ``x`` at the given global row-major flat indices to ``value``; indices outside the
    shard (or the global tensor) are skipped. Building block of ``eye_`` and ``dirac_``."""
    gs, go = _shard_args(global_shape, global_offset)
    target = Target(x)
    if target.skip:
        return x
    idx = np.ascontiguousarray(flat_indices, dtype=np.int64).reshape(-1)
    v = real_number("value", value)
    target.run(lambda: target.backend.scatter_constant(target.handle, v, idx, gs, go))
    return x


def random_words(n: int, key: int, stream: int, offset: int = 0) -> np.ndarray:
    """Words ``offset .. offset + n - 1`` of the ``(key, stream)`` Philox stream as uint32
    (word ``i`` is word ``i % 4`` of block ``i // 4``)."""
    return _core.random_words(
        operator.index(n), as_u64(key, "key"), as_u64(stream, "stream"), operator.index(offset)
    )
