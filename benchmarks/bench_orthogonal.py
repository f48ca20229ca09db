"""Orthogonal benchmarks: fastinit.orthogonal_ against torch.nn.init.orthogonal_.

One group per shape (``orthogonal_ 4096x4096``), holding

- ``fastinit-float32``: ``fastinit.orthogonal_(x, seed=SEED)`` on a float32 buffer;
- ``fastinit-bfloat16``: the same on a bfloat16 buffer (computed in float32 and rounded;
  torch.nn.init.orthogonal_ has no bfloat16 path on CPU), which should take the float32 time;
- ``torch-float32``: ``torch.nn.init.orthogonal_(x)`` on the float32 buffer.

Default shapes: 1024x1024 and 4096x4096; ``FASTINIT_BENCH_FULL=1``: the five shapes of
issue 5 (1024^2, 4096^2, 8192x2048, 2048x8192, 8192^2). torch's calls on shapes above 2^22
elements run a fixed 3 rounds (8192^2 takes several seconds each). Every benchmark then
checks ``max|Q^T Q - I|`` in float64 on 256 sampled columns, so a broken kernel cannot pass
as a fast one.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import SEED, pick_shapes, run_timed, shape_id

torch = pytest.importorskip("torch", reason="the benchmarks compare against torch.nn.init")

from fastinit._orthogonal import orthogonal_  # noqa: E402
from fastinit.bench.orthogonal import (  # noqa: E402
    ORTHOGONALITY_TOLERANCE,
    flop_count,
    orthogonality_error,
)

DEFAULT_SHAPES = [(1024, 1024), (4096, 4096)]
FULL_SHAPES = [(1024, 1024), (4096, 4096), (8192, 2048), (2048, 8192), (8192, 8192)]
SHAPES = pick_shapes(DEFAULT_SHAPES, FULL_SHAPES, env="FASTINIT_BENCH_ORTHOGONAL_SHAPES")
IMPLS = ("fastinit-bfloat16", "fastinit-float32", "torch-float32")
#: torch.nn.init.orthogonal_ on buffers above this many elements runs a fixed 3 rounds.
SLOW_PEER_NUMEL = 2**22


def _cases() -> list[Any]:
    # Ordered shape > impl, the float32 ones last, so that they share one buffer.
    return [
        pytest.param(shape, impl, id=f"{impl}-{shape_id(shape)}")
        for shape in SHAPES
        for impl in IMPLS
    ]


@pytest.mark.parametrize(("shape", "impl"), _cases())
def test_orthogonal(benchmark: Any, buffers: Any, shape: tuple[int, ...], impl: str) -> None:
    """Time one implementation on the shape's buffer, then check that it is orthogonal."""
    who, dtype = impl.split("-")
    x = buffers.get(shape, dtype)
    benchmark.group = f"orthogonal_ {shape_id(shape)}"
    benchmark.extra_info.update(
        impl=impl, dtype=dtype, numel=x.numel(), fastinit_flops=flop_count(shape)
    )
    if who == "fastinit":
        run_timed(benchmark, lambda: orthogonal_(x, seed=SEED))
    else:
        rounds = 3 if math.prod(shape) > SLOW_PEER_NUMEL else None
        run_timed(benchmark, lambda: torch.nn.init.orthogonal_(x), rounds=rounds)
    err = orthogonality_error(x)
    assert err <= ORTHOGONALITY_TOLERANCE[dtype], f"{impl} {shape_id(shape)}: {err:.3g}"
