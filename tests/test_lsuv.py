"""fastinit.torch.lsuv_ (layer-sequential unit variance) and the depth-scaled residual rule."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402

pytestmark = pytest.mark.torch


def _mlp(depth: int, width: int, act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), act())])


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    )


def test_reaches_tol_on_20_layer_mlp() -> None:
    torch.manual_seed(0)
    model = _mlp(20, 64)
    x = torch.randn(128, 64)
    report = ft.lsuv_(model, x, seed=1)
    assert report.converged and len(report) == 20
    assert [r.name for r in report] == [str(2 * i) for i in range(20)]
    # An independent measurement: every Linear output std within tol of 1.
    for row in ft.signal_report(model, x).only(nn.Linear):
        assert abs(row.std - 1) <= 0.05, row
    for row, layer in zip(report, (m for m in model if isinstance(m, nn.Linear)), strict=True):
        assert torch.count_nonzero(layer.bias) == 0
        assert row.iterations >= 1 or abs(row.std_before - 1) <= 0.05
    assert "std after" in report.table() and str(report) == report.table()


def test_reaches_tol_on_small_cnn() -> None:
    torch.manual_seed(1)
    model = _cnn()
    x = torch.randn(16, 3, 8, 8)
    report = ft.lsuv_(model, x, tol=0.02, seed=2)
    assert report.converged
    assert [r.kind for r in report] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    rows = ft.signal_report(model, x).only(nn.Conv2d, nn.Linear)
    assert all(abs(r.std - 1) <= 0.02 for r in rows)


def test_orthogonal_pre_init_then_one_scale_per_layer() -> None:
    # Without bias and with a linear output, one rescale is exact: W = scale * Q with Q
    # orthogonal (rows orthonormal for a wide matrix), scale = 1 / std(x Q^T).
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 16))
    x = torch.randn(64, 32)
    report = ft.lsuv_(model, x, seed=3, tol=1e-6, max_iter=3)
    w = model[0].weight.detach().double()
    scale = report[0].scale
    gram = w @ w.T / scale**2
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-5)
    assert float((x @ model[0].weight.detach().T).double().std(correction=0)) == pytest.approx(
        1, abs=1e-5
    )


def test_deterministic_for_a_seed_and_rng_untouched() -> None:
    x = torch.randn(32, 16)
    torch.manual_seed(10)
    a = nn.Sequential(_mlp(3, 16), nn.Dropout(0.2), nn.Linear(16, 4))
    torch.manual_seed(11)  # different starting weights: lsuv_ overwrites them all
    b = nn.Sequential(_mlp(3, 16), nn.Dropout(0.2), nn.Linear(16, 4))
    rng = torch.get_rng_state()
    ra = ft.lsuv_(a, x, seed=7)
    rb = ft.lsuv_(b, x, seed=7)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ra == rb and ra.seed == 7
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    ft.lsuv_(b, x, seed=8)
    assert not torch.equal(a[0][0].weight, b[0][0].weight)


def test_seed_none_draws_from_torch_default_generator() -> None:
    x = torch.randn(8, 4)
    torch.manual_seed(5)
    a = nn.Linear(4, 4)
    ra = ft.lsuv_(a, x)
    torch.manual_seed(5)
    b = nn.Linear(4, 4)
    rb = ft.lsuv_(b, x)
    assert ra.seed == rb.seed and torch.equal(a.weight, b.weight)


def test_buffers_restored_and_only_weights_change() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
    bn = dict(model[1].named_buffers())
    saved = {k: v.clone() for k, v in bn.items()}
    gamma = model[1].weight.detach().clone()
    ft.lsuv_(model, torch.randn(4, 2, 9, 9), seed=0)
    for k, v in bn.items():
        assert torch.equal(v, saved[k]), k
    assert torch.equal(model[1].weight, gamma)
    assert model.training


def test_warns_when_a_layer_cannot_reach_tol() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    with pytest.warns(UserWarning, match="did not reach unit variance"):
        report = ft.lsuv_(model, torch.zeros(8, 4), seed=0)
    assert not report.converged
    assert all(math.isfinite(p.abs().max().item()) for p in model.parameters())


def test_validation_leaves_model_untouched() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(8, 4)
    for kwargs, exc in [
        ({"tol": 0.0}, ValueError),
        ({"tol": math.nan}, ValueError),
        ({"tol": "0.1"}, TypeError),
        ({"max_iter": 0}, ValueError),
        ({"max_iter": 1.5}, TypeError),
        ({"seed": 1.0}, TypeError),
    ]:
        with pytest.raises(exc):
            ft.lsuv_(model, x, **kwargs)
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        ft.lsuv_(nn.Sequential(nn.ReLU()), x)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        ft.lsuv_(lambda t: t, x)  # type: ignore[arg-type]
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


@pytest.mark.slow
def test_50_layer_tanh_mlp_target() -> None:
    # The target, on a 50 x 256 tanh MLP with a 256-row batch.
    torch.manual_seed(0)
    model = _mlp(50, 256)
    x = torch.randn(256, 256)
    assert ft.signal_report(model, x).only(nn.Linear).std_ratio < 0.1  # torch's default
    ft.lsuv_(model, x, seed=0)
    stds = [r.std for r in ft.signal_report(model, x).only(nn.Linear)]
    assert len(stds) == 50 and all(0.95 <= s <= 1.05 for s in stds)


# --------------------------------------------------------------------------------------------
# depth-scaled residual rule
# --------------------------------------------------------------------------------------------


def test_depth_scaled_std_values() -> None:
    assert ft.depth_scaled_std(0.02, 12) == pytest.approx(0.02 / math.sqrt(24), rel=1e-15)
    assert ft.depth_scaled_std(1, 1) == pytest.approx(1 / math.sqrt(2))
    for args, exc in [
        ((-0.1, 2), ValueError),
        ((math.inf, 2), ValueError),
        ((0.02, 0), ValueError),
        ((0.02, 2.0), TypeError),
        ((0.02, True), TypeError),
        (("0.02", 2), TypeError),
    ]:
        with pytest.raises(exc):
            ft.depth_scaled_std(*args)


def test_depth_scaled_scheme_in_apply_() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = nn.Linear(64, 64)
            self.o_proj = nn.Linear(64, 64)
            self.down_proj = nn.Linear(256, 64)

    model = nn.ModuleList([Block() for _ in range(4)])
    q_before = model[0].q_proj.weight.detach().clone()
    assert ft.depth_scaled(4) == ("normal_", {"mean": 0.0, "std": 0.02 / math.sqrt(8)})
    report = ft.apply_(
        model,
        {
            "*.o_proj.weight": ft.depth_scaled(4, std=0.5),
            "*.down_proj.weight": ft.depth_scaled(4, std=0.5, scheme="trunc_normal_", a=-1, b=1),
        },
        seed=0,
    )
    assert len(report) == 8
    o = torch.cat([b.o_proj.weight.flatten() for b in model])
    d = torch.cat([b.down_proj.weight.flatten() for b in model])
    expected = 0.5 / math.sqrt(8)
    assert float(o.detach().std()) == pytest.approx(expected, rel=0.03)
    assert float(d.detach().std()) == pytest.approx(expected, rel=0.03)
    assert torch.equal(model[0].q_proj.weight, q_before)
    with pytest.raises(ValueError, match="scheme"):
        ft.depth_scaled(4, scheme="xavier_normal_")
    with pytest.raises(TypeError, match="mean"):
        ft.depth_scaled(4, mean=1.0)
