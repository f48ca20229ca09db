"""timm through fastinit: patched() construction, materialize_, and the routed helpers
(trunc_normal_, trunc_normal_tf_, variance_scaling_, lecun_normal_) against timm's own."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import fastinit.torch as ft
from fastinit.torch import _integrations

from ._support import P_MIN, assert_same_laws, counting, import_timm

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

timm = import_timm()
weight_init = timm.layers.weight_init

MODELS = ["resnet10t", "vit_tiny_patch16_224", "convnext_atto"]


def build(name: str) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False)


def assert_nothing_patched() -> None:
    assert not ft.is_patched()
    assert _integrations.installed_functions() == []
    for name in ("trunc_normal_", "trunc_normal_tf_", "variance_scaling_", "lecun_normal_"):
        assert "_fastinit_route_" not in getattr(weight_init, name).__code__.co_names


@pytest.mark.parametrize("name", MODELS)
def test_patched_construction_follows_the_models_rules(name: str) -> None:
    torch.manual_seed(0)
    default = build(name)
    with counting() as writes, ft.patched():
        model = build(name)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_nothing_patched()


@pytest.mark.parametrize("name", MODELS)
def test_materialize_runs_timms_initializer(name: str) -> None:
    torch.manual_seed(0)
    default = build(name)
    with ft.empty_init():
        model = build(name)
    assert any(p.is_meta for p in model.parameters())
    with counting() as writes:
        ft.materialize_(model, seed=0)
    share, per_op = writes.torch_share(model)
    assert share <= 0.01, f"torch initialized {share:.2%} of the elements: {per_op}"
    assert_same_laws(model, default)
    assert_nothing_patched()


def ks(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(stats.ks_2samp(x.double().numpy().ravel(), y.double().numpy().ravel()).pvalue)


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        ("trunc_normal_", dict(std=0.02)),
        ("trunc_normal_", dict(mean=0.5, std=2.0, a=-1.0, b=3.0)),
        ("trunc_normal_tf_", dict(std=0.3)),
        ("trunc_normal_tf_", dict(mean=1.0, std=0.5, a=-1.0, b=0.5)),
        ("variance_scaling_", dict(scale=2.0, mode="fan_out", distribution="truncated_normal")),
        ("variance_scaling_", dict(mode="fan_avg", distribution="normal")),
        ("variance_scaling_", dict(distribution="uniform")),
        ("lecun_normal_", {}),
    ],
)
def test_timm_helpers_keep_their_law(fn: str, kwargs: dict[str, object]) -> None:
    torch.manual_seed(1)
    default = torch.empty(400, 500)
    getattr(weight_init, fn)(default, **kwargs)
    ours = torch.empty(400, 500)
    with counting() as writes, ft.patched():
        getattr(weight_init, fn)(ours, **kwargs)
    assert writes.writes == [], "timm's helper ran torch's ops"
    assert ks(ours, default) > P_MIN
    if fn == "trunc_normal_tf_":
        mean, std = float(kwargs.get("mean", 0.0)), float(kwargs["std"])
        lo, hi = mean + float(kwargs.get("a", -2.0)) * std, mean + float(kwargs.get("b", 2.0)) * std
        assert ours.min() >= lo and ours.max() <= hi
    assert_nothing_patched()


def test_timm_helpers_fall_back_where_fastinit_cannot() -> None:
    t = torch.zeros(10, 10)
    with ft.patched():
        weight_init.trunc_normal_tf_(t, std=0.0, mean=2.0)  # std 0: timm's own code
        with pytest.raises(ValueError, match="invalid distribution"):
            weight_init.variance_scaling_(t, distribution="cauchy")
    assert (t == 2.0).all()
    assert math.isfinite(float(np.float32(t.sum())))


def test_timm_imported_inside_patched_is_routed_then_restored() -> None:
    code = textwrap.dedent(
        """
        import sys, torch
        import fastinit.torch as ft
        from fastinit.torch import _integrations
        from tests.integrations._support import import_timm
        assert "timm" not in sys.modules
        with ft.patched():
            timm = import_timm()
            wi = timm.layers.weight_init
            assert "_fastinit_route_" in wi.trunc_normal_.__code__.co_names
            routed = _integrations.installed_functions()
            assert ("timm.layers.weight_init", "trunc_normal_") in routed
            t = torch.empty(1000, 100)
            wi.trunc_normal_tf_(t, mean=1.0, std=0.5, a=-1.0, b=0.5)
            assert t.min() >= 0.5 and t.max() <= 1.25
        for name in ("trunc_normal_", "trunc_normal_tf_", "variance_scaling_", "lecun_normal_"):
            assert "_fastinit_route_" not in getattr(wi, name).__code__.co_names, name
        assert "_fastinit_route_" not in vars(wi)
        for mod in list(sys.modules.values()):
            for loader in (getattr(mod, "__loader__", None),
                           getattr(getattr(mod, "__spec__", None), "loader", None)):
                assert not type(loader).__module__.startswith("fastinit"), mod.__name__
        assert _integrations.installed_functions() == []
        assert not any(type(f).__module__.startswith("fastinit") for f in sys.meta_path)
        print("clean")
        """
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout
