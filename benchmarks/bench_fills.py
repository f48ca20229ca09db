"""Fill benchmarks: fastinit's uniform_, normal_ and trunc_normal_ against their peers.

One group per operation, shape and dtype (``uniform_ 4096x4096 float32``), holding

- ``fastinit``: ``fastinit.<op>(x, ..., seed=SEED)``;
- ``torch``: ``torch.nn.init.<op>(x, ...)`` with the same arguments;
- ``numpy``: NumPy's Generator writing into the same float32 buffer (``rng.random(out=)``,
  ``rng.standard_normal(out=)``), for uniform_ and normal_ only (it has no truncated
  normal and no bfloat16);
- ``fill_``: ``torch.Tensor.fill_`` of the same buffer, the memory-bandwidth reference:
  the group's relative column then reads as "times a plain write".

The ``threads`` groups time fastinit with one thread and with all of them. The ``kernel sets``
groups time fastinit with each kernel set this CPU runs (scalar, avx2, avx512, neon), one
thread, on a 512x512 buffer (cache-resident, so the kernels rather than memory are timed):
their relative column is the AVX2 / AVX-512 ratio of the AVX2 issue, measured in one run.

Default shape: 4096x4096 (2^24 elements); ``FASTINIT_BENCH_FULL=1``: 2^28 elements and the
LLM shapes. The torch.nn.init peers of buffers above 2^24 elements run 3 fixed rounds
(1 for trunc_normal_, which takes ~19 s per 2^28 float32 elements).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import SEED, assert_sane, peer_rounds, pick_shapes, run_timed, shape_id

torch = pytest.importorskip("torch", reason="the benchmarks compare against torch.nn.init")

import fastinit  # noqa: E402
from fastinit.bench.fills import expected_distribution  # noqa: E402

DEFAULT_SHAPES = [(4096, 4096)]
FULL_SHAPES = [(2**28,), (4096, 4096), (4096, 14336), (8192, 28672), (128256, 4096)]
SHAPES = pick_shapes(DEFAULT_SHAPES, FULL_SHAPES, env="FASTINIT_BENCH_SHAPES")
DTYPES = ("float32", "bfloat16")
#: Positional arguments after the buffer, the same for fastinit and torch.nn.init.
ARGS: dict[str, tuple[float, ...]] = {
    "uniform_": (0.0, 1.0),
    "normal_": (0.0, 1.0),
    "trunc_normal_": (0.0, 1.0, -2.0, 2.0),
}
FILL_VALUE = 0.5


def _has_numpy_peer(op: str, dtype: str) -> bool:
    return op in ("uniform_", "normal_") and dtype == "float32"


def _cases() -> list[Any]:
    # Ordered shape > dtype > op > impl, so consecutive tests share one buffer.
    cases = []
    for shape in SHAPES:
        for dtype in DTYPES:
            for op in ARGS:
                impls = ["fastinit", "torch", "fill_"]
                if _has_numpy_peer(op, dtype):
                    impls.insert(2, "numpy")
                for impl in impls:
                    ident = f"{op}-{impl}-{shape_id(shape)}-{dtype}"
                    cases.append(pytest.param(shape, dtype, op, impl, id=ident))
    return cases


def _numpy_fill(op: str, x: Any) -> Any:
    rng = np.random.default_rng(SEED)
    out = x.numpy()  # shares the tensor's memory
    if op == "uniform_":  # U[0, 1), the distribution of uniform_(x, 0.0, 1.0)
        return lambda: rng.random(out=out, dtype=np.float32)
    return lambda: rng.standard_normal(out=out, dtype=np.float32)


@pytest.mark.parametrize(("shape", "dtype", "op", "impl"), _cases())
def test_fill(
    benchmark: Any, buffers: Any, shape: tuple[int, ...], dtype: str, op: str, impl: str
) -> None:
    """Time one implementation of `op` on the shared buffer, then check its values."""
    x = buffers.get(shape, dtype)
    args = ARGS[op]
    benchmark.group = f"{op} {shape_id(shape)} {dtype}"
    benchmark.extra_info.update(impl=impl, numel=x.numel(), bytes=x.numel() * x.element_size())
    rounds = None
    if impl == "fastinit":
        fill = getattr(fastinit, op)
        fn = lambda: fill(x, *args, seed=SEED)  # noqa: E731
        dist = expected_distribution(op, *args)
    elif impl == "torch":
        peer = getattr(torch.nn.init, op)
        fn = lambda: peer(x, *args)  # noqa: E731
        dist = expected_distribution(op, *args)
        rounds = peer_rounds(op, x.numel())
    elif impl == "numpy":
        fn = _numpy_fill(op, x)
        dist = expected_distribution(op, *args)
    else:
        fn = lambda: x.fill_(FILL_VALUE)  # noqa: E731
        dist = expected_distribution("fill_", FILL_VALUE)
    run_timed(benchmark, fn, rounds=rounds)
    assert_sane(x, dist, f"{impl} {op} {shape_id(shape)} {dtype}")


def _thread_cases() -> list[Any]:
    cases = []
    for shape in SHAPES:
        for op in ("normal_", "trunc_normal_"):
            for threads in ("1thread", "allthreads"):
                ident = f"{op}-fastinit-{threads}-{shape_id(shape)}-float32"
                cases.append(pytest.param(shape, op, threads, id=ident))
    return cases


@pytest.mark.parametrize(("shape", "op", "threads"), _thread_cases())
def test_thread_scaling(
    benchmark: Any,
    buffers: Any,
    bench_threads: int,
    shape: tuple[int, ...],
    op: str,
    threads: str,
) -> None:
    """fastinit with one thread and with the session's thread count, same buffer."""
    x = buffers.get(shape, "float32")
    args = ARGS[op]
    count = 1 if threads == "1thread" else bench_threads
    benchmark.group = f"threads {op} {shape_id(shape)} float32"
    benchmark.extra_info.update(threads=count, numel=x.numel())
    fill = getattr(fastinit, op)
    fastinit.set_num_threads(count)
    try:
        run_timed(benchmark, lambda: fill(x, *args, seed=SEED))
    finally:
        fastinit.set_num_threads(bench_threads)
    assert_sane(x, expected_distribution(op, *args), f"fastinit {op} with {count} thread(s)")


def _isa_cases() -> list[Any]:
    from fastinit import _core

    cases = []
    for dtype in DTYPES:
        for op in ARGS:
            for isa in _core.supported_isas():
                ident = f"{op}-fastinit-{isa}-512x512-{dtype}"
                cases.append(pytest.param(op, dtype, isa, id=ident))
    return cases


@pytest.mark.parametrize(("op", "dtype", "isa"), _isa_cases())
def test_kernel_sets(benchmark: Any, buffers: Any, op: str, dtype: str, isa: str) -> None:
    """fastinit with each supported kernel set, one thread, same cache-resident buffer."""
    from fastinit import _core

    x = buffers.get((512, 512), dtype)
    args = ARGS[op]
    benchmark.group = f"kernel sets {op} 512x512 {dtype}"
    benchmark.extra_info.update(isa=isa, numel=x.numel())
    fill = getattr(fastinit, op)
    saved_isa, saved_threads = _core.get_isa(), fastinit.get_num_threads()
    _core.set_isa(isa)
    fastinit.set_num_threads(1)
    try:
        run_timed(benchmark, lambda: fill(x, *args, seed=SEED))
    finally:
        _core.set_isa(saved_isa)
        fastinit.set_num_threads(saved_threads)
    assert_sane(x, expected_distribution(op, *args), f"fastinit {op} with the {isa} kernels")
