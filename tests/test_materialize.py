"""fastinit.torch.materialize_ (meta-device models), apply_ (partial re-initialization) and the
model benchmark's definition and checks."""

from __future__ import annotations

import io
import math
import sys
from typing import Any

import pytest
from scipy import stats

torch = pytest.importorskip("torch")
nn = torch.nn

import fastinit.torch as ft  # noqa: E402
from fastinit.bench import models as _bench_model  # noqa: E402
from fastinit.torch import _target  # noqa: E402

P_MIN = 1e-4


class Custom(nn.Module):
    """A module without reset_parameters: the documented fallback rule applies."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(8, 4))
        self.weight = nn.Parameter(torch.randn(4))
        self.bias = nn.Parameter(torch.randn(4))
        self.frozen = nn.Parameter(torch.randn(6, 6), requires_grad=False)


class Zoo(nn.Module):
    """Every common layer type."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(40, 30)
        self.bil = nn.Bilinear(5, 6, 7)
        self.c1 = nn.Conv1d(3, 4, 3)
        self.c2 = nn.Conv2d(3, 8, 3)
        self.c3 = nn.Conv3d(2, 4, 3)
        self.ct = nn.ConvTranspose2d(4, 3, 3)
        self.emb = nn.Embedding(1000, 32, padding_idx=0)
        self.bag = nn.EmbeddingBag(50, 8)
        self.ln = nn.LayerNorm(16)
        self.rms = nn.RMSNorm(16)
        self.gn = nn.GroupNorm(2, 8)
        self.bn = nn.BatchNorm2d(8)
        self.inorm = nn.InstanceNorm1d(4, affine=True, track_running_stats=True)
        self.mha = nn.MultiheadAttention(16, 4)
        self.enc = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0)
        self.lstm = nn.LSTM(8, 16, 2)
        self.gru = nn.GRU(8, 16)
        self.rnn = nn.RNN(8, 12)
        self.prelu = nn.PReLU()
        self.custom = Custom()


def meta_zoo() -> Zoo:
    with torch.device("meta"):
        return Zoo()


def fan_in(w: Any) -> int:
    return nn.init._calculate_fan_in_and_fan_out(w)[0]


def check_zoo(m: Zoo) -> None:
    """Every tensor of a materialized Zoo follows its module's initialization rule."""
    for name, t in [*m.named_parameters(), *m.named_buffers()]:
        assert t.device.type == "cpu", name
        assert not t.is_meta, name
    with torch.no_grad():
        for mod in (m.lin, m.c1, m.c2, m.c3, m.ct, m.enc.linear1, m.enc.linear2):
            bound = 1 / math.sqrt(fan_in(mod.weight))
            assert mod.weight.abs().max() <= bound
            assert mod.weight.abs().max() > 0.9 * bound
            assert mod.bias.abs().max() <= bound
        b = 1 / math.sqrt(5)
        assert m.bil.weight.abs().max() <= b and m.bil.bias.abs().max() <= b
        emb = m.emb.weight[1:].double().numpy().ravel()
        assert stats.kstest(emb, "norm").pvalue > P_MIN
        assert (m.emb.weight[0] == 0).all()  # padding_idx
        assert stats.kstest(m.bag.weight.double().numpy().ravel(), "norm").pvalue > P_MIN
        for norm in (m.ln, m.gn, m.bn, m.inorm, m.enc.norm1, m.enc.norm2):
            assert (norm.weight == 1).all() and (norm.bias == 0).all()
        assert (m.rms.weight == 1).all()
        for bn in (m.bn, m.inorm):
            assert (bn.running_mean == 0).all() and (bn.running_var == 1).all()
            assert bn.num_batches_tracked.item() == 0
        for mha in (m.mha, m.enc.self_attn):
            e = mha.embed_dim
            assert mha.in_proj_weight.abs().max() <= math.sqrt(6 / (e + 3 * e))
            assert (mha.in_proj_bias == 0).all() and (mha.out_proj.bias == 0).all()
        for rnn in (m.lstm, m.gru, m.rnn):
            bound = 1 / math.sqrt(rnn.hidden_size)
            for p in rnn.parameters():
                assert p.abs().max() <= bound
        assert (m.prelu.weight == 0.25).all()
        assert m.custom.proj.abs().max() <= 1 / math.sqrt(4)  # fallback: Linear's rule
        assert (m.custom.weight == 1).all() and (m.custom.bias == 0).all()
        assert m.custom.frozen.abs().max() <= 1 / math.sqrt(6)
    assert not m.custom.frozen.requires_grad and m.custom.proj.requires_grad


