"""transformers through fastinit: patched() construction and materialize_, against the
default build of the same model (real transformers, small configs)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import fastinit.torch as ft
from fastinit.torch import _integrations, _target

from ._support import assert_same_laws, assert_ties_as, counting, require

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

transformers = require("transformers")

LLAMA = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def configs() -> dict[str, object]:
    return {
        "llama": transformers.LlamaConfig(**LLAMA),
        "llama-tied": transformers.LlamaConfig(**LLAMA, tie_word_embeddings=True),
        "bert": transformers.BertConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=64,
        ),
    }


def build(name: str) -> torch.nn.Module:
    cfg = configs()[name]
    if name == "bert":
        return transformers.BertForMaskedLM(cfg)
    return transformers.AutoModelForCausalLM.from_config(cfg)


def assert_nothing_patched() -> None:
    assert not ft.is_patched()
    assert _integrations.installed_functions() == []
    for name, fn in transformers.initialization.TORCH_INIT_FUNCTIONS.items():
        assert fn is getattr(torch.nn.init, name)
        assert fn.__code__ is _target.ORIGINALS[name].__code__ is not None


@pytest.mark.parametrize("name", ["llama", "llama-tied", "bert"])
def test_patched_construction_follows_the_models_rules(name: str) -> None:
    torch.manual_seed(0)
    default = build(name)
    with counting() as writes, ft.patched():
        model = build(name)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_ties_as(model, default)
    assert_nothing_patched()


@pytest.mark.parametrize("how", ["empty_init", "meta"])
@pytest.mark.parametrize("name", ["llama", "llama-tied", "bert"])
def test_materialize_runs_transformers_initializer(name: str, how: str) -> None:
    torch.manual_seed(0)
    default = build(name)
    if how == "empty_init":
        with ft.empty_init():
            model = build(name)
    else:
        with torch.device("meta"):
            model = build(name)
    assert any(p.is_meta for p in model.parameters())
    with counting() as writes:
        ft.materialize_(model, seed=0)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_ties_as(model, default)
    assert_nothing_patched()


def test_is_hf_initialized_tensors_are_kept() -> None:
    with ft.empty_init():
        model = build("llama")
    loaded = torch.nn.Parameter(torch.full_like(model.lm_head.weight, 0.5, device="cpu"))
    model.lm_head.weight = loaded  # as if loaded from a checkpoint
    ft.materialize_(model, seed=0)
    assert model.lm_head.weight is loaded and (loaded == 0.5).all()
    assert abs(model.model.embed_tokens.weight.std().item() - 0.02) < 0.002


def test_tied_target_of_a_kept_weight_gets_the_kept_tensor() -> None:
    # lm_head.weight is tied to a real (kept) embedding: transformers' tie_weights runs while
    # the kept slot holds a scratch tensor; the tie must end on the kept tensor, not on it.
    with torch.device("meta"):
        model = build("llama-tied")
    loaded = torch.nn.Parameter(torch.full((1000, 64), 0.5))
    model.model.embed_tokens.weight = loaded  # as if loaded from a checkpoint
    ft.materialize_(model, seed=0)
    assert model.model.embed_tokens.weight is loaded
    assert model.lm_head.weight is loaded and (loaded == 0.5).all()
    for mod in model.modules():
        for t in (*mod._parameters.values(), *mod._buffers.values()):
            assert t is None or not getattr(t, "_is_hf_initialized", False)


class _DataInitConfig(transformers.PretrainedConfig):
    model_type = "fastinit-data-init"

    def __init__(self, hidden: int = 256, **kwargs: object) -> None:
        self.hidden = hidden
        super().__init__(**kwargs)


class _DataInitModel(transformers.PreTrainedModel):
    # Writes through .data, as some transformers models do (ConvBERT): .data has its own
    # version counter, so only the storage tells that the weight was written.
    config_class = _DataInitConfig

    def __init__(self, config: _DataInitConfig) -> None:
        super().__init__(config)
        self.proj = torch.nn.Linear(config.hidden, config.hidden)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            module.bias.data.zero_()


def test_initializer_writes_through_data_are_kept() -> None:
    with torch.device("meta"):
        model = _DataInitModel(_DataInitConfig())
    assert model.proj.weight.is_meta
    ft.materialize_(model, seed=0)
    assert abs(model.proj.weight.std().item() - 0.02) < 0.002
    assert (model.proj.bias == 0).all()


def test_importing_transformers_inside_patched_leaks_nothing() -> None:
    code = textwrap.dedent(
        """
        import torch, fastinit.torch as ft
        init = torch.nn.init
        codes = {n: getattr(init, n).__code__ for n in init.__all__}
        with ft.patched():
            import transformers.initialization as hf
            assert hf.TORCH_INIT_FUNCTIONS["normal_"].__code__ is not codes["normal_"]
        for name, fn in hf.TORCH_INIT_FUNCTIONS.items():
            assert fn is getattr(torch.nn.init, name), name
            assert fn.__code__ is codes[name], name
        assert "_fastinit_route_" not in vars(torch.nn.init)
        import fastinit.torch._integrations as i
        import sys
        assert i.installed_functions() == []
        assert not any(type(f).__name__ == "_Finder" for f in sys.meta_path)
        print("clean")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout
