"""fastinit.torch.signal_report: values against a hand computation, and the model left as it was."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import fastinit.torch as ft  # noqa: E402

pytestmark = pytest.mark.torch


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _expect(
    row: ft.LayerSignal,
    out: torch.Tensor,
    grad: torch.Tensor | None,
    wgrad: torch.Tensor | None,
) -> None:
    """Compare one report row with statistics computed here in NumPy float64."""
    o = _np(out)
    assert row.shape == tuple(out.shape)
    assert row.mean == pytest.approx(o.mean(), rel=1e-5, abs=1e-7)
    assert row.std == pytest.approx(o.std(), rel=1e-6)
    assert row.zeros == pytest.approx(np.mean(o == 0), abs=1e-15)
    dead = np.all(o.reshape(o.shape[0], -1) == 0, axis=0).mean()
    assert row.dead == pytest.approx(dead, abs=1e-15)
    if grad is None:
        assert math.isnan(row.grad_std)
    else:
        assert row.grad_std == pytest.approx(_np(grad).std(), rel=1e-6)
    if wgrad is None:
        assert math.isnan(row.weight_grad_std)
    else:
        assert row.weight_grad_std == pytest.approx(_np(wgrad).std(), rel=1e-6)


def _check_ratios(report: ft.SignalReport) -> None:
    rows = report.layers
    assert math.isnan(rows[0].std_ratio) and math.isnan(rows[0].grad_ratio)
    for prev, row in itertools.pairwise(rows):
        assert row.std_ratio == pytest.approx(row.std / prev.std, rel=1e-12)
        if not (math.isnan(row.grad_std) or math.isnan(prev.grad_std)):
            assert row.grad_ratio == pytest.approx(row.grad_std / prev.grad_std, rel=1e-12)
    assert report.std_ratio == pytest.approx(rows[-1].std / rows[0].std, rel=1e-12)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def test_mlp_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # three units dead for every example
    x = torch.randn(16, 6)

    report = ft.signal_report(model, x)

    w1, b1, w2, b2 = (_leaf(p) for p in model.parameters())
    h = F.linear(x, w1, b1)
    a = F.relu(h)
    y = F.linear(a, w2, b2)
    for t in (h, a, y):
        t.retain_grad()
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    loss = (y * g).sum()
    loss.backward()

    assert [r.name for r in report] == ["0", "1", "2"]
    assert [r.kind for r in report] == ["Linear", "ReLU", "Linear"]
    _expect(report[0], h, h.grad, w1.grad)
    _expect(report[1], a, a.grad, None)
    _expect(report[2], y, y.grad, w2.grad)
    assert report[1].dead >= 0.3  # the three forced units, at least
    assert report[2].grad_std == pytest.approx(_np(g).std(), rel=1e-6)
    assert report.loss == pytest.approx(float(loss.detach()), rel=1e-6)
    _check_ratios(report)


def test_cnn_matches_hand_computation_with_loss_fn() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )
    x = torch.randn(6, 3, 8, 8)
    target = torch.randn(6, 5)

    def loss_fn(y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(y, target)

    running = (model[1].running_mean.clone(), model[1].running_var.clone())
    report = ft.signal_report(model, x, loss_fn=loss_fn)

    wc, bc, gamma, beta, wl, bl = (_leaf(p) for p in model.parameters())
    c = F.conv2d(x, wc, bc, padding=1)
    n = F.batch_norm(c, running[0].clone(), running[1].clone(), gamma, beta, training=True)
    r = F.relu(n)
    m = F.max_pool2d(r, 2)
    f = m.flatten(1)
    y = F.linear(f, wl, bl)
    outs = [c, n, r, m, f, y]
    for t in outs:
        t.retain_grad()
    loss_fn(y).backward()

    assert [r.kind for r in report] == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
    ]
    wgrads = [wc.grad, gamma.grad, None, None, None, wl.grad]
    for row, out, wgrad in zip(report, outs, wgrads, strict=True):
        _expect(row, out, out.grad, wgrad)
    _check_ratios(report)
    # The report's own forward (train-mode BatchNorm) did not move the running statistics.
    assert torch.equal(model[1].running_mean, running[0])
    assert torch.equal(model[1].running_var, running[1])


class _Block(nn.Module):
    """A pre-norm transformer block: attention and MLP branches with residual adds."""

    def __init__(self, d: int = 16, heads: int = 4, p: float = 0.1) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True, dropout=0.0)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.drop(self.act(self.fc1(self.ln2(x)))))


def test_transformer_block_matches_hand_computation() -> None:
    torch.manual_seed(2)
    block = _Block()
    x = torch.randn(3, 7, 16)

    torch.manual_seed(123)
    report = ft.signal_report(block, x)

    # By hand: the same modules called one at a time, the same dropout draws (same seed).
    torch.manual_seed(123)
    params = dict(block.named_parameters())
    leaves = {k: _leaf(v) for k, v in params.items()}
    h1 = F.layer_norm(x, (16,), leaves["ln1.weight"], leaves["ln1.bias"])
    attn, _ = F.multi_head_attention_forward(
        h1.transpose(0, 1),
        h1.transpose(0, 1),
        h1.transpose(0, 1),
        16,
        4,
        leaves["attn.in_proj_weight"],
        leaves["attn.in_proj_bias"],
        None,
        None,
        False,
        0.0,
        leaves["attn.out_proj.weight"],
        leaves["attn.out_proj.bias"],
        training=True,
        need_weights=False,
    )
    attn = attn.transpose(0, 1)
    x1 = x + attn
    h2 = F.layer_norm(x1, (16,), leaves["ln2.weight"], leaves["ln2.bias"])
    u = F.linear(h2, leaves["fc1.weight"], leaves["fc1.bias"])
    v = F.gelu(u)
    d = F.dropout(v, 0.1, training=True)
    w = F.linear(d, leaves["fc2.weight"], leaves["fc2.bias"])
    y = x1 + w
    outs = [h1, attn, h2, u, v, d, w]
    for t in outs:
        t.retain_grad()
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    (y * g).sum().backward()

    assert [r.name for r in report] == ["ln1", "attn", "ln2", "fc1", "act", "drop", "fc2"]
    wgrads = [
        leaves["ln1.weight"].grad,
        leaves["attn.in_proj_weight"].grad,
        leaves["ln2.weight"].grad,
        leaves["fc1.weight"].grad,
        None,
        None,
        leaves["fc2.weight"].grad,
    ]
    for row, out, wgrad in zip(report, outs, wgrads, strict=True):
        row_check = row
        o = _np(out)
        assert row_check.std == pytest.approx(o.std(), rel=1e-6)
        assert row_check.mean == pytest.approx(o.mean(), rel=1e-5, abs=1e-7)
        assert row_check.zeros == pytest.approx(np.mean(o == 0), abs=1e-15)
        assert row_check.grad_std == pytest.approx(_np(out.grad).std(), rel=1e-6)
        if wgrad is None:
            assert math.isnan(row_check.weight_grad_std)
        else:
            assert row_check.weight_grad_std == pytest.approx(_np(wgrad).std(), rel=1e-6)
    assert report[5].zeros > 0.05  # the dropout's zeros: its draws were the hand ones
    _check_ratios(report)


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {
            k: v.detach().clone().reshape(-1).view(torch.uint8)
            for k, v in model.state_dict().items()
        },
        "grads": {
            k: (p.grad, None if p.grad is None else p.grad.clone().reshape(-1).view(torch.uint8))
            for k, p in model.named_parameters()
        },
        "modes": {k: m.training for k, m in model.named_modules()},
        "hooks": {
            k: (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                *(len(p._backward_hooks or {}) for p in m.parameters(recurse=False)),
                *(
                    len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
                    for p in m.parameters(recurse=False)
                ),
            )
            for k, m in model.named_modules()
        },
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
    }


def _assert_same(before: dict[str, object], after: dict[str, object]) -> None:
    assert before["modes"] == after["modes"]
    assert before["hooks"] == after["hooks"]
    assert before["requires_grad"] == after["requires_grad"]
    for k, v in before["state"].items():  # type: ignore[attr-defined]
        assert torch.equal(v, after["state"][k]), k  # type: ignore[index]
    for k, (g, gb) in before["grads"].items():  # type: ignore[attr-defined]
        g2, gb2 = after["grads"][k]  # type: ignore[index]
        assert g2 is g, k
        assert (gb is None and gb2 is None) or torch.equal(gb, gb2), k


def test_model_left_byte_identical() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.Dropout(0.5),
        nn.Linear(8, 2),
    )
    model[3].eval()  # a mixed-mode model: one dropout in eval mode
    model[7].weight.grad = torch.full_like(model[7].weight, 0.25)  # a .grad from before
    model[0].bias.requires_grad_(False)  # a frozen parameter
    x = torch.randn(5, 2, 8, 8)
    before = _snapshot(model)
    rng = torch.get_rng_state()

    report = ft.signal_report(model, x)

    assert torch.equal(torch.get_rng_state(), rng)
    _assert_same(before, _snapshot(model))
    assert len(report) == 8
    assert not math.isnan(report[7].weight_grad_std)
    # The same dropout draws as a plain call would have made next: the RNG was not consumed.
    torch.set_rng_state(rng)
    expected = model(x)
    torch.set_rng_state(rng)
    ft.signal_report(model, x)
    assert torch.equal(model(x), expected)


def test_model_left_unchanged_when_loss_fn_raises() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Tanh())
    x = torch.randn(4, 3)
    before = _snapshot(model)
    rng = torch.get_rng_state()
    with pytest.raises(TypeError, match="one-element"):
        ft.signal_report(model, x, loss_fn=lambda y: y)
    with pytest.raises(ZeroDivisionError):
        ft.signal_report(model, x, loss_fn=lambda y: 1 / 0)
    _assert_same(before, _snapshot(model))
    assert torch.equal(torch.get_rng_state(), rng)


def test_shared_module_rows_and_tuple_outputs() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.gru = nn.GRU(4, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            out, _ = self.gru(self.lin(self.lin(x)))
            return {"logits": out}

    model = Twice()
    report = ft.signal_report(model, torch.randn(2, 5, 4))
    assert [r.name for r in report] == ["lin", "lin#2", "gru"]
    # A shared weight's gradient sums both calls; both rows show it.
    assert report[0].weight_grad_std == report[1].weight_grad_std
    assert all(p.grad is None for p in model.parameters())


def test_input_grad_untouched_and_validation() -> None:
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    ft.signal_report(model, x)
    assert x.grad is None
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        ft.signal_report(lambda t: t, x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss_fn"):
        ft.signal_report(model, x, loss_fn=3)  # type: ignore[arg-type]


def test_only_and_tables() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())])
    report = ft.signal_report(model, torch.randn(32, 8))
    lin = report.only(nn.Linear)
    assert [r.name for r in lin] == ["0", "2", "4", "6"]
    assert lin[1].std_ratio == pytest.approx(lin[1].std / lin[0].std)
    assert report.only("Tanh").layers == report.only(nn.Tanh).layers
    text = report.table()
    assert len(text.splitlines()) == 2 + len(report)
    md = report.table("markdown")
    assert md.splitlines()[1].startswith("|---|")
    assert str(report) == text
    with pytest.raises(ValueError, match="fmt"):
        report.table("html")


def test_plot_writes_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    report = ft.signal_report(model, torch.randn(16, 8))
    path = tmp_path / "signal.png"
    report.plot(path, title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    both = tmp_path / "both.png"
    ft.plot_signal({"a": {"x": report, "y": report}, "b": {"x": report}}, both)
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = ft.signal_report(nn.Linear(2, 2), torch.randn(3, 2))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"fastinit\[plot\]"):
        report.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_default_init_vanishes_in_deep_tanh_mlp() -> None:
    # Torch's default Linear init (weight std 1/sqrt(3 fan_in)) shrinks a tanh signal by
    # about sqrt(3) a layer until the biases' share (std 1/sqrt(3 fan_in) too) is all that is
    # left: at width 256, below a tenth of the first layer's std.
    torch.manual_seed(6)
    model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(256, 256), nn.Tanh())])
    lin = ft.signal_report(model, torch.randn(64, 256)).only(nn.Linear)
    assert lin.std_ratio < 0.1