def test_materialize_every_common_layer() -> None:
    m = meta_zoo()
    assert ft.materialize_(m, seed=0) is m
    check_zoo(m)
    reference = Zoo()
    ours = dict(m.named_parameters()) | dict(m.named_buffers())
    theirs = dict(reference.named_parameters()) | dict(reference.named_buffers())
    assert list(ours) == list(theirs)
    for name, t in theirs.items():
        assert ours[name].shape == t.shape and ours[name].dtype == t.dtype, name
        assert type(ours[name]) is type(t), name
    with torch.no_grad():  # and the model runs
        y = m.enc(torch.randn(5, 2, 16))
        out, _ = m.lstm(torch.randn(7, 3, 8))
    assert torch.isfinite(y).all() and torch.isfinite(out).all()


def test_materialize_is_deterministic_per_seed_and_name() -> None:
    a, b, c = meta_zoo(), meta_zoo(), meta_zoo()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    ft.materialize_(a, seed=7)
    ft.materialize_(b, seed=7)
    ft.materialize_(c, seed=8)
    assert torch.equal(state, torch.get_rng_state())  # torch's RNG is left as it was
    for (name, x), y, z in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
        if x.is_floating_point() and x.numel() > 16 and x.unique().numel() > 2:
            assert not torch.equal(x, z), name
    # A module's values depend on (seed, its qualified name) only, not on what else exists.
    with torch.device("meta"):
        small = nn.Module()
        small.lin = nn.Linear(40, 30)
    ft.materialize_(small, seed=7)
    assert torch.equal(small.lin.weight, a.lin.weight)


def test_materialize_seed_none_follows_torch_manual_seed() -> None:
    a, b = meta_zoo(), meta_zoo()
    torch.manual_seed(3)
    ft.materialize_(a)
    torch.manual_seed(3)
    ft.materialize_(b)
    assert torch.equal(a.lin.weight, b.lin.weight)
    assert torch.equal(a.emb.weight, b.emb.weight)


def test_materialize_keeps_ties_and_casts_dtype() -> None:
    with torch.device("meta"):
        model = nn.Module()
        model.embed = nn.Embedding(64, 16)
        model.head = nn.Linear(16, 64, bias=False)
        model.head.weight = model.embed.weight
        model.bn = nn.BatchNorm1d(16)
    ft.materialize_(model, dtype=torch.bfloat16, seed=1)
    assert model.head.weight is model.embed.weight
    assert model.embed.weight.dtype == torch.bfloat16
    assert model.bn.num_batches_tracked.dtype == torch.int64
    # embed is visited first and owns the tied tensor; head does not overwrite it
    assert model.embed.weight.float().std() > 0.5


def test_materialize_keeps_tensors_that_are_not_meta() -> None:
    model = meta_zoo()
    real = nn.Linear(40, 30)
    model.lin = real
    w = real.weight.detach().clone()
    model.ln.weight = nn.Parameter(torch.full((16,), 3.0))  # mixed: weight real, bias meta
    ft.materialize_(model, seed=2)
    assert model.lin is real and torch.equal(real.weight, w)
    assert model.lin.weight is real.weight  # already in place: the very same Parameter
    assert (model.ln.weight == 3.0).all() and (model.ln.bias == 0).all()


def test_materialize_raises_for_a_buffer_nothing_computes_and_changes_nothing() -> None:
    with torch.device("meta"):
        model = nn.Module()
        model.lin = nn.Linear(4, 4)
        model.register_buffer("inv_freq", torch.arange(4.0))
    with pytest.raises(ValueError, match=r"inv_freq .*empty_init\(\)"):
        ft.materialize_(model)
    assert model.inv_freq.is_meta and model.lin.weight.is_meta  # atomic: as before the call


