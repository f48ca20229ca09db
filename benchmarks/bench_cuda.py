"""CUDA fill benchmarks: fastinit's kernels against torch.nn.init on the same GPU buffer.

One group per operation, shape and dtype (``cuda normal_ 4096x14336 bfloat16``), holding

- ``fastinit``: ``fastinit.<op>(x, ..., seed=SEED)`` on a torch CUDA tensor;
- ``torch``: ``torch.nn.init.<op>(x, ...)`` (torch's own CUDA kernels);
- ``fill_``: ``torch.Tensor.fill_`` of the same buffer, the memory-bandwidth reference (a
  plain write of every byte), so the group's relative column reads as "times a plain write"
  and ``fill_ time / fastinit time`` is the fraction of the attainable write bandwidth that
  fastinit reaches (the goal is >= 0.9 for the fills).

Every timed call ends with ``torch.cuda.synchronize()``, so the times are kernel times plus
one launch and one synchronization. ``extra_info`` records the bytes written and the
achieved GB/s. The module skips itself, with the reason, where no GPU is usable.

Shapes as in ``bench_fills.py`` (``FASTINIT_BENCH_FULL=1``, ``FASTINIT_BENCH_SHAPES``);
the default set here is larger, since a GPU writes 4096x4096 float32 in ~20 us.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import SEED, pick_shapes, run_timed, shape_id

torch = pytest.importorskip("torch", reason="the CUDA benchmarks compare against torch")

import fastinit  # noqa: E402
from fastinit.bench.fills import check_sample, expected_distribution  # noqa: E402


def _gpu_skip_reason() -> str | None:
    cuda = fastinit.config()["cuda"]
    if not cuda["built"]:
        return "fastinit was built without its CUDA module (FASTINIT_CUDA=OFF or no nvcc)"
    if not cuda["available"]:
        return f"no usable CUDA device: {cuda.get('error', 'the driver sees none')}"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA support or sees no GPU"
    return None


_REASON = _gpu_skip_reason()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

DEFAULT_SHAPES = [(4096, 14336), (2**28,)]
FULL_SHAPES = [(2**28,), (4096, 4096), (4096, 14336), (8192, 28672), (128256, 4096), (10**9,)]
SHAPES = pick_shapes(DEFAULT_SHAPES, FULL_SHAPES, env="FASTINIT_BENCH_SHAPES")
DTYPES = ("float32", "bfloat16")
ARGS: dict[str, tuple[float, ...]] = {
    "uniform_": (0.0, 1.0),
    "normal_": (0.0, 1.0),
    "trunc_normal_": (0.0, 1.0, -2.0, 2.0),
}
FILL_VALUE = 0.5
SAMPLE = 1 << 16


class _GpuBuffer:
    """One CUDA buffer per (shape, dtype), the previous one freed first."""

    def __init__(self) -> None:
        self.key: tuple[tuple[int, ...], str] | None = None
        self.x: Any = None

    def get(self, shape: tuple[int, ...], dtype: str) -> Any:
        if self.key != (shape, dtype):
            self.x = None
            torch.cuda.empty_cache()
            self.x = torch.zeros(shape, dtype=getattr(torch, dtype), device="cuda")
            self.key = (shape, dtype)
        return self.x


@pytest.fixture(scope="module")
def gpu_buffer() -> Any:
    buf = _GpuBuffer()
    yield buf
    buf.x = None
    torch.cuda.empty_cache()


def _cases() -> list[Any]:
    cases = []
    for shape in SHAPES:
        for dtype in DTYPES:
            for op in ARGS:
                for impl in ("fastinit", "torch", "fill_"):
                    ident = f"cuda-{op}-{impl}-{shape_id(shape)}-{dtype}"
                    cases.append(pytest.param(shape, dtype, op, impl, id=ident))
    return cases


def _synchronized(fn: Any) -> Any:
    def call() -> None:
        fn()
        torch.cuda.synchronize()

    return call


@pytest.mark.parametrize(("shape", "dtype", "op", "impl"), _cases())
def test_cuda_fill(
    benchmark: Any, gpu_buffer: Any, shape: tuple[int, ...], dtype: str, op: str, impl: str
) -> None:
    """Time one implementation on the shared CUDA buffer, then check a sample of its values."""
    x = gpu_buffer.get(shape, dtype)
    args = ARGS[op]
    nbytes = x.numel() * x.element_size()
    benchmark.group = f"cuda {op} {shape_id(shape)} {dtype}"
    benchmark.extra_info.update(
        impl=impl, numel=x.numel(), bytes=nbytes, device=torch.cuda.get_device_name(x.device)
    )
    if impl == "fastinit":
        fill = getattr(fastinit, op)
        fn = lambda: fill(x, *args, seed=SEED)  # noqa: E731
        dist = expected_distribution(op, *args)
    elif impl == "torch":
        peer = getattr(torch.nn.init, op)
        fn = lambda: peer(x, *args)  # noqa: E731
        dist = expected_distribution(op, *args)
    else:
        fn = lambda: x.fill_(FILL_VALUE)  # noqa: E731
        dist = expected_distribution("fill_", FILL_VALUE)
    fn()  # first launch (module load, JIT where only PTX fits) stays out of the timing
    torch.cuda.synchronize()
    run_timed(benchmark, _synchronized(fn))
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.min / 1e9
    flat = x.view(-1)
    step = max(1, flat.numel() // SAMPLE)
    values = flat[::step][:SAMPLE].to(torch.float64).cpu().numpy()
    problem = check_sample(values, dist, float(torch.finfo(x.dtype).eps))
    assert problem is None, f"{impl} {op} {shape_id(shape)} {dtype}: {problem}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype: str) -> None:
    """Not a timing: a 2^20-element spot check that the benchmarked kernels give the CPU's bits."""
    shape = (1024, 1024)
    for op, args in ARGS.items():
        fill = getattr(fastinit, op)
        x = torch.empty(shape, dtype=getattr(torch, dtype), device="cuda")
        y = torch.empty(shape, dtype=getattr(torch, dtype))
        fill(x, *args, seed=SEED)
        fill(y, *args, seed=SEED)
        got = x.cpu().view(torch.int16 if x.element_size() == 2 else torch.int32).numpy()
        want = y.view(torch.int16 if y.element_size() == 2 else torch.int32).numpy()
        np.testing.assert_array_equal(got, want, err_msg=f"{op} {dtype}")
