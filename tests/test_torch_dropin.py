"""fastinit.torch as a drop-in for torch.nn.init: signatures, errors, warnings, values, seeds,
tensor kinds, and patching."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
nn = torch.nn
TI = torch.nn.init

import fastinit  # noqa: E402
import fastinit.torch as ft  # noqa: E402
from fastinit.torch import _target  # noqa: E402

P_MIN = 1e-4
ALL = list(TI.__all__)
DEPRECATED = [n for n in ALL if not n.endswith("_") and n != "calculate_gain"]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
ORIGINAL = dict(_target.ORIGINALS)


def ks_p(t: Any, cdf: Any, *args: float) -> float:
    values = t.detach().double().numpy().ravel()
    return float(stats.kstest(values, cdf, args=args).pvalue)


def seeds_after(seed: int, count: int) -> list[int]:
    """The 64-bit seeds the next `count` drop-in calls draw after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return [_target.draw_seed(None) for _ in range(count)]


# ------------------------------------------------------------------------------ API parity


def test_import_fastinit_does_not_import_torch() -> None:
    code = "import sys, fastinit; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_torch_name_is_provided() -> None:
    missing = [n for n in ALL if not callable(getattr(ft, n, None))]
    assert missing == []
    assert set(ALL) <= set(ft.__all__)


@pytest.mark.parametrize("name", ALL)
def test_signature_parity(name: str) -> None:
    ours = inspect.signature(getattr(ft, name)).parameters
    theirs = inspect.signature(getattr(TI, name)).parameters
    assert list(ours) == list(theirs)
    for key, p in theirs.items():
        q = ours[key]
        assert q.kind == p.kind, key
        assert q.default == p.default, key
        assert type(q.default) is type(p.default), key


# ------------------------------------------------------------------------------ errors

ERROR_CASES: list[tuple[str, Callable[[Any], Any]]] = [
    ("xavier_uniform_ 1-D", lambda m: m.xavier_uniform_(torch.empty(5))),
    ("xavier_normal_ 0-D", lambda m: m.xavier_normal_(torch.empty(()))),
    ("xavier_uniform_ 0x0", lambda m: m.xavier_uniform_(torch.empty(0, 0))),
    ("kaiming_uniform_ 1-D", lambda m: m.kaiming_uniform_(torch.empty(5))),
    ("kaiming_normal_ 1-D", lambda m: m.kaiming_normal_(torch.empty(5))),
    ("kaiming bad mode", lambda m: m.kaiming_uniform_(torch.empty(3, 4), mode="fan_avg")),
    ("kaiming bad mode 1-D", lambda m: m.kaiming_normal_(torch.empty(4), mode="fan")),
    ("kaiming nonlinearity", lambda m: m.kaiming_uniform_(torch.empty(3, 4), nonlinearity="gelu")),
    ("kaiming bool slope", lambda m: m.kaiming_normal_(torch.empty(3, 4), a=True)),
    ("kaiming str slope", lambda m: m.kaiming_uniform_(torch.empty(3, 4), a="0.1")),
    ("calculate_gain", lambda m: m.calculate_gain("swish")),
    ("calculate_gain param", lambda m: m.calculate_gain("leaky_relu", [0.1])),
    ("eye_ 1-D", lambda m: m.eye_(torch.empty(4))),
    ("eye_ 3-D", lambda m: m.eye_(torch.empty(2, 2, 2))),
    ("dirac_ 2-D", lambda m: m.dirac_(torch.empty(4, 4))),
    ("dirac_ 6-D", lambda m: m.dirac_(torch.empty(2, 2, 1, 1, 1, 1))),
    ("dirac_ groups", lambda m: m.dirac_(torch.empty(5, 4, 3), groups=2)),
    ("dirac_ groups 0", lambda m: m.dirac_(torch.empty(4, 4, 3), groups=0)),
    ("sparse_ 1-D", lambda m: m.sparse_(torch.empty(4), 0.1)),
    ("sparse_ 3-D", lambda m: m.sparse_(torch.empty(4, 4, 4), 0.1)),
    ("orthogonal_ 1-D", lambda m: m.orthogonal_(torch.empty(4))),
    ("dirac_ meta groups", lambda m: m.dirac_(torch.empty(5, 4, 3, device="meta"), groups=2)),
    ("xavier meta 1-D", lambda m: m.xavier_uniform_(torch.empty(5, device="meta"))),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_parity(case: tuple[str, Callable[[Any], Any]]) -> None:
    _, call = case
    with pytest.raises(Exception) as theirs:
        call(TI)
    with pytest.raises(Exception) as ours:
        call(ft)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


def test_errors_leave_the_tensor_untouched() -> None:
    t = torch.full((5,), 3.0)
    for fn in (ft.xavier_uniform_, ft.kaiming_uniform_, ft.kaiming_normal_, ft.eye_, ft.sparse_):
        with pytest.raises(ValueError):
            fn(t, *([0.5] if fn is ft.sparse_ else []))
    assert (t == 3.0).all()


# ------------------------------------------------------------------------------ warnings


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
@pytest.mark.parametrize("shape", [(0, 4), (3, 0, 2), (0,)])
def test_zero_element_warning_parity(name: str, shape: tuple) -> None:
    t = torch.empty(shape)
    with pytest.warns(UserWarning) as theirs:
        assert getattr(TI, name)(t) is t
    with pytest.warns(UserWarning) as ours:
        assert getattr(ft, name)(t) is t
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert str(ours[0].message) == "Initializing zero-element tensors is a no-op"
    assert ours[0].filename == __file__  # stacklevel points at the caller, as torch's


def test_trunc_normal_far_mean_warning_parity() -> None:
    message = "mean is more than 2 std from \\[a, b\\] in nn.init.trunc_normal_"
    with pytest.warns(UserWarning, match=message):
        TI.trunc_normal_(torch.empty(100), mean=10.0, std=1.0, a=-2.0, b=2.0)
    with pytest.warns(UserWarning, match=message) as ours:
        t = ft.trunc_normal_(torch.empty(20_000, dtype=torch.float64), 10.0, 1.0, -2.0, 2.0)
    assert ours[0].filename == __file__
    assert ((t >= -2) & (t <= 2)).all()
    # ... but fastinit's inverse CDF samples that law exactly, 8 std from the mean.
    assert ks_p(t, stats.truncnorm(-12.0, -8.0, loc=10.0).cdf) > P_MIN


@pytest.mark.parametrize("name", DEPRECATED)
def test_deprecated_aliases_warn_like_torch(name: str) -> None:
    args: tuple = {
        "constant": (0.5,),
        "sparse": (0.5,),
    }.get(name, ())
    shape = (4, 4, 3) if name == "dirac" else (4, 4)
    with pytest.warns(FutureWarning) as theirs:
        getattr(TI, name)(torch.empty(shape), *args)
    with pytest.warns(FutureWarning) as ours:
        out = getattr(ft, name)(torch.empty(shape), *args)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert ours[0].filename == __file__
    assert out.shape == shape


# ------------------------------------------------------------------------------ values

CONV = (128, 64, 3, 3)  # 73728 elements; fan_in 576, fan_out 1152
LINEAR = (256, 300)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    return TI._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))


def test_uniform_normal_trunc_normal() -> None:
    torch.manual_seed(0)
    u = ft.uniform_(torch.empty(100_000, dtype=torch.float64), -0.3, 0.7)
    assert u.min() >= -0.3 and u.max() <= 0.7
    assert ks_p(u, "uniform", -0.3, 1.0) > P_MIN
    n = ft.normal_(torch.empty(100_000, dtype=torch.float64), 1.5, 0.2)
    assert ks_p(n, "norm", 1.5, 0.2) > P_MIN
    t = ft.trunc_normal_(torch.empty(100_000, dtype=torch.float64), 0.1, 0.5, -0.4, 1.2)
    assert t.min() >= -0.4 and t.max() <= 1.2
    law = stats.truncnorm((-0.4 - 0.1) / 0.5, (1.2 - 0.1) / 0.5, loc=0.1, scale=0.5)
    assert ks_p(t, law.cdf) > P_MIN


@pytest.mark.parametrize("shape", [LINEAR, CONV], ids=["linear", "conv2d"])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0)])
def test_xavier(shape: tuple, gain: float) -> None:
    fan_in, fan_out = fans(shape)
    torch.manual_seed(1)
    u = ft.xavier_uniform_(torch.empty(shape, dtype=torch.float64), gain)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    assert u.abs().max() <= bound
    assert ks_p(u, "uniform", -bound, 2 * bound) > P_MIN
    n = ft.xavier_normal_(torch.empty(shape, dtype=torch.float64), gain)
    assert ks_p(n, "norm", 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out))) > P_MIN


@pytest.mark.parametrize(
    ("shape", "a", "mode", "nonlinearity"),
    [
        (LINEAR, math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Linear
        (CONV, math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Conv2d
        ((64, 32, 5), math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Conv1d
        ((16, 8, 3, 3, 3), math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Conv3d
        (CONV, 0, "fan_out", "relu"),  # torchvision ResNet
        (CONV, 0.1, "fan_in", "leaky_relu"),
        (LINEAR, 0, "fan_in", "selu"),
    ],
    ids=["linear", "conv2d", "conv1d", "conv3d", "fan_out-relu", "leaky0.1", "selu"],
)
def test_kaiming(shape: tuple, a: float, mode: str, nonlinearity: str) -> None:
    fan_in, fan_out = fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = TI.calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    torch.manual_seed(2)
    u = ft.kaiming_uniform_(torch.empty(shape, dtype=torch.float64), a, mode, nonlinearity)
    assert u.abs().max() <= bound
    assert u.abs().max() > 0.99 * bound
    assert ks_p(u, "uniform", -bound, 2 * bound) > P_MIN
    n = ft.kaiming_normal_(torch.empty(shape, dtype=torch.float64), a, mode, nonlinearity)
    assert ks_p(n, "norm", 0.0, std) > P_MIN


def test_kaiming_sqrt5_bound_in_float32_is_torch_bound() -> None:
    # nn.Linear's rule: |w| <= 1/sqrt(fan_in), with the bound torch computes, bit for bit.
    w = ft.kaiming_uniform_(torch.empty(512, 1000), a=math.sqrt(5))
    bound = math.sqrt(3.0) * (TI.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(1000))
    assert w.abs().max().item() <= torch.tensor(bound, dtype=torch.float32).item()
    assert bound == pytest.approx(1 / math.sqrt(1000), rel=1e-15)


def test_constant_ones_zeros_eye_dirac_match_torch() -> None:
    for shape in [(3, 5), (6, 2)]:
        assert torch.equal(ft.eye_(torch.empty(shape)), TI.eye_(torch.empty(shape)))
    for shape, groups in [((4, 4, 3), 1), ((8, 2, 3, 3), 2), ((6, 3, 3, 2, 3), 3)]:
        assert torch.equal(
            ft.dirac_(torch.empty(shape), groups), TI.dirac_(torch.empty(shape), groups)
        )
    assert (ft.constant_(torch.empty(7, 3), 0.25) == 0.25).all()
    assert (ft.ones_(torch.empty(7, 3)) == 1).all()
    assert (ft.zeros_(torch.full((7, 3), 5.0)) == 0).all()


def test_sparse() -> None:
    torch.manual_seed(3)
    w = ft.sparse_(torch.empty(40, 5000, dtype=torch.float64), 0.3, std=0.02)
    assert ((w == 0).sum(dim=0) == math.ceil(0.3 * 40)).all()
    assert ks_p(w[w != 0], "norm", 0.0, 0.02) > P_MIN


def test_orthogonal() -> None:
    torch.manual_seed(4)
    for shape in [(20, 20), (10, 30), (30, 10), (8, 4, 3, 3)]:
        w = ft.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=2.0)
        flat = w.reshape(shape[0], -1)
        small = flat @ flat.T if shape[0] <= flat.shape[1] else flat.T @ flat
        assert torch.allclose(small, 4.0 * torch.eye(small.shape[0], dtype=torch.float64))


def native_orthogonal() -> Callable[..., Any]:
    fn = getattr(fastinit, "orthogonal_", None)
    if fn is None:
        try:
            from fastinit._orthogonal import orthogonal_ as fn
        except ImportError:
            pytest.skip("this fastinit has no native orthogonal_ (issue 5)")
    return fn


def test_orthogonal_routes_to_fastinit_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    native = native_orthogonal()
    monkeypatch.setattr(fastinit, "orthogonal_", native, raising=False)
    (seed,) = seeds_after(15, 1)
    torch.manual_seed(15)
    w = ft.orthogonal_(torch.empty(24, 40), gain=0.5)
    expected = native(np.empty((24, 40), np.float32), 0.5, seed=seed)
    assert torch.equal(w, torch.from_numpy(expected))
    b = ft.orthogonal_(torch.empty(24, 40, dtype=torch.bfloat16))  # torch's QR cannot do this
    assert b.dtype == torch.bfloat16 and b.float().norm(dim=1).sub(1).abs().max() < 0.02


def test_calculate_gain_parity() -> None:
    for name in ["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]:
        assert ft.calculate_gain(name) == TI.calculate_gain(name)
        assert type(ft.calculate_gain(name)) is type(TI.calculate_gain(name))
    assert ft.calculate_gain("leaky_relu", 0.3) == TI.calculate_gain("leaky_relu", 0.3)


# ------------------------------------------------------------------------------ seeds

SEEDED: dict[str, Callable[..., Any]] = {
    "uniform_": lambda t, g=None: ft.uniform_(t, -1, 1, generator=g),
    "normal_": lambda t, g=None: ft.normal_(t, 0, 1, generator=g),
    "trunc_normal_": lambda t, g=None: ft.trunc_normal_(t, generator=g),
    "xavier_uniform_": lambda t, g=None: ft.xavier_uniform_(t, generator=g),
    "xavier_normal_": lambda t, g=None: ft.xavier_normal_(t, generator=g),
    "kaiming_uniform_": lambda t, g=None: ft.kaiming_uniform_(t, generator=g),
    "kaiming_normal_": lambda t, g=None: ft.kaiming_normal_(t, generator=g),
    "sparse_": lambda t, g=None: ft.sparse_(t, 0.3, generator=g),
    "orthogonal_": lambda t, g=None: ft.orthogonal_(t, generator=g),
}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_manual_seed_reproduces_and_generator_matches_default(name: str) -> None:
    fill = SEEDED[name]
    torch.manual_seed(123)
    a1, a2 = fill(torch.empty(24, 16)), fill(torch.empty(24, 16))
    torch.manual_seed(123)
    b1, b2 = fill(torch.empty(24, 16)), fill(torch.empty(24, 16))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)
    g = torch.Generator().manual_seed(123)
    c1, c2 = fill(torch.empty(24, 16), g), fill(torch.empty(24, 16), g)
    assert torch.equal(a1, c1) and torch.equal(a2, c2)
    torch.manual_seed(124)
    assert not torch.equal(a1, fill(torch.empty(24, 16)))


def test_one_draw_per_call_and_the_documented_seed() -> None:
    (seed,) = seeds_after(5, 1)
    torch.manual_seed(5)
    t = ft.normal_(torch.empty(1000), 0.0, 1.0)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(t, torch.from_numpy(fastinit.normal_(np.empty(1000, np.float32), seed=seed)))


def test_generator_leaves_the_default_generator_alone() -> None:
    torch.manual_seed(6)
    before = torch.get_rng_state()
    ft.kaiming_uniform_(torch.empty(8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.get_rng_state())


# ------------------------------------------------------------------------------ tensor kinds


NUMPY_LEVEL: dict[str, Callable[..., Any]] = {
    "uniform_": lambda x, seed: fastinit.uniform_(x, -1, 1, seed=seed),
    "normal_": lambda x, seed: fastinit.normal_(x, seed=seed),
    "xavier_uniform_": lambda x, seed: fastinit.xavier_uniform_(x, seed=seed),
    "kaiming_normal_": lambda x, seed: fastinit.kaiming_normal_(x, seed=seed),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(NUMPY_LEVEL))
def test_all_float_dtypes(dtype: Any, name: str) -> None:
    g = torch.Generator()
    seed = _target.draw_seed(g.manual_seed(9))
    got = SEEDED[name](torch.empty(33, 17, dtype=dtype), g.manual_seed(9))
    assert got.dtype == dtype
    if dtype == torch.float64:
        # float64 is computed in float64 (two words per element): fastinit's own fill.
        expected = torch.from_numpy(NUMPY_LEVEL[name](np.empty((33, 17)), seed))
    else:
        # the 16-bit dtypes are the float32 values rounded to nearest even
        ref = SEEDED[name](torch.empty(33, 17), g.manual_seed(9))
        assert torch.equal(
            ref, torch.from_numpy(NUMPY_LEVEL[name](np.empty((33, 17), np.float32), seed))
        )
        expected = ref.to(dtype)
    assert torch.equal(got, expected)


def test_parameter_with_requires_grad() -> None:
    p = nn.Parameter(torch.zeros(16, 8))
    version = p._version
    out = ft.kaiming_uniform_(p, a=math.sqrt(5))
    assert out is p
    assert p.requires_grad and p.grad_fn is None and p.is_leaf
    assert (p != 0).all()
    assert p._version > version  # autograd sees the in-place write, as with torch's init
    assert p.abs().max() <= 1 / math.sqrt(8)


def test_channels_last_and_transposed_get_the_contiguous_values() -> None:
    g = torch.Generator()
    ref = ft.kaiming_uniform_(torch.empty(CONV), math.sqrt(5), generator=g.manual_seed(3))
    cl = torch.empty(CONV).to(memory_format=torch.channels_last)
    assert not cl.is_contiguous()
    ft.kaiming_uniform_(cl, math.sqrt(5), generator=g.manual_seed(3))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, ref)
    base = torch.empty(300, 256)
    ft.normal_(base.T, generator=g.manual_seed(4))
    assert torch.equal(base.T, ft.normal_(torch.empty(256, 300), generator=g.manual_seed(4)))


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith("_")])
def test_meta_tensors_are_a_no_op(name: str) -> None:
    args = {"constant_": (0.5,), "sparse_": (0.5,)}.get(name, ())
    shape = (4, 4, 3) if name == "dirac_" else (4, 4)
    t = torch.empty(shape, device="meta")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert getattr(ft, name)(t, *args) is t
    assert t.is_meta
    assert torch.equal(state, torch.get_rng_state())  # no seed drawn


def test_non_float_tensors_behave_as_in_torch() -> None:
    i = torch.empty(4, 4, dtype=torch.int64)
    assert (ft.zeros_(i) == 0).all() and (ft.constant_(i, 3) == 3).all()
    assert torch.equal(ft.eye_(i), torch.eye(4, dtype=torch.int64))
    with pytest.raises(NotImplementedError):  # torch's own error for an integer uniform_
        ft.uniform_(i)
    c = torch.empty(50_000, dtype=torch.complex64)
    ft.normal_(c)  # complex: torch's implementation
    assert c.abs().mean() > 0.5


def test_torch_function_subclasses_dispatch_like_torch() -> None:
    seen: list[Any] = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    t = torch.empty(4, 4).as_subclass(Logged)
    for fn in (ft.uniform_, ft.normal_, ft.kaiming_uniform_):
        fn(t)
    ft.constant_(t, 1.0)
    for fn in (ft.uniform_, ft.normal_, ft.kaiming_uniform_, ft.constant_):
        assert fn in seen
    assert (t == 1).all()


def test_fills_are_native_and_threads_do_not_matter() -> None:
    # A native fill equals fastinit's own fill of the drawn seed, whatever the thread count.
    before = fastinit.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            fastinit.set_num_threads(threads)
            torch.manual_seed(8)
            results.append(ft.xavier_normal_(torch.empty(512, 384)))
    finally:
        fastinit.set_num_threads(before)
    assert torch.equal(results[0], results[1])
    (seed,) = seeds_after(8, 1)
    std = math.sqrt(2.0 / (512 + 384))
    expected = fastinit.normal_(np.empty((512, 384), np.float32), 0.0, std, seed=seed)
    assert torch.equal(results[0], torch.from_numpy(expected))


# ------------------------------------------------------------------------------ patching


def bindings_of_torch_init() -> dict[tuple[str, str], int]:
    """Every (module, name) in sys.modules bound to one of torch.nn.init's functions."""
    ids = {id(f) for f in ORIGINAL.values()} | {id(getattr(ft, n)) for n in ORIGINAL}
    found = {}
    for modname, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or module is ft:
            continue
        for name, value in list(vars(module).items()):
            if id(value) in ids:
                found[(modname, name)] = id(value)
    return found


def test_patched_routes_without_replacing_bindings_and_restores_exactly() -> None:
    before = bindings_of_torch_init()
    codes = {name: getattr(TI, name).__code__ for name in ALL}
    assert ("torch.nn.modules.activation", "xavier_uniform_") in before
    assert not ft.is_patched()
    with ft.patched():
        assert ft.is_patched()
        assert bindings_of_torch_init() == before  # no binding is replaced
        assert TI.normal_.__code__ is not codes["normal_"]  # the code is routed
        t = torch.empty(1000)
        torch.manual_seed(3)
        TI.normal_(t)
        ref = fastinit.normal_(np.empty(1000, np.float32), seed=seeds_after(3, 1)[0])
        assert torch.equal(t, torch.from_numpy(ref))
    assert not ft.is_patched()
    for name in ALL:
        assert getattr(TI, name) is ORIGINAL[name], name
        assert getattr(TI, name).__code__ is codes[name], name
    assert bindings_of_torch_init() == before


def test_patched_restores_on_error_and_nests() -> None:
    code = TI.normal_.__code__
    with pytest.raises(RuntimeError, match="boom"), ft.patched():
        raise RuntimeError("boom")
    assert TI.normal_.__code__ is code and not ft.is_patched()
    ft.patch()
    try:
        ft.patch()  # idempotent
        with ft.patched():
            assert ft.is_patched()
        assert ft.is_patched()  # the outer patch() is still in force
        assert TI.normal_.__code__ is not code
    finally:
        ft.unpatch()
    ft.unpatch()  # idempotent
    assert TI.normal_.__code__ is code and not ft.is_patched()


def test_torch_modules_imported_while_patched_keep_torchs_functions() -> None:
    name = "torch._fastinit_test_late_module"
    with ft.patched():
        late = types.ModuleType(name)
        late.xavier_uniform_ = TI.xavier_uniform_  # as `from torch.nn.init import ...` would
        sys.modules[name] = late
    try:
        assert late.xavier_uniform_ is ORIGINAL["xavier_uniform_"]
        assert late.xavier_uniform_.__code__ is ORIGINAL["xavier_uniform_"].__code__
    finally:
        del sys.modules[name]


def test_modules_initialize_through_fastinit_when_patched() -> None:
    with ft.patched():
        torch.manual_seed(10)
        lin = nn.Linear(300, 200)
        torch.manual_seed(11)
        mha = nn.MultiheadAttention(64, 4)
    s_w, s_b = seeds_after(10, 2)
    bound = 1 / math.sqrt(300)
    w = fastinit.kaiming_uniform_(np.empty((200, 300), np.float32), math.sqrt(5), seed=s_w)
    b = fastinit.uniform_(np.empty(200, np.float32), -bound, bound, seed=s_b)
    assert torch.equal(lin.weight.detach(), torch.from_numpy(w))
    assert torch.equal(lin.bias.detach(), torch.from_numpy(b))
    # MultiheadAttention: out_proj's reset (2 draws), then xavier_uniform_ of in_proj_weight
    # through torch.nn.modules.activation's own binding.
    seed = seeds_after(11, 3)[2]
    ref = fastinit.xavier_uniform_(np.empty((192, 64), np.float32), seed=seed)
    assert torch.equal(mha.in_proj_weight.detach(), torch.from_numpy(ref))
    assert (mha.in_proj_bias == 0).all() and (mha.out_proj.bias == 0).all()


def test_unpatched_modules_use_torch_again() -> None:
    with ft.patched():
        pass
    torch.manual_seed(12)
    a = nn.Linear(50, 40)
    torch.manual_seed(12)
    b = nn.Linear(50, 40)
    with ft.patched():
        torch.manual_seed(12)
        c = nn.Linear(50, 40)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)  # different generator, different values


def test_patch_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ft.patched():
            nn.Conv2d(3, 8, 3)


# --------------------------------------------------------------------------------------------
# where torch decides: arguments and tensors the kernels must not answer for
# --------------------------------------------------------------------------------------------


def _outcome(f: Callable[..., Any], *args: Any) -> tuple[str, str]:
    try:
        f(*args)
    except Exception as e:  # the outcome is compared, whatever it is
        return type(e).__name__, str(e)
    return "ok", ""


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("constant_ f16 overflow", lambda m, t: m.constant_(t(torch.float16), 1e6)),
        ("constant_ f32 overflow", lambda m, t: m.constant_(t(torch.float32), 1e300)),
        ("constant_ int beyond int64", lambda m, t: m.constant_(t(torch.float32), 2**70)),
        ("constant_ 1-d tensor value", lambda m, t: m.constant_(t(torch.float32), torch.ones(1))),
        ("uniform_ f16 bounds", lambda m, t: m.uniform_(t(torch.float16), -1e6, 1e6)),
        ("uniform_ reversed", lambda m, t: m.uniform_(t(torch.float32), 2.0, 1.0)),
        ("normal_ negative std", lambda m, t: m.normal_(t(torch.float32), 0.0, -1.0)),
    ],
)
def test_arguments_torch_rejects_get_torchs_error_and_write_nothing(
    name: str, call: Callable[..., Any]
) -> None:
    made: list[Any] = []

    def tensor(dtype: torch.dtype) -> Any:
        made.append(torch.full((5,), 7.0, dtype=dtype))
        return made[-1]

    torch.manual_seed(11)
    expected = _outcome(lambda: call(TI, tensor))
    after_torch = torch.rand(3)
    torch.manual_seed(11)
    got = _outcome(lambda: call(ft, tensor))
    after_fastinit = torch.rand(3)
    assert expected[0] != "ok", name  # torch rejects each of these
    assert got == expected
    assert (made[-1] == 7.0).all()  # nothing written
    # the rejected call moved torch's generator as torch's own call did (not by a seed draw)
    assert torch.equal(after_fastinit, after_torch)


def test_constant_special_values_match_torch() -> None:
    for val in (math.nan, math.inf, -math.inf, torch.tensor(3.0), 65504.0):
        a, b = torch.empty(4, dtype=torch.float16), torch.empty(4, dtype=torch.float16)
        TI.constant_(a, val)
        ft.constant_(b, val)
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all())


def test_overlapping_tensors_take_torchs_path() -> None:
    # Elements that share memory (an expanded tensor): fastinit's kernels refuse them, torch's
    # fill_ accepts them; the drop-in and a patched tensor method must answer as torch does.
    t = torch.zeros(1).expand(4)
    assert ft.zeros_(t) is t and (t == 0).all()
    ft.ones_(t)
    assert (t == 1).all()
    ft.constant_(t, 2.5)
    assert (t == 2.5).all()
    with ft.patched():
        torch.full((1,), 3.0).expand(4).zero_()
        u = torch.zeros(1).expand(4)
        u.fill_(4.0)
        assert (u == 4.0).all()


def test_inference_tensors_outside_inference_mode_get_torchs_error() -> None:
    # torch raises for an in-place update of an inference tensor outside the mode (after
    # writing it: the error comes from the version counter); the drop-in must raise too.
    for name, args in (
        ("normal_", ()),
        ("uniform_", ()),
        ("constant_", (5.0,)),
        ("zeros_", ()),
        ("xavier_uniform_", ()),
    ):
        outcomes = []
        for module in (TI, ft):
            with torch.inference_mode():
                t = torch.full((3, 3), 7.0)
            outcomes.append(_outcome(getattr(module, name), t, *args))
        assert outcomes[0][0] == "RuntimeError" and outcomes[1] == outcomes[0], name
    with torch.inference_mode():  # inside the mode it is an ordinary target
        t = torch.full((3, 3), 7.0)
        ft.normal_(t)
    assert t.std() > 0.5


@pytest.mark.parametrize("name", ["uniform_", "normal_", "trunc_normal_", "kaiming_normal_"])
def test_a_generator_that_is_not_one_is_a_type_error(name: str) -> None:
    t = torch.full((3, 3), 7.0)
    with pytest.raises(TypeError, match="generator"):
        getattr(TI, name)(t, generator=5)
    with pytest.raises(TypeError, match="generator"):
        getattr(ft, name)(t, generator=5)
    assert (t == 7.0).all()


# Calls fastinit's kernels refuse after torch's checks passed: torch answers them. The seed is
# drawn only once the kernels' checks have passed, so torch's call finds the generator where
# torch.nn.init's own call would: the same values (or error) and the same state after.
REFUSED_BY_THE_KERNELS = {
    "normal_ infinite mean": lambda m, g: m.normal_(torch.zeros(6), math.inf, 1.0, generator=g),
    "trunc_normal_ interval without float32 mass": lambda m, g: m.trunc_normal_(
        torch.zeros(6), 0.0, 1.0, 100.0, 101.0, generator=g
    ),
    "trunc_normal_ std below float32": lambda m, g: m.trunc_normal_(
        torch.zeros(6), 0.0, 1e-30, 1.0, 2.0, generator=g
    ),
    "uniform_ expanded": lambda m, g: m.uniform_(torch.zeros(1).expand(4), generator=g),
    "kaiming_normal_ expanded": lambda m, g: m.kaiming_normal_(
        torch.zeros(1, 4).expand(3, 4), generator=g
    ),
    "orthogonal_ expanded": lambda m, g: m.orthogonal_(torch.zeros(1, 4).expand(3, 4), generator=g),
    "sparse_ expanded": lambda m, g: m.sparse_(torch.zeros(1, 4).expand(3, 4), 0.5, generator=g),
}


@pytest.mark.parametrize("explicit", [False, True], ids=["default generator", "generator"])
@pytest.mark.parametrize("name", sorted(REFUSED_BY_THE_KERNELS))
def test_refused_calls_get_torchs_values_and_generator_state(name: str, explicit: bool) -> None:
    call = REFUSED_BY_THE_KERNELS[name]
    results = []
    for module in (TI, ft):
        torch.manual_seed(21)
        g = torch.Generator().manual_seed(22) if explicit else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trunc_normal_'s far-mean warning, in both
            try:
                outcome: Any = ("ok", call(module, g).clone())
            except Exception as e:  # the outcome is compared, whatever it is
                outcome = (type(e).__name__, str(e))
        results.append((outcome, torch.rand(4, generator=g)))
    (want, want_after), (got, got_after) = results
    assert got[0] == want[0]
    assert torch.equal(got[1], want[1]) if want[0] == "ok" else got[1] == want[1]
    assert torch.equal(got_after, want_after)


def test_empty_tensors_still_take_one_draw() -> None:
    # A native call that writes nothing still draws its seed, as every native call does, so
    # the seeds of the tensors after it do not depend on whether it was empty.
    fills = {
        "uniform_": ft.uniform_,
        "normal_": ft.normal_,
        "trunc_normal_": ft.trunc_normal_,
        "sparse_": lambda t: ft.sparse_(t, 0.5),  # an empty shape never reaches the kernels
    }
    for name, fill in fills.items():
        torch.manual_seed(5)
        fill(torch.empty(0, 3))
        state = torch.get_rng_state()
        torch.manual_seed(5)
        torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)
        assert torch.equal(state, torch.get_rng_state()), name