def test_materialize_accepts_empty_meta_buffers_and_names_what_ran() -> None:
    # An empty buffer has no values to lose (a cache allocated later); a non-empty one that
    # the module's own reset_parameters leaves unset is reported as such.
    class Cached(nn.Linear):
        def __init__(self) -> None:
            super().__init__(4, 4)
            self.register_buffer("cache", torch.empty(0), persistent=False)

    class Table(nn.Linear):
        def __init__(self) -> None:
            super().__init__(4, 4)
            self.register_buffer("table", torch.empty(3), persistent=False)

    with torch.device("meta"):
        cached, table = Cached(), Table()
    ft.materialize_(cached, seed=0)
    assert cached.cache.device.type == "cpu" and cached.cache.numel() == 0
    assert cached.weight.std() > 0
    with pytest.raises(ValueError, match=r"table .*Table\.reset_parameters leaves them unset"):
        ft.materialize_(table, seed=0)


def test_empty_init_keeps_a_parameter_registered_in_two_modules_tied() -> None:
    # One Parameter object assigned to two modules in __init__: under torch.device("meta") the
    # tie holds, so it must under empty_init (one meta replacement, one value after materialize_).
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 8, bias=False)
            self.b = nn.Linear(4, 8, bias=False)
            w = nn.Parameter(torch.empty(8, 4))
            self.a.weight = w
            self.b.weight = w

    with ft.empty_init():
        model = TwoHeads()
        other = TwoHeads()  # a second model in the same block gets its own Parameter
    assert model.a.weight is model.b.weight and model.a.weight.is_meta
    assert other.a.weight is other.b.weight and other.a.weight is not model.a.weight
    assert len(list(model.parameters())) == 1
    ft.materialize_(model, seed=4)
    assert model.a.weight is model.b.weight and model.a.weight.std() > 0


def test_materialize_keeps_real_buffers_under_empty_init() -> None:
    with ft.empty_init():
        model = nn.Module()
        model.lin = nn.Linear(4, 4)
        model.register_buffer("inv_freq", torch.arange(4.0))
    assert model.lin.weight.is_meta and not model.lin.bias.is_meta and not model.inv_freq.is_meta
    buffer = model.inv_freq
    ft.materialize_(model, seed=0)
    assert model.inv_freq is buffer and torch.equal(buffer, torch.arange(4.0))
    assert not model.lin.weight.is_meta and model.lin.weight.abs().max() <= 0.5
    assert nn.Linear(2, 2).weight.device.type == "cpu"  # empty_init is over


def test_materialize_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    ft.materialize_(meta_zoo(), seed=0, progress=True)
    assert "materialize_" in capsys.readouterr().err


def test_materialize_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model = meta_zoo()
    with pytest.raises(ImportError, match="progress=True needs the optional dependency tqdm"):
        ft.materialize_(model, progress=True)
    assert model.lin.weight.is_meta  # nothing was done


def test_materialize_argument_errors() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        ft.materialize_(torch.empty(3))
    with pytest.raises(TypeError, match="floating-point"):
        ft.materialize_(meta_zoo(), dtype=torch.int32)
    with pytest.raises(TypeError, match="seed must be an int"):
        ft.materialize_(meta_zoo(), seed=1.5)


def test_materialize_does_not_leave_torch_patched() -> None:
    ft.materialize_(meta_zoo(), seed=0)
    assert not ft.is_patched()
    assert nn.init.kaiming_uniform_ is _target.ORIGINALS["kaiming_uniform_"]


# ------------------------------------------------------------------------------ apply_


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 32))
        self.head = nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.Linear(32, 10))


def trained_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # pretend training moved everything away from its init
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net.head[1].running_mean.fill_(0.5)
        net.head[1].running_var.fill_(2.0)
        net.head[1].num_batches_tracked.fill_(9)
    return net


def snapshot(net: nn.Module) -> dict[str, Any]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def changed(before: dict[str, Any], net: nn.Module) -> set[str]:
    return {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}


def test_apply_validates_everything_before_writing() -> None:
    net = trained_net()
    before = snapshot(net)
    with pytest.raises(ValueError, match="Fan in and fan out can not be computed"):
        ft.apply_(net, {"head.*.weight": ("xavier_normal_", {}), "head.*.bias": "zeros_"})
    assert changed(before, net) == set()


