"""Fuzz every public entry point of fastinit that writes a buffer.

Each case draws a buffer (dtype, shape, a strided/transposed/reversed view inside a larger
allocation guarded by sentinels, sometimes read-only, overlapping or of a foreign dtype), a
shard (sometimes outside its global shape, or beyond 2^63), a seed and the entry point's
arguments (sometimes NaN, infinite, huge, or of the wrong type). The outcome must be one of:

- a clean exception of a documented type (TypeError, ValueError, BufferError), with the whole
  allocation untouched; the same call on a contiguous copy of the buffer raises the same type
  unless the failure was about the layout itself (read-only, overlapping);
- success, with exactly the bits that the same call writes into a contiguous copy, and nothing
  written outside the view.

Examples per entry point: ``FASTINIT_FUZZ_EXAMPLES`` (default 60, the CI setting);
``tools/sanitize.sh`` runs it under ASan/UBSan with a larger count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastinit

EXAMPLES = int(os.environ.get("FASTINIT_FUZZ_EXAMPLES", "60"))
settings.register_profile(
    "fastinit-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FASTINIT_FUZZ_RANDOM" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
FUZZ = settings.get_profile("fastinit-fuzz")

CLEAN = (TypeError, ValueError, BufferError)
FLOATS = ["float32", "float64", "float16", "bfloat16"]
FOREIGN = ["int32", "complex64", "uint16", "bool"]
SENTINEL_BITS = 0x5A


def np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


# ----------------------------------------------------------------------------- buffers


class Case:
    """A view into a sentinel-filled allocation, and what is legal about it."""

    def __init__(self, base: np.ndarray, view: np.ndarray, layout_ok: bool) -> None:
        self.base = base
        self.view = view
        self.layout_ok = layout_ok  # writable, distinct elements, supported dtype

    def base_bytes(self) -> bytes:
        return self.base.tobytes()


@st.composite
def buffers(draw: st.DrawFn, min_ndim: int = 1, max_ndim: int = 4) -> Case:
    ndim = draw(st.integers(min_ndim, max_ndim), label="ndim")
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim), label="shape"))
    foreign = draw(st.integers(0, 19), label="foreign") == 0
    dname = draw(st.sampled_from(FOREIGN if foreign else FLOATS), label="dtype")
    dt = np_dtype(dname)
    steps = [draw(st.sampled_from([1, 1, 2, 3, -1, -2]), label="step") for _ in shape]
    pads = [draw(st.integers(0, 2), label="pad") for _ in shape]
    full = tuple(abs(s) * max(n, 1) + p for s, n, p in zip(steps, shape, pads, strict=True))
    base = np.frombuffer(bytearray([SENTINEL_BITS]) * (math.prod(full) * dt.itemsize), dt)
    base = base.reshape(full)
    index = []
    for s, n, p in zip(steps, shape, pads, strict=True):
        start = draw(st.integers(0, p), label="start")
        if s > 0:
            index.append(slice(start, start + s * n, s))
        else:
            first = start + abs(s) * max(n, 1) - 1
            stop = first + s * n
            index.append(slice(first, None if stop < 0 else stop, s))
    view = base[tuple(index)] if index else base[...]
    assert view.shape == shape, (view.shape, shape)
    if draw(st.booleans(), label="permute"):
        perm = draw(st.permutations(range(ndim)), label="perm")
        view = view.transpose(perm)
    layout_ok = not foreign
    kind = draw(st.sampled_from(["plain"] * 8 + ["readonly", "overlap"]), label="kind")
    if kind == "readonly":
        view = view.view()
        view.flags.writeable = False
        layout_ok = False
    elif kind == "overlap" and view.ndim >= 1 and view.shape[0] > 1:
        view = np.lib.stride_tricks.as_strided(
            view, view.shape, (0, *view.strides[1:]), writeable=True
        )
        layout_ok = False
    return Case(base, view, layout_ok)


@st.composite
def shards(draw: st.DrawFn, shape: tuple[int, ...]) -> dict[str, Any]:
    """Shard keywords for a buffer of ``shape``: none, valid, or broken in one of many ways."""
    kind = draw(st.sampled_from(["none", "valid", "valid", "huge", "bad"]), label="shard")
    if kind == "none":
        return {}
    extra = [draw(st.integers(0, 3), label="extra") for _ in shape]
    gs = [n + e for n, e in zip(shape, extra, strict=True)]
    go = [draw(st.integers(0, e), label="off") for e in extra]
    if kind == "huge" and shape:
        d = draw(st.integers(0, len(shape) - 1), label="dim")
        rest = math.prod(g for i, g in enumerate(gs) if i != d) or 1
        gs[d] = max((2**63 - 1) // rest - draw(st.integers(0, 2), label="slack"), shape[d])
        go[d] = gs[d] - shape[d] - draw(st.integers(0, min(2, gs[d] - shape[d])), label="back")
    elif kind == "bad":
        how = draw(st.sampled_from(["offset", "negative", "rank", "2**63", "2**64", "type"]))
        if how == "offset" and shape:
            go[0] = gs[0] - shape[0] + 1
        elif how == "negative" and shape:
            go[0] = -1
        elif how == "rank":
            gs = [*gs, 1]
        elif how == "2**63" and shape:
            gs[0] = 2**63
        elif how == "2**64" and shape:
            go[0] = 2**64
        elif how == "type":
            return {"global_shape": [float(g) for g in gs], "global_offset": go}
    out: dict[str, Any] = {"global_shape": tuple(gs)}
    if draw(st.booleans(), label="with_offset"):
        out["global_offset"] = tuple(go)
    return out


# ----------------------------------------------------------------------------- arguments

reals = st.one_of(
    st.floats(-4, 4),
    st.floats(-4, 4),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e38, 3.5e38, 1e39, 1e308]),
    st.integers(-3, 3),
)
odd = st.sampled_from(["1.0", None, [1.0], b"1", 1 + 0j])
params = st.one_of(reals, reals, reals, reals, reals, reals, reals, reals, reals, odd)
seeds = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    st.builds(fastinit.Generator, st.integers(0, 2**64 - 1)),
    st.sampled_from([2**64, -(2**63) - 1, 1.5, "3", None]),
)


def _seed_copy(seed: Any) -> Any:
    """The same seed for the reference call: a Generator is cloned at its current state."""
    if isinstance(seed, fastinit.Generator):
        g = fastinit.Generator(seed.seed)
        g.set_state(seed.get_state())
        return g
    return seed


Entry = tuple[Callable[..., Any], Callable[[st.DrawFn], dict[str, Any]], int, bool, bool]


def _kw(**strats: st.SearchStrategy[Any]) -> Callable[[st.DrawFn], dict[str, Any]]:
    def draw_kwargs(draw: st.DrawFn) -> dict[str, Any]:
        return {k: draw(s, label=k) for k, s in strats.items()}

    return draw_kwargs


LAYOUTS = st.sampled_from([None, None, "torch", "keras", "jax", "bogus"])
MODES = st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_geo_avg", "bogus"])
AXES = st.one_of(st.none(), st.integers(-5, 5))
# name -> (function, keyword strategy, min ndim, takes seed, takes shard keywords)
ENTRIES: dict[str, Entry] = {
    "uniform_": (fastinit.uniform_, _kw(low=params, high=params), 0, True, True),
    "normal_": (fastinit.normal_, _kw(mean=params, std=params), 0, True, True),
    "trunc_normal_": (
        fastinit.trunc_normal_,
        _kw(mean=params, std=params, a=params, b=params),
        0,
        True,
        True,
    ),
    "truncated_normal_": (
        fastinit.truncated_normal_,
        _kw(stddev=params, mean=params, lower=params, upper=params),
        0,
        True,
        True,
    ),
    "constant_": (fastinit.constant_, _kw(value=params), 0, False, True),
    "zeros_": (fastinit.zeros_, _kw(), 0, False, True),
    "ones_": (fastinit.ones_, _kw(), 0, False, True),
    "xavier_uniform_": (
        fastinit.xavier_uniform_,
        _kw(gain=params, layout=LAYOUTS),
        0,
        True,
        True,
    ),
    "xavier_normal_": (fastinit.xavier_normal_, _kw(gain=params, layout=LAYOUTS), 0, True, True),
    "kaiming_uniform_": (
        fastinit.kaiming_uniform_,
        _kw(
            a=params,
            mode=MODES,
            nonlinearity=st.sampled_from(["leaky_relu", "relu", "tanh", "selu", "bogus"]),
        ),
        0,
        True,
        True,
    ),
    "kaiming_normal_": (
        fastinit.kaiming_normal_,
        _kw(a=params, mode=MODES, nonlinearity=st.sampled_from(["leaky_relu", "linear", "x"])),
        0,
        True,
        True,
    ),
    "lecun_uniform_": (fastinit.lecun_uniform_, _kw(layout=LAYOUTS), 0, True, True),
    "lecun_normal_": (fastinit.lecun_normal_, _kw(layout=LAYOUTS), 0, True, True),
    "variance_scaling_": (
        fastinit.variance_scaling_,
        _kw(
            scale=params,
            mode=MODES,
            distribution=st.sampled_from(
                ["truncated_normal", "normal", "untruncated_normal", "uniform", "bogus"]
            ),
            layout=LAYOUTS,
        ),
        0,
        True,
        True,
    ),
    "eye_": (fastinit.eye_, _kw(), 0, False, True),
    "dirac_": (fastinit.dirac_, _kw(groups=st.one_of(st.integers(-1, 4), odd)), 0, False, True),
    "sparse_": (fastinit.sparse_, _kw(sparsity=params, std=params), 0, True, True),
    "orthogonal_": (
        fastinit.orthogonal_,
        _kw(gain=params, column_axis=AXES),
        0,
        True,
        False,
    ),
    "delta_orthogonal_": (
        fastinit.delta_orthogonal_,
        _kw(gain=params, column_axis=st.sampled_from([-1, -2, 0, 1, 2, 5])),
        0,
        True,
        False,
    ),
}


def test_every_public_entry_point_is_fuzzed() -> None:
    writers = {
        n
        for n in fastinit.__all__
        if n.endswith("_") and not n.startswith("_") and callable(getattr(fastinit, n))
    }
    assert writers == set(ENTRIES), writers ^ set(ENTRIES)


def _call(fn: Callable[..., Any], x: Any, kwargs: dict[str, Any]) -> BaseException | None:
    try:
        out = fn(x, **kwargs)
    except CLEAN as exc:
        return exc
    assert out is x, "an in-place init returns the buffer passed in"
    return None


@pytest.mark.parametrize("name", list(ENTRIES))
@FUZZ
@given(data=st.data())
def test_fuzz(name: str, data: st.DataObject) -> None:
    fn, draw_kwargs, min_ndim, takes_seed, takes_shard = ENTRIES[name]
    case = data.draw(buffers(min_ndim=min_ndim, max_ndim=5), label="buffer")
    kwargs = draw_kwargs(data.draw)
    if takes_shard:
        kwargs.update(data.draw(shards(case.view.shape), label="shard"))
    if takes_seed:
        kwargs["seed"] = data.draw(seeds, label="seed")
    ref_kwargs = {**kwargs, "seed": _seed_copy(kwargs["seed"])} if takes_seed else dict(kwargs)
    before = case.base_bytes()
    default_state = fastinit.default_generator.get_state()
    state = (
        kwargs["seed"].get_state() if isinstance(kwargs.get("seed"), fastinit.Generator) else None
    )

    err = _call(fn, case.view, kwargs)

    if err is not None:
        assert case.base_bytes() == before, f"{type(err).__name__}: {err} -- but it wrote"
        if state is not None:
            assert kwargs["seed"].get_state() == state, "a failed call took a stream"
    if not case.layout_ok:
        foreign = case.view.dtype.kind != "f" and case.view.dtype.name != "bfloat16"
        assert err is not None or not foreign or case.view.size == 0 or name == "dirac_", (
            "a foreign dtype was accepted"
        )
        return
    # The reference: the same call on a contiguous copy of the (sentinel) contents.
    ref = np.array(case.view, order="C", copy=True)
    fastinit.default_generator.set_state(default_state)  # seed=None: the same stream again
    ref_err = _call(fn, ref, ref_kwargs)
    if err is not None or ref_err is not None:
        assert type(err) is type(ref_err), (err, ref_err)
        return
    got = np.array(case.view, order="C").tobytes()
    assert got == ref.tobytes(), "strided result != contiguous result"
    # Nothing outside the view was written.
    outside = np.ones(case.base.size, bool)
    outside[_view_positions(case.base, case.view)] = False
    old = np.frombuffer(before, case.base.dtype)
    assert old[outside].tobytes() == case.base.reshape(-1)[outside].tobytes(), "wrote outside"


def _view_positions(base: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Flat indices in ``base`` of the elements of ``view`` (a strided view of it)."""
    if view.size == 0:
        return np.zeros(0, np.intp)
    start = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // (
        base.itemsize
    )
    idx = np.full(view.shape, start, np.intp)
    for d, (n, s) in enumerate(zip(view.shape, view.strides, strict=True)):
        shape = [1] * view.ndim
        shape[d] = n
        idx = idx + (np.arange(n) * (s // base.itemsize)).reshape(shape)
    return idx.reshape(-1)
