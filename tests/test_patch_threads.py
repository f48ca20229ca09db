"""patched()'s thread scope and routing, and materialize_'s atomicity and determinism under
concurrent threads (no dependence on torch's global RNG state or on other threads)."""

from __future__ import annotations

import functools
import math
import threading
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import fastinit  # noqa: E402
import fastinit.torch as ft  # noqa: E402
from fastinit.torch import _integrations, _target  # noqa: E402


def seeds_after(seed: int, count: int) -> list[int]:
    torch.manual_seed(seed)
    return [_target.draw_seed(None) for _ in range(count)]


def linear_routed(lin: nn.Linear, seed: int) -> bool:
    """Whether lin (built right after torch.manual_seed(seed)) was initialized by fastinit."""
    s_w = seeds_after(seed, 1)[0]
    w = fastinit.kaiming_uniform_(
        np.empty(tuple(lin.weight.shape), np.float32), math.sqrt(5), seed=s_w
    )
    return bool(torch.equal(lin.weight.detach(), torch.from_numpy(w)))


# ----------------------------------------------------------------------------- routing


def test_partials_closures_and_captured_dicts_are_routed() -> None:
    part = functools.partial(nn.init.trunc_normal_, std=0.02)
    table = {"normal_": nn.init.normal_}

    def closure(t: torch.Tensor) -> torch.Tensor:
        return part(t)

    a, b = torch.empty(300, 300), torch.empty(300, 300)
    with ft.patched():
        torch.manual_seed(5)
        closure(a)
        table["normal_"](b, std=3.0)
    s1, s2 = seeds_after(5, 2)
    ref_a = fastinit.trunc_normal_(np.empty((300, 300), np.float32), 0, 0.02, -2, 2, seed=s1)
    ref_b = fastinit.normal_(np.empty((300, 300), np.float32), 0, 3.0, seed=s2)
    assert torch.equal(a, torch.from_numpy(ref_a)) and torch.equal(b, torch.from_numpy(ref_b))


def test_tensor_methods_are_routed_with_their_arguments() -> None:
    t = torch.empty(1000)
    with ft.patched():
        torch.manual_seed(7)
        t.normal_(1.0, 2.0)
        u = torch.empty(1000).uniform_(-3, 5)
        f = torch.empty(10).fill_(2.5)
        z = torch.ones(10).zero_()
    s1, s2 = seeds_after(7, 2)
    assert torch.equal(
        t, torch.from_numpy(fastinit.normal_(np.empty(1000, np.float32), 1, 2, seed=s1))
    )
    assert torch.equal(
        u, torch.from_numpy(fastinit.uniform_(np.empty(1000, np.float32), -3, 5, seed=s2))
    )
    assert (f == 2.5).all() and (z == 0).all()


def test_tensor_methods_keep_torchs_errors_and_other_dtypes() -> None:
    leaf = torch.empty(4, requires_grad=True)
    with ft.patched():
        with pytest.raises(RuntimeError, match="leaf Variable"):
            leaf.normal_()
        with pytest.raises(RuntimeError):
            torch.empty(4).normal_(0, -1.0)
        ints = torch.empty(100, dtype=torch.int64).fill_(3)
        cplx = torch.empty(100, dtype=torch.complex64).normal_()
    assert (ints == 3).all() and cplx.abs().max() > 0


# ----------------------------------------------------------------------------- R7: threads


def test_patched_is_per_thread_and_other_threads_never_unpatch_it() -> None:
    a_inside, b_done, a_checked = threading.Event(), threading.Event(), threading.Event()
    c_done = threading.Event()
    results: dict[str, object] = {}

    def thread_a() -> None:
        with ft.patched():
            a_inside.set()
            b_done.wait(30)
            # torch's global RNG is shared: A seeds and draws only after C's seeded draw.
            c_done.wait(30)
            results["a_patched"] = ft.is_patched()
            torch.manual_seed(21)  # same seed as the check below
            results["a_lin"] = nn.Linear(64, 32)
        a_checked.set()

    def thread_b() -> None:
        a_inside.wait(30)
        with ft.patched():
            results["b_patched"] = ft.is_patched()
        results["b_after"] = ft.is_patched()
        b_done.set()

    def thread_c() -> None:  # never entered patched(): torch's behaviour while A is inside
        a_inside.wait(30)
        results["c_patched"] = ft.is_patched()
        torch.manual_seed(22)
        results["c_lin"] = nn.Linear(64, 32)
        c_done.set()

    threads = [threading.Thread(target=f) for f in (thread_a, thread_b, thread_c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert a_checked.is_set()
    assert results["a_patched"] and results["b_patched"]
    assert not results["b_after"] and not results["c_patched"]
    assert linear_routed(results["a_lin"], 21)  # type: ignore[arg-type]
    torch.manual_seed(22)
    assert torch.equal(results["c_lin"].weight, nn.Linear(64, 32).weight)  # type: ignore[attr-defined]
    assert not ft.is_patched() and _integrations.installed_functions() == []


def test_a_thread_started_inside_patched_is_not_patched() -> None:
    seen: list[bool] = []
    with ft.patched():
        t = threading.Thread(target=lambda: seen.append(ft.is_patched()))
        t.start()
        t.join()
    assert seen == [False]


def test_patch_is_process_wide_until_unpatch() -> None:
    seen: list[bool] = []
    ft.patch()
    try:
        t = threading.Thread(target=lambda: seen.append(ft.is_patched()))
        t.start()
        t.join()
    finally:
        ft.unpatch()
    assert seen == [True] and not ft.is_patched()


# ----------------------------------------------------------------------------- R4: atomic


class FailsOnce(nn.Module):
    failures = 1

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(16, 8))
        self.bias = nn.Parameter(torch.empty(16))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if FailsOnce.failures:
            FailsOnce.failures -= 1
            raise RuntimeError("reset failed")
        nn.init.zeros_(self.bias)


def meta_net() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(8, 8), FailsOnce(), nn.LayerNorm(8))


def test_materialize_is_atomic_and_a_retry_gives_the_clean_result() -> None:
    FailsOnce.failures = 1
    model = meta_net()
    before = {n: p for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="reset failed"):
        ft.materialize_(model, seed=3)
    after = dict(model.named_parameters())
    assert all(after[n] is p and p.is_meta for n, p in before.items())
    ft.materialize_(model, seed=3)
    clean = ft.materialize_(meta_net(), seed=3)
    for (n, p), (_, q) in zip(model.named_parameters(), clean.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_a_failed_reset_leaves_a_kept_tensor_as_it_was() -> None:
    # A tensor that was already real when materialize_ started is the caller's: a reset that
    # writes it and then raises must not leave it overwritten.
    FailsOnce.failures = 1
    with torch.device("meta"):
        model = FailsOnce()
    loaded = nn.Parameter(torch.full((16, 8), 0.5))
    model.weight = loaded
    with pytest.raises(RuntimeError, match="reset failed"):
        ft.materialize_(model, seed=3)
    assert model.weight is loaded and bool((loaded == 0.5).all())
    assert model.bias.is_meta


# ----------------------------------------------------------------------------- R6: determinism


class RandomInit(nn.Module):
    """Initializes through torch calls fastinit does not fill (randperm, an int tensor) too."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(64, 32))
        self.perm = nn.Parameter(torch.empty(50, dtype=torch.float64), requires_grad=False)
        self.register_buffer("ids", torch.empty(20, dtype=torch.int64))

    def reset_parameters(self) -> None:
        nn.init.sparse_(self.w, 0.5)
        with torch.no_grad():
            self.perm.copy_(torch.randperm(50).double())
            self.ids.random_(0, 1000)


def zoo() -> nn.Module:
    with torch.device("meta"):
        return nn.ModuleDict(
            {
                "lin": nn.Linear(64, 64),
                "mha": nn.MultiheadAttention(32, 4),
                "lstm": nn.LSTM(8, 16),
                "emb": nn.Embedding(100, 16),
                "rand": RandomInit(),
            }
        )


def test_materialize_under_threads_equals_serial_and_leaves_torch_rng_alone() -> None:
    serial = ft.materialize_(zoo(), seed=123)
    expected = [t.clone() for t in (*serial.parameters(), *serial.buffers())]
    models = [zoo() for _ in range(4)]
    torch.manual_seed(99)
    state = torch.get_rng_state()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(m: nn.Module) -> None:
        try:
            barrier.wait()
            for _ in range(2):
                ft.materialize_(m, seed=123) if any(p.is_meta for p in m.parameters()) else None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert torch.equal(torch.get_rng_state(), state)
    for m in models:
        got = [*m.parameters(), *m.buffers()]
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)


def test_routed_first_install_does_not_leave_fastinit_in_torch_for_other_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastinit.torch import _patch

    # as if nothing had been installed yet in this process: the first install happens while
    # routed() has torch.nn.init's names bound to fastinit's drop-ins
    monkeypatch.setattr(_integrations, "_clones", {})
    with _patch.routed(), ft.patched():
        pass
    inside, done = threading.Event(), threading.Event()
    got: dict[str, torch.Tensor] = {}

    def patched_thread() -> None:
        with ft.patched():
            inside.set()
            done.wait(30)

    def other_thread() -> None:
        inside.wait(30)
        torch.manual_seed(5)
        got["t"] = nn.init.normal_(torch.empty(64, 32))
        done.set()

    threads = [threading.Thread(target=f) for f in (patched_thread, other_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done.is_set() and "t" in got
    torch.manual_seed(5)
    expected = torch.empty(64, 32).normal_()
    assert torch.equal(got["t"], expected)
    assert _integrations.installed_functions() == []


def test_a_call_that_entered_a_trampoline_before_leaving_still_completes() -> None:
    """A thread may be inside a routed function's trampoline at the moment the last
    patched() leaves and restores every function's code: the trampoline must still reach the
    router (which then runs torch's own code), however late it looks it up. Simulated
    deterministically by keeping the trampoline code and calling it after leaving."""
    with ft.patched():
        trampoline = nn.init.constant_.__code__
        assert _integrations._ROUTE_NAME in trampoline.co_names
    assert nn.init.constant_.__code__ is not trampoline
    late = types.FunctionType(trampoline, nn.init.constant_.__globals__, "constant_")
    t = torch.empty(3)
    late(t, 2.5)
    assert torch.equal(t, torch.full((3,), 2.5))
    assert _integrations._ROUTE_NAME not in vars(nn.init)