def test_apply_reinitializes_only_what_the_rules_select() -> None:
    net = trained_net()
    before = snapshot(net)
    report = ft.apply_(
        net,
        {
            (nn.Linear, "weight"): ("xavier_normal_", {"gain": 0.5}),
            "head.*.bias": "zeros_",
            nn.BatchNorm1d: "default",
        },
        seed=0,
    )
    # first matching rule wins: trunk Linear weights are selected too
    expected = {
        "trunk.0.weight": "xavier_normal_(gain=0.5)",
        "trunk.2.weight": "xavier_normal_(gain=0.5)",
        "head.0.weight": "xavier_normal_(gain=0.5)",
        "head.2.weight": "xavier_normal_(gain=0.5)",
        "head.0.bias": "zeros_()",
        "head.1.bias": "zeros_()",
        "head.2.bias": "zeros_()",
        "head.1.weight": "default: BatchNorm1d.reset_parameters",
        "head.1.running_mean": "default: BatchNorm1d.reset_parameters",
        "head.1.running_var": "default: BatchNorm1d.reset_parameters",
        "head.1.num_batches_tracked": "default: BatchNorm1d.reset_parameters",
    }
    assert report == expected
    assert changed(before, net) == set(expected)
    bn = net.head[1]
    assert (bn.weight == 1).all() and (bn.running_mean == 0).all()
    assert (bn.bias == 0).all()  # by the zeros_ rule, which came first
    w = net.head[0].weight.detach().double().numpy().ravel()
    assert stats.kstest(w, "norm", args=(0, 0.5 * math.sqrt(2 / 64))).pvalue > P_MIN


def test_apply_default_by_name_touches_only_the_named_parameter() -> None:
    net = trained_net()
    before = snapshot(net)
    report = ft.apply_(net, {"trunk.2.weight": "default", "trunk.1.*": "default"}, seed=1)
    assert report == {
        "trunk.2.weight": "default: Linear.reset_parameters",
        "trunk.1.weight": "default: LayerNorm.reset_parameters",
        "trunk.1.bias": "default: LayerNorm.reset_parameters",
    }
    assert changed(before, net) == set(report)
    assert net.trunk[2].weight.abs().max() <= 1 / math.sqrt(32)
    assert (net.trunk[1].weight == 1).all() and (net.trunk[1].bias == 0).all()


def test_apply_callables_generators_and_determinism() -> None:
    calls: list[dict[str, Any]] = []

    def scheme(t: Any, std: float, generator: Any = None) -> Any:
        calls.append({"std": std, "generator": generator})
        return ft.normal_(t, 0.0, std, generator=generator)

    nets = [trained_net(), trained_net(), trained_net()]
    for net, seed in zip(nets, (5, 5, 6), strict=True):
        ft.apply_(net, {"head.2.weight": (scheme, {"std": 0.02})}, seed=seed)
    assert all(isinstance(c["generator"], torch.Generator) for c in calls)
    assert torch.equal(nets[0].head[2].weight, nets[1].head[2].weight)
    assert not torch.equal(nets[0].head[2].weight, nets[2].head[2].weight)
    assert nets[0].head[2].weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_apply_type_default_resets_whole_subtree() -> None:
    net = trained_net()
    before = snapshot(net)
    report = ft.apply_(net, {nn.Sequential: "default"}, seed=2)
    assert changed(before, net) == set(before)
    assert set(report) == set(before)
    assert (net.trunk[1].weight == 1).all()


def test_apply_tuple_of_types_key() -> None:
    net = trained_net()
    before = snapshot(net)
    report = ft.apply_(net, {(nn.LayerNorm, nn.BatchNorm1d): "default"}, seed=3)
    assert set(report) == {
        "trunk.1.weight",
        "trunk.1.bias",
        "head.1.weight",
        "head.1.bias",
        "head.1.running_mean",
        "head.1.running_var",
        "head.1.num_batches_tracked",
    }
    assert changed(before, net) == set(report)


