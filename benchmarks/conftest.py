"""Shared set-up of the pytest-benchmark suites (``pytest benchmarks/``).

Environment variables
---------------------
FASTINIT_BENCH_FULL=1
    Use the full-size shapes (2^28 elements and the LLM matrices) instead of the default
    ones, which are sized so that the whole suite runs in a few minutes on 2 cores.
FASTINIT_BENCH_SHAPES=4096x4096,2^28
    Shapes of the fill benchmarks (overrides both size sets; the schemes keep theirs).
FASTINIT_BENCH_THREADS=N
    Threads for fastinit and torch (default: ``fastinit.get_num_threads()``).

Every group holds one operation on one shape and dtype: fastinit, its ``torch.nn.init``
peer (NumPy's Generator too where it has the distribution) and ``torch fill_`` of the
same buffer, the memory-bandwidth reference. Every benchmark asserts afterwards that the
buffer holds plausible values, so a broken kernel cannot pass as a fast one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

FULL = os.environ.get("FASTINIT_BENCH_FULL", "0") not in ("", "0")
#: torch.nn.init peers of buffers larger than this run a fixed, small number of rounds:
#: torch.nn.init.trunc_normal_ takes ~70 ns per element (19 s for 2^28 float32).
SLOW_PEER_NUMEL = 2**24
#: The fixed seed of every fastinit call, so every round does the same work.
SEED = 20240611


def threads_from_env() -> int | None:
    """The ``FASTINIT_BENCH_THREADS`` override, or None."""
    text = os.environ.get("FASTINIT_BENCH_THREADS", "").strip()
    return int(text) if text else None


def pick_shapes(
    default: Sequence[tuple[int, ...]], full: Sequence[tuple[int, ...]], *, env: str | None = None
) -> list[tuple[int, ...]]:
    """The shapes of a suite: `env`'s list when set, else `full` or `default`.

    Parameters
    ----------
    default, full : list of tuple of int
        Shapes of the default and the ``FASTINIT_BENCH_FULL=1`` runs.
    env : str, optional
        Name of an environment variable that may override both (parsed by
        :func:`fastinit.bench.fills.parse_shapes`).

    Returns
    -------
    list of tuple of int
        The shapes to benchmark.
    """
    text = os.environ.get(env, "").strip() if env else ""
    if text:
        from fastinit.bench.fills import parse_shapes

        return [shape for _, shape in parse_shapes(text)]
    return list(full if FULL else default)


def shape_id(shape: tuple[int, ...]) -> str:
    """``4096x4096``, or ``2^28`` for a flat power of two."""
    if len(shape) == 1 and shape[0] > 1024 and shape[0] & (shape[0] - 1) == 0:
        return f"2^{shape[0].bit_length() - 1}"
    return "x".join(map(str, shape))


class BufferCache:
    """Hands out one torch buffer per (shape, dtype), keeping only the latest alive.

    Tests are parametrized so that consecutive ones share a shape and dtype: the buffer is
    allocated and touched once, reused by every implementation in the group, and freed
    when the next shape comes (128256x4096 float32 alone is 2 GiB).
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[int, ...], str] | None = None
        self._buffer: Any = None

    def get(self, shape: tuple[int, ...], dtype: str) -> Any:
        """The buffer of `shape` and `dtype` (a contiguous torch tensor, pages touched)."""
        import torch

        if self._key != (shape, dtype):
            self._buffer = None  # free the previous buffer before allocating the next
            self._buffer = torch.empty(shape, dtype=getattr(torch, dtype))
            self._buffer.fill_(0.0)  # first touch: page faults stay out of the timings
            self._key = (shape, dtype)
        return self._buffer

    def clear(self) -> None:
        """Free the buffer held."""
        self._key, self._buffer = None, None


@pytest.fixture(scope="session")
def buffers() -> Iterator[BufferCache]:
    """The session's :class:`BufferCache`."""
    cache = BufferCache()
    yield cache
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def bench_threads() -> Iterator[int]:
    """Give fastinit and torch the same thread count for the whole session."""
    try:
        import torch

        import fastinit
    except ImportError:  # the suites skip themselves with the reason
        yield 0
        return
    threads = threads_from_env() or fastinit.get_num_threads()
    saved = (torch.get_num_threads(), fastinit.get_num_threads())
    torch.set_num_threads(threads)
    fastinit.set_num_threads(threads)
    yield threads
    torch.set_num_threads(saved[0])
    fastinit.set_num_threads(saved[1])


def run_timed(benchmark: Any, fn: Callable[[], object], *, rounds: int | None = None) -> None:
    """Time `fn` with pytest-benchmark.

    Parameters
    ----------
    benchmark : pytest_benchmark.fixture.BenchmarkFixture
        The fixture.
    fn : callable
        The call to time (no arguments).
    rounds : int, optional
        A fixed number of rounds of one call each (for very slow peers); by default
        pytest-benchmark calibrates (``--benchmark-min-rounds``, ``--benchmark-max-time``).
    """
    if rounds is None:
        benchmark(fn)
    else:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


def peer_rounds(op: str, numel: int) -> int | None:
    """Fixed rounds for a torch.nn.init peer on a large buffer, else None (calibrated)."""
    if numel <= SLOW_PEER_NUMEL:
        return None
    return 1 if "trunc" in op or "variance" in op else 3


def assert_sane(x: Any, dist: Any, what: str) -> None:
    """Assert that the values in `x` plausibly follow `dist` (a fastinit.bench.fills.Distribution).

    Parameters
    ----------
    x : torch.Tensor
        The buffer just written.
    dist : fastinit.bench.fills.Distribution
        Expected moments and bounds.
    what : str
        Names the benchmark in the failure message.
    """
    import torch

    from fastinit.bench.fills import check_sample, sample_values

    problem = check_sample(sample_values(x), dist, torch.finfo(x.dtype).eps)
    assert problem is None, f"{what}: {problem}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which size set, threads and fastinit ISA this run uses."""
    lines = [
        f"fastinit benchmarks: {'FULL' if FULL else 'default'} shapes "
        f"(FASTINIT_BENCH_FULL={'1' if FULL else '0'}), threads "
        f"{threads_from_env() or 'fastinit.get_num_threads()'}"
    ]
    try:
        import fastinit
    except ImportError as exc:
        return [*lines, f"fastinit not importable: {exc}"]
    config_fn = getattr(fastinit, "config", None)
    if config_fn is not None:
        lines.append(f"fastinit.config(): {config_fn()}")
    return lines


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record fastinit's and torch's versions, the threads and the ISA with every saved run."""
    info: dict[str, Any] = {"full_shapes": FULL, "threads_env": threads_from_env()}
    try:
        import fastinit

        info["fastinit_threads"] = fastinit.get_num_threads()
        info["fastinit_version"] = getattr(fastinit, "__version__", None)
        config_fn = getattr(fastinit, "config", None)
        info["fastinit_config"] = config_fn() if config_fn is not None else None
    except ImportError:
        pass
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    machine_info["fastinit"] = info
