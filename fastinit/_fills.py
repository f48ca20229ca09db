"""The core in-place fills: argument checking, seeds, and hand-off to the native kernels."""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from . import _core

__all__ = [
    "Generator",
    "constant_",
    "default_generator",
    "get_num_threads",
    "manual_seed",
    "normal_",
    "ones_",
    "philox4x32",
    "set_num_threads",
    "trunc_normal_",
    "truncated_normal_",
    "uniform_",
    "zeros_",
]

T = TypeVar("T")

_U64 = 1 << 64
#: The default generator's seed until :func:`manual_seed` is called (fixed, like torch's, so
#: that an unseeded program is still reproducible).
DEFAULT_SEED = 0x5EED_F457_1A17

# DLPack device types that fastinit's CPU kernels can write (CPU, CUDA host, CUDA managed),
# and CUDA's, as the native core declares them.
_CPU_DEVICES: tuple[int, ...] = _core.DLPACK_HOST_DEVICES
_CUDA_DEVICE: int = _core.DLPACK_CUDA


def _as_u64(value: Any, what: str) -> int:
    """Validate an integer seed or stream and reduce it to 64 bits (negatives wrap, as torch)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if not -(1 << 63) <= v < _U64:
        raise ValueError(f"{what} must lie in [-2**63, 2**64), got {v}")
    return v % _U64


class Generator:
    """A seed plus a stream counter: each fill that uses it takes the next stream.

    Parameters
    ----------
    seed : int, optional
        The Philox key; any integer in ``[-2**63, 2**64)`` (negatives wrap modulo ``2**64``).

    Notes
    -----
    Successive calls differ, and the whole sequence is reproducible: a new generator with the
    same seed gives the same values call by call. Thread-safe.
    """

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self._lock = threading.Lock()
        self._seed = _as_u64(seed, "seed")
        self._stream = 0

    @property
    def seed(self) -> int:
        """The 64-bit key of this generator."""
        return self._seed

    @property
    def stream(self) -> int:
        """The stream the next fill will use."""
        return self._stream

    def manual_seed(self, seed: int) -> Generator:
        """Reset to ``seed`` and stream 0; returns ``self``."""
        s = _as_u64(seed, "seed")
        with self._lock:
            self._seed, self._stream = s, 0
        return self

    def next_stream(self) -> int:
        """Reserve and return the next stream number."""
        with self._lock:
            s = self._stream
            self._stream = (s + 1) % _U64
        return s

    def get_state(self) -> tuple[int, int]:
        """``(seed, next stream)``, to restore with :meth:`set_state`."""
        with self._lock:
            return self._seed, self._stream

    def set_state(self, state: tuple[int, int]) -> None:
        """Restore a state returned by :meth:`get_state`."""
        seed, stream = state
        s, t = _as_u64(seed, "seed"), _as_u64(stream, "stream")
        with self._lock:
            self._seed, self._stream = s, t

    def __repr__(self) -> str:
        return f"fastinit.Generator(seed={self._seed}, stream={self._stream})"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (stream 0) and return it."""
    return default_generator.manual_seed(seed)


def resolve_seed(seed: int | Generator | None) -> tuple[int, int]:
    """Map a ``seed=`` argument to the Philox ``(key, stream)`` pair.

    ``None`` takes the default generator's next stream, an int is a pure seed (stream 0), and a
    :class:`Generator` gives its seed and next stream.
    """
    if seed is None:
        seed = default_generator
    if isinstance(seed, Generator):
        return seed.seed, seed.next_stream()
    return _as_u64(seed, "seed"), 0


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
    from ._orthogonal import sync_blas_threads  # OpenBLAS follows now (if loaded)

    sync_blas_threads(n)


def get_num_threads() -> int:
    """The number of threads fastinit's kernels use."""
    return int(_core.get_num_threads())


# ----------------------------------------------------------------------------- buffers