@pytest.mark.parametrize(
    ("rules", "error", "message"),
    [
        ({"nothing.*": "zeros_"}, ValueError, "matched no parameter"),
        ({nn.Conv2d: "default"}, ValueError, "matched no parameter"),
        ({"*.bias": "uniform"}, ValueError, "unknown scheme 'uniform'"),
        ({"*.bias": "calculate_gain"}, ValueError, "unknown scheme"),
        ({"*.bias": 3}, TypeError, "a scheme must be"),
        ({"*.bias": ("zeros_",)}, TypeError, "scheme tuple"),
        ({"*.bias": ("default", {"x": 1})}, TypeError, "takes no keyword"),
        ({3: "zeros_"}, TypeError, "rule keys must be"),
        ({"*.weight": ("kaiming_uniform_", {"mode": "fan_avg"})}, ValueError, "Mode fan_avg"),
    ],
)
def test_apply_errors_leave_the_module_unchanged(rules: dict, error: type, message: str) -> None:
    net = trained_net()
    before = snapshot(net)
    with pytest.raises(error, match=message):
        ft.apply_(net, rules)
    assert changed(before, net) == set()


# ------------------------------------------------------------------------------ benchmark model


def test_bench_model_definition_and_checks() -> None:
    cfg = _bench_model.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4
    )
    model = _bench_model.build_model("materialize", cfg, torch.float32)
    assert sum(p.numel() for p in model.parameters()) == cfg.num_parameters
    assert _bench_model.check_model(model) is None
    with torch.no_grad():
        logits = model(torch.randint(0, 512, (2, 9)))
    assert logits.shape == (2, 9, 512) and torch.isfinite(logits).all()
    with torch.no_grad():
        model.layers[1].mlp.up_proj.weight[0, 0] = 1.0  # beyond 1/sqrt(64)
    assert "up_proj.weight exceeds" in _bench_model.check_model(model)
    assert _bench_model.FULL_CONFIG.num_parameters == pytest.approx(1.6e9, rel=0.05)


def test_run_model_bench_small() -> None:
    cfg = _bench_model.LlamaConfig(
        vocab_size=1024, hidden_size=64, intermediate_size=256, num_layers=4, num_heads=4
    )
    out = io.StringIO()
    rows = _bench_model.run_model_bench(
        ["float32", "bfloat16"], repeat=1, layers=1, config=cfg, out=out
    )
    assert [(r["dtype"], r["method"]) for r in rows] == [
        (d, m) for d in ("float32", "bfloat16") for m in _bench_model.METHODS
    ]
    assert all(r["problem"] is None and r["layers"] == 1 for r in rows)
    assert all(r["speedup"] > 0 for r in rows)
    assert "model construction" in out.getvalue() and "FAIL" not in out.getvalue()
    with pytest.raises(ValueError, match="unknown dtype"):
        _bench_model.run_model_bench(["int8"], repeat=1, config=cfg, out=out)


def test_empty_init_calls_through_and_restores_an_outer_register_parameter() -> None:
    # e.g. accelerate's init_empty_weights: empty_init runs inside it and must neither bypass
    # nor remove it
    original = nn.Module.register_parameter
    calls: list[str] = []

    def wrapper(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        calls.append(name)
        original(self, name, param)

    nn.Module.register_parameter = wrapper  # type: ignore[method-assign]
    try:
        with ft.empty_init():
            lin = nn.Linear(4, 3)
        assert nn.Module.register_parameter is wrapper
        assert "weight" in calls and "bias" in calls
        assert lin.weight.is_meta and not lin.bias.is_meta
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
    assert nn.Linear(2, 2).weight.device.type == "cpu"


class _ComplexNormal(nn.Module):
    """A parameter fastinit does not fill natively: torch's fallback draws its values."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(8, 4, dtype=torch.complex64))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.w)


def test_materialize_torch_fallback_uses_the_per_thread_generator() -> None:
    values = []
    for torch_seed in (1, 2):
        with torch.device("meta"):
            model = _ComplexNormal()
        torch.manual_seed(torch_seed)
        state = torch.get_rng_state()
        ft.materialize_(model, seed=0)
        assert torch.equal(state, torch.get_rng_state())  # torch's RNG is left as it was
        assert not model.w.is_meta and model.w.dtype == torch.complex64
        values.append(model.w.detach().clone())
    assert torch.equal(values[0], values[1])
