"""torchtitan through fastinit: init_states under patched() and materialize_ of the llama3
debug model, against torchtitan's own meta -> to_empty -> init_states flow."""

from __future__ import annotations

import pytest
import torch

import fastinit.torch as ft
from fastinit.torch import _integrations, _target

from ._support import assert_same_laws, assert_ties_as, counting, require

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

llama3 = require(
    "torchtitan.models.llama3",
    "pip install --no-deps torchtitan==0.3.0 spmd_types==0.2.3 triton tyro einops "
    "(see tests/integrations/requirements-nodeps.txt)",
)
CPU = torch.device("cpu")


def config(tied: bool = False) -> object:
    cfg = llama3.llama3_configs["debugmodel"](attn_backend="flex")
    return cfg


def default_model() -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device("meta"):
        model = config().build()
    model.to_empty(device=CPU)
    model.init_states(buffer_device=CPU)
    return model


def assert_nothing_patched() -> None:
    assert not ft.is_patched()
    assert _integrations.installed_functions() == []
    assert torch.nn.init.trunc_normal_.__code__ is _target.ORIGINALS["trunc_normal_"].__code__


@pytest.fixture(scope="module")
def default() -> torch.nn.Module:
    return default_model()


def test_init_states_under_patched_follows_torchtitans_rules(default: torch.nn.Module) -> None:
    with torch.device("meta"):
        model = config().build()
    model.to_empty(device=CPU)
    with counting() as writes, ft.patched():
        model.init_states(buffer_device=CPU)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_nothing_patched()


@pytest.mark.parametrize("how", ["meta", "empty_init"])
def test_materialize_runs_init_states(default: torch.nn.Module, how: str) -> None:
    if how == "meta":
        with torch.device("meta"):
            model = config().build()
    else:
        with ft.empty_init():
            model = config().build()
    with counting() as writes:
        ft.materialize_(model, seed=0)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_ties_as(model, default)
    assert_nothing_patched()