def _is_torch_tensor(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach") and hasattr(x, "is_meta")


def shape_of(x: Any) -> tuple[int, ...]:
    """The shape of an array-like buffer as a tuple of ints."""
    return tuple(int(s) for s in x.shape)


def dtype_name(x: Any) -> str:
    """The buffer's dtype as 'float32', 'float64', 'float16', 'bfloat16' or another name."""
    dt = x.dtype
    name = getattr(dt, "name", None)
    if isinstance(name, str):
        return name
    return str(dt).removeprefix("torch.")


class _Target:
    """A buffer ready for the native kernels: a NumPy array, or a fresh DLPack capsule.

    ``skip`` is set for buffers with no storage to fill (torch meta tensors).
    """

    __slots__ = ("backend", "device", "handle", "skip")

    def __init__(self, x: Any) -> None:
        self.skip = False
        self.device = (1, 0)
        # The native module whose fill/constant/scatter_constant functions write this buffer.
        self.backend: Any = _core
        if isinstance(x, np.ndarray):
            self.handle: Any = x
            return
        if _is_torch_tensor(x):
            if x.is_meta:
                self.skip = True
                self.handle = None
                return
            # A Parameter (or any tensor requiring grad) cannot be exported; its detached
            # alias shares the storage, so writing through it fills the original in place.
            x = x.detach()
        if not hasattr(x, "__dlpack__"):
            raise TypeError(
                "fastinit: expected a NumPy array or an object implementing __dlpack__ "
                f"(torch tensor, CuPy array, ...), got {type(x).__name__}"
            )
        if hasattr(x, "__dlpack_device__"):
            dev = tuple(int(v) for v in x.__dlpack_device__())
            self.device = (dev[0], dev[1])
            if dev[0] == _CUDA_DEVICE:
                from ._cuda_backend import cuda_backend

                # Raises a clear error where CUDA is unavailable. The producer is handed the
                # stream the kernels will run on (the DLPack consumer stream protocol).
                self.backend = cuda_backend(x, dev[1])
                self.handle = _export_dlpack(x, stream=self.backend.dlpack_stream)
                return
            if dev[0] not in _CPU_DEVICES:
                raise BufferError(f"fastinit: unsupported DLPack device {dev}")
        self.handle = _export_dlpack(x)


def _export_dlpack(x: Any, stream: int | None = None) -> Any:
    """Ask the producer for a versioned capsule (DLPack >= 1.0) and fall back to the legacy one.
    ``stream``: the CUDA stream the consumer will use (device buffers only)."""
    kwargs = {} if stream is None else {"stream": stream}
    try:
        return x.__dlpack__(max_version=(1, 0), **kwargs)
    except TypeError:
        return x.__dlpack__(**kwargs)


def _check_finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def _shard_args(
    global_shape: Sequence[int] | None, global_offset: Sequence[int] | None
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    gs = None if global_shape is None else tuple(operator.index(v) for v in global_shape)
    go = None if global_offset is None else tuple(operator.index(v) for v in global_offset)
    return gs, go


def _random_fill(
    x: T,
    dist: str,
    params: tuple[float, ...],
    seed: int | Generator | None,
    global_shape: Sequence[int] | None,
    global_offset: Sequence[int] | None,
) -> T:
    gs, go = _shard_args(global_shape, global_offset)
    target = _Target(x)
    if target.skip:
        return x
    if seed is None or isinstance(seed, Generator):
        g = default_generator if seed is None else seed
        # The stream is taken only if the fill succeeds, so a rejected call leaves the
        # generator where it was; holding the lock keeps concurrent callers on distinct streams.
        with g._lock:
            target.backend.fill(target.handle, dist, params, g._seed, g._stream, gs, go)
            g._stream = (g._stream + 1) % _U64
    else:
        key, stream = resolve_seed(seed)
        target.backend.fill(target.handle, dist, params, key, stream, gs, go)
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
    lo = _check_finite("low", low)
    hi = _check_finite("high", high)
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
    :func:`uniform_` for ``x``, ``seed``, the shard keywords and the errors.
    """
    m = _check_finite("mean", mean)
    s = _check_finite("std", std)
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
    m = _check_finite("mean", mean)
    s = _check_finite("std", std)
    lo = _check_finite("a", a)
    hi = _check_finite("b", b)
    if math.isinf(m) or math.isinf(s):
        raise ValueError("trunc_normal_ needs a finite mean and std")
    if s < 0:
        raise ValueError(f"trunc_normal_ expects std >= 0, got {s}")
    if not lo < hi:
        raise ValueError(f"trunc_normal_ expects a < b, got a={lo}, b={hi}")
    if s == 0:
        if not lo <= m <= hi:
            raise ValueError(f"trunc_normal_ with std=0 needs a <= mean <= b, got mean={m}")
        return _random_fill(x, "uniform", (m, m), seed, global_shape, global_offset)
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
    s = _check_finite("stddev", stddev)
    m = _check_finite("mean", mean)
    lo = _check_finite("lower", lower)
    hi = _check_finite("upper", upper)
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
    v = float(value)
    gs, go = _shard_args(global_shape, global_offset)
    target = _Target(x)
    if target.skip:
        return x
    target.backend.constant(target.handle, v, gs, go)
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
    target = _Target(x)
    if target.skip:
        return x
    idx = np.ascontiguousarray(flat_indices, dtype=np.int64).reshape(-1)
    target.backend.scatter_constant(target.handle, float(value), idx, gs, go)
    return x


def random_words(n: int, key: int, stream: int, offset: int = 0) -> np.ndarray:
    """Words ``offset .. offset + n - 1`` of the ``(key, stream)`` Philox stream as uint32
    (word ``i`` is word ``i % 4`` of block ``i // 4``)."""
    return _core.random_words(
        operator.index(n), _as_u64(key, "key"), _as_u64(stream, "stream"), operator.index(offset)
    )
