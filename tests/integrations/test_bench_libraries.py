"""``python -m fastinit bench --model <library model>``: the runner and its checks, on a
small transformers model (the ~1B models are for the command line, not CI)."""

from __future__ import annotations

import io

import pytest
import torch

import fastinit.torch as ft
from fastinit.bench import libraries

from ._support import require

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

transformers = require("transformers")


def tiny() -> libraries.LibraryModel:
    cfg = transformers.LlamaConfig(
        vocab_size=500,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )

    def default() -> torch.nn.Module:
        return transformers.AutoModelForCausalLM.from_config(cfg)

    def patched() -> torch.nn.Module:
        with ft.patched():
            return default()

    def materialized() -> torch.nn.Module:
        with ft.empty_init():
            model = default()
        return ft.materialize_(model, seed=0)

    methods = {"torch": default, "patched": patched, "empty_init+materialize_": materialized}
    return libraries.LibraryModel("transformers", "tiny llama", methods)


def test_library_bench_runs_and_checks_every_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(libraries.LIBRARY_MODELS, "tiny", tiny)
    out = io.StringIO()
    rows = libraries.run_library_bench("tiny", repeat=2, threads=1, out=out)
    assert [r["method"] for r in rows] == ["torch", "patched", "empty_init+materialize_"]
    assert all(r["problem"] is None for r in rows), rows
    assert all(len(r["times_s"]) == 2 and r["speedup"] > 0 for r in rows)
    assert "tiny llama" in out.getvalue() and "vs torch" in out.getvalue()


def test_check_against_catches_a_wrong_law_and_a_changed_buffer() -> None:
    spec = tiny()
    torch.manual_seed(0)
    ref = libraries.reference_of(spec.methods["torch"]())
    model = spec.methods["patched"]()
    assert libraries.check_against(model, ref) is None
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    assert "up_proj.weight: KS" in str(libraries.check_against(model, ref))
    model = spec.methods["patched"]()
    with torch.no_grad():
        model.model.rotary_emb.inv_freq.add_(1e-3)
    assert "buffer model.rotary_emb.inv_freq" in str(libraries.check_against(model, ref))


def test_unknown_model_and_missing_library() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        libraries.run_library_bench("nope")
