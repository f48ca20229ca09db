"""Group "model": construct a Llama-style model by torch, patched() and meta + materialize_.

The model (one definition, in :mod:`fastinit.bench.models`) has about 1.6B parameters:
vocabulary 128256, hidden 2048, MLP 8192, 16 layers, untied head, no biases. Each benchmark
builds it on the CPU, in float32 or bfloat16:

- ``torch``: torch's default initialization (the reference);
- ``patched``: the same construction inside ``fastinit.torch.patched()``;
- ``materialize``: built on the meta device, then ``fastinit.torch.materialize_``;
- ``fill_``: built on the meta device, every parameter allocated and written once with
  ``torch.Tensor.fill_`` -- the memory floor (allocation and first touch of fresh pages are
  part of every method).

Every built model is checked (:func:`fastinit.bench.models.check_model`) outside the timing,
and only one model is alive at a time (a float32 model is 6.4 GB).

Environment variables
---------------------
FASTINIT_BENCH_MODEL=small
    A ~20M-parameter model (vocab 32000, hidden 512, MLP 2048, 2 layers) for quick runs.
FASTINIT_BENCH_MODEL_LAYERS=N
    Override the number of layers (of either size).
FASTINIT_BENCH_MODEL_ROUNDS=N
    Rounds per benchmark (default 3).
"""

from __future__ import annotations

import dataclasses
import gc
import os
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastinit")

from fastinit.bench.models import (  # noqa: E402
    FULL_CONFIG,
    INIT_METHODS,
    METHODS,
    SMALL_CONFIG,
    build_model,
    check_model,
)


def _config() -> Any:
    size = os.environ.get("FASTINIT_BENCH_MODEL", "full").strip().lower()
    if size not in ("full", "small"):
        raise ValueError(f"FASTINIT_BENCH_MODEL must be 'full' or 'small', got {size!r}")
    cfg = SMALL_CONFIG if size == "small" else FULL_CONFIG
    layers = os.environ.get("FASTINIT_BENCH_MODEL_LAYERS", "").strip()
    return dataclasses.replace(cfg, num_layers=int(layers)) if layers else cfg


CONFIG = _config()
ROUNDS = int(os.environ.get("FASTINIT_BENCH_MODEL_ROUNDS", "3"))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """Pay one-time costs (imports, torch's first meta-tensor ops) before any timing."""
    small = dataclasses.replace(SMALL_CONFIG, vocab_size=256, num_layers=1)
    for method in METHODS:
        for dtype in DTYPES.values():
            build_model(method, small, dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_model_construction(benchmark: Any, method: str, dtype: str) -> None:
    benchmark.group = "model"
    benchmark.name = f"{method} {dtype}"
    benchmark.extra_info.update(
        {"params": CONFIG.num_parameters, "layers": CONFIG.num_layers, "method": method}
    )
    held: dict[str, Any] = {}
    problems: list[str] = []

    def build() -> None:
        held["model"] = build_model(method, CONFIG, DTYPES[dtype])

    def teardown() -> None:
        model = held.pop("model")
        problem = check_model(model) if method in INIT_METHODS else None
        if problem is not None:
            problems.append(problem)
        del model
        gc.collect()

    benchmark.pedantic(build, teardown=teardown, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert problems == [], problems
