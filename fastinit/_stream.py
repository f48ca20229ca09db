"""Seeds and streams: the one owner of how a ``seed=`` argument becomes a Philox pair.

Every random fill in fastinit reads the Philox4x32-10 stream ``(key, stream)``. This module
turns what the user passed (``None``, an int, a :class:`Generator`) into that pair, and is the
only place that locks a :class:`Generator` or positions one on a pair:

- :func:`resolve` takes the pair now (a Generator's stream is consumed at once);
- :func:`run_seeded` takes it only if the call succeeds (commit-on-success), so a rejected
  call leaves the generator where it was;
- :func:`at` is a generator positioned on a pair already resolved, to hand that exact pair to
  a public fill that takes ``seed=``;
- a :class:`DrawnKey` (private: ``fastinit.torch`` passes one) is a key drawn from elsewhere
  only once the native call has checked everything, so a refused call draws nothing.

All 64-bit wrapping uses :data:`U64_MAX` (negatives wrap modulo ``2**64``, as torch's).
"""

from __future__ import annotations

import operator
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SEED",
    "U64_MAX",
    "DrawnKey",
    "Generator",
    "Key",
    "as_u64",
    "at",
    "default_generator",
    "key_value",
    "manual_seed",
    "resolve",
    "run_seeded",
    "wrap_u64",
]

R = TypeVar("R")

#: The largest 64-bit unsigned integer; seeds and streams live in ``[0, U64_MAX]``.
U64_MAX = (1 << 64) - 1
#: The default generator's seed until :func:`manual_seed` is called (fixed, like torch's, so
#: that an unseeded program is still reproducible).
DEFAULT_SEED = 0x5EED_F457_1A17


def wrap_u64(value: int) -> int:
    """``value`` modulo ``2**64`` (two's complement for negatives), without validation."""
    return int(value) & U64_MAX


def as_u64(value: Any, what: str) -> int:
    """Validate an integer seed or stream and reduce it to 64 bits (negatives wrap, as torch).

    Raises
    ------
    TypeError
        ``value`` is not an integer (bool included).
    ValueError
        ``value`` lies outside ``[-2**63, 2**64)``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if not -(1 << 63) <= v <= U64_MAX:
        raise ValueError(f"{what} must lie in [-2**63, 2**64), got {v}")
    return v & U64_MAX


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
        self._seed = as_u64(seed, "seed")
        self._stream = 0
        _generators.add(self)

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
        s = as_u64(seed, "seed")
        with self._lock:
            self._seed, self._stream = s, 0
        return self

    def next_stream(self) -> int:
        """Reserve and return the next stream number."""
        with self._lock:
            s = self._stream
            self._stream = wrap_u64(s + 1)
        return s

    def get_state(self) -> tuple[int, int]:
        """``(seed, next stream)``, to restore with :meth:`set_state`."""
        with self._lock:
            return self._seed, self._stream

    def set_state(self, state: tuple[int, int]) -> None:
        """Restore a state returned by :meth:`get_state`."""
        seed, stream = state
        s, t = as_u64(seed, "seed"), as_u64(stream, "stream")
        with self._lock:
            self._seed, self._stream = s, t

    def __repr__(self) -> str:
        return f"fastinit.Generator(seed={self._seed}, stream={self._stream})"


# Every live Generator, so that a forked child can replace their locks (see below).
_generators: weakref.WeakSet[Generator] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    # A lock that another thread of the parent held at fork() (e.g. around a long fill) stays
    # held forever in the child, where that thread does not exist. The child gets fresh ones;
    # a fill that was in flight in the parent took no stream (commit-on-success), so the
    # child's generators continue from the last completed call, as the parent's do.
    for g in list(_generators):
        g._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)

default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (stream 0) and return it."""
    return default_generator.manual_seed(seed)


class DrawnKey:
    """A key that ``draw()`` gives on first use, and the same key after.

    The native fills take it in place of an int key and call it after every check of the
    call has passed, before the first write (the bindings' ``seed_key``). ``fastinit.torch``
    passes one that draws the seed from torch's generator: a call the kernels refuse, which
    it hands to torch, then leaves that generator where torch's own call would find it.
    Its stream is 0, as an int seed's. Not thread-safe: one per call.
    """

    __slots__ = ("_draw", "_key")

    def __init__(self, draw: Callable[[], int]) -> None:
        self._draw = draw
        self._key: int | None = None

    def __call__(self) -> int:
        if self._key is None:
            self._key = self._draw()  # a 64-bit unsigned int (the bindings refuse others)
        return self._key


#: What a fill's ``call(key, stream)`` receives as the key (see :func:`run_seeded`).
Key = int | DrawnKey


def key_value(key: Key) -> int:
    """The key as an int (a :class:`DrawnKey` is drawn now, if it was not yet)."""
    return key if isinstance(key, int) else key()


def resolve(seed: int | Generator | None) -> tuple[int, int]:
    """Map a ``seed=`` argument to the Philox ``(key, stream)`` pair, taking the stream now.

    ``None`` takes the default generator's next stream, an int is a pure seed (stream 0), and a
    :class:`Generator` gives its seed and next stream.
    """
    if seed is None:
        seed = default_generator
    if isinstance(seed, Generator):
        # Key and stream under one lock: a concurrent manual_seed must not pair the old key
        # with the new generator's stream 0.
        with seed._lock:
            key, stream = seed._seed, seed._stream
            seed._stream = wrap_u64(stream + 1)
        return key, stream
    return as_u64(seed, "seed"), 0


def run_seeded(seed: int | Generator | DrawnKey | None, call: Callable[[Key, int], R]) -> R:
    """Return ``call(key, stream)`` for the pair ``seed`` stands for (see :func:`resolve`).

    A Generator's (or the default generator's) stream is taken only if ``call`` returns, so a
    rejected call leaves the generator where it was; the generator's lock is held during the
    call, which keeps concurrent callers on distinct streams. A :class:`DrawnKey` is handed to
    ``call`` as it is, with stream 0: the native call draws it after its checks (or
    :func:`key_value` does, where Python needs the int).
    """
    if isinstance(seed, DrawnKey):
        return call(seed, 0)
    if seed is None or isinstance(seed, Generator):
        g = default_generator if seed is None else seed
        with g._lock:
            result = call(g._seed, g._stream)
            g._stream = wrap_u64(g._stream + 1)
        return result
    return call(as_u64(seed, "seed"), 0)


def at(key: int, stream: int) -> Generator:
    """A fresh generator whose next stream is ``stream`` of ``key``: hands a pair resolved
    once (e.g. on every rank, or for two passes over one tensor) to a fill taking ``seed=``."""
    g = Generator(key)
    g._stream = as_u64(stream, "stream")
    return g
