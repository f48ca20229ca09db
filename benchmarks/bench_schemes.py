"""Scheme benchmarks: fastinit's variance-scaling schemes against torch.nn.init.

One group per scheme, shape and dtype, holding ``fastinit.<scheme>(x, ..., seed=SEED)``,
``torch.nn.init.<scheme>(x, ...)`` with the same arguments and ``torch fill_`` of the same
buffer (the memory-bandwidth reference). ``variance_scaling_`` (Keras/JAX's default
truncated normal) has no torch.nn.init namesake: its peer is the torch.nn.init.trunc_normal_
call that draws the same distribution.

Shapes are in torch's layout ``(out, in, *kernel)``: a square projection and a 3x3
convolution by default; the LLM projections and embedding with ``FASTINIT_BENCH_FULL=1``.
Each benchmark then checks the values against the scheme's std and bounds computed here
from the fans, independently of fastinit's own fan code.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import SEED, assert_sane, peer_rounds, pick_shapes, run_timed, shape_id

torch = pytest.importorskip("torch", reason="the benchmarks compare against torch.nn.init")

import fastinit  # noqa: E402
from fastinit.bench.fills import Distribution, expected_distribution  # noqa: E402

if not hasattr(fastinit, "variance_scaling_"):
    pytest.skip(
        "this fastinit has no schemes yet (issue 4: fastinit.xavier_uniform_ and friends)",
        allow_module_level=True,
    )

DEFAULT_SHAPES = [(2048, 2048), (512, 512, 3, 3)]
FULL_SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336), (128256, 4096)]
SHAPES = pick_shapes(DEFAULT_SHAPES, FULL_SHAPES)
DTYPES = ("float32", "bfloat16")
#: Keras/JAX divide the truncated normal's std by the std of N(0, 1) truncated to [-2, 2].
TRUNC_STD_FACTOR = expected_distribution("trunc_normal_", 0.0, 1.0, -2.0, 2.0).std


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(bound: float) -> Distribution:
    return expected_distribution("uniform_", -bound, bound)


def _normal(std: float) -> Distribution:
    return expected_distribution("normal_", 0.0, std)


def _scheme(name: str, shape: tuple[int, ...]) -> tuple[Any, Any, Distribution]:
    """fastinit's call, torch's call (both taking the buffer) and the expected distribution."""
    fan_in, fan_out = _fans(shape)
    if name == "xavier_uniform_":
        dist = _uniform(math.sqrt(6.0 / (fan_in + fan_out)))
        return (
            lambda x: fastinit.xavier_uniform_(x, 1.0, seed=SEED),
            lambda x: torch.nn.init.xavier_uniform_(x, 1.0),
            dist,
        )
    if name == "xavier_normal_":
        dist = _normal(math.sqrt(2.0 / (fan_in + fan_out)))
        return (
            lambda x: fastinit.xavier_normal_(x, 1.0, seed=SEED),
            lambda x: torch.nn.init.xavier_normal_(x, 1.0),
            dist,
        )
    if name == "kaiming_uniform_":  # nn.Linear / nn.Conv*'s default: bound 1/sqrt(fan_in)
        a = math.sqrt(5.0)
        dist = _uniform(1.0 / math.sqrt(fan_in))
        return (
            lambda x: fastinit.kaiming_uniform_(x, a, seed=SEED),
            lambda x: torch.nn.init.kaiming_uniform_(x, a),
            dist,
        )
    if name == "kaiming_normal_":
        dist = _normal(math.sqrt(2.0 / fan_out))
        return (
            lambda x: fastinit.kaiming_normal_(x, 0.0, "fan_out", "relu", seed=SEED),
            lambda x: torch.nn.init.kaiming_normal_(x, 0.0, "fan_out", "relu"),
            dist,
        )
    if name == "variance_scaling_":  # truncated normal with variance exactly 1/fan_in
        std = math.sqrt(1.0 / fan_in) / TRUNC_STD_FACTOR
        dist = expected_distribution("trunc_normal_", 0.0, std, -2.0 * std, 2.0 * std)
        return (
            lambda x: fastinit.variance_scaling_(x, 1.0, "fan_in", "truncated_normal", seed=SEED),
            lambda x: torch.nn.init.trunc_normal_(x, 0.0, std, -2.0 * std, 2.0 * std),
            dist,
        )
    raise ValueError(name)


SCHEMES = (
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "variance_scaling_",
)


def _cases() -> list[Any]:
    # Ordered shape > dtype > scheme > impl, so consecutive tests share one buffer.
    return [
        pytest.param(shape, dtype, name, impl, id=f"{name}-{impl}-{shape_id(shape)}-{dtype}")
        for shape in SHAPES
        for dtype in DTYPES
        for name in SCHEMES
        for impl in ("fastinit", "torch", "fill_")
    ]


@pytest.mark.parametrize(("shape", "dtype", "name", "impl"), _cases())
def test_scheme(
    benchmark: Any, buffers: Any, shape: tuple[int, ...], dtype: str, name: str, impl: str
) -> None:
    """Time one implementation of a scheme on the shared buffer, then check its values."""
    x = buffers.get(shape, dtype)
    ours, peer, dist = _scheme(name, shape)
    benchmark.group = f"{name} {shape_id(shape)} {dtype}"
    benchmark.extra_info.update(impl=impl, numel=x.numel(), bytes=x.numel() * x.element_size())
    if impl == "fastinit":
        run_timed(benchmark, lambda: ours(x))
    elif impl == "torch":
        run_timed(benchmark, lambda: peer(x), rounds=peer_rounds(name, x.numel()))
    else:
        run_timed(benchmark, lambda: x.fill_(0.5))
        dist = expected_distribution("fill_", 0.5)
    assert_sane(x, dist, f"{impl} {name} {shape_id(shape)} {dtype}")
