"""Bad input raises a clear exception and leaves the buffer untouched."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import fastinit

SENTINEL = 7.0


def sentinel(shape=(16, 8), dtype=np.float32) -> np.ndarray:
    return np.full(shape, SENTINEL, dtype)


def untouched(x: np.ndarray) -> bool:
    return bool((x.astype(np.float64) == SENTINEL).all())


BAD_PARAMS = [
    (fastinit.uniform_, dict(low=1.0, high=0.0), ValueError),
    (fastinit.uniform_, dict(low=math.nan), ValueError),
    (fastinit.uniform_, dict(high=math.inf), ValueError),
    (fastinit.uniform_, dict(low="a"), TypeError),
    (fastinit.normal_, dict(std=-1.0), ValueError),
    (fastinit.normal_, dict(std=math.nan), ValueError),
    (fastinit.normal_, dict(mean=math.inf), ValueError),
    (fastinit.trunc_normal_, dict(a=1.0, b=1.0), ValueError),
    (fastinit.trunc_normal_, dict(a=2.0, b=-2.0), ValueError),
    (fastinit.trunc_normal_, dict(std=-0.1), ValueError),
    (fastinit.trunc_normal_, dict(b=math.nan), ValueError),
    (fastinit.trunc_normal_, dict(std=0.0, mean=5.0), ValueError),
    # an interval 40 sigma out has no float32-computable mass
    (fastinit.trunc_normal_, dict(a=40.0, b=41.0), ValueError),
    # a float32 fill computes in float32: a mean or std beyond its range became inf / NaN
    (fastinit.normal_, dict(mean=1e39), ValueError),
    (fastinit.normal_, dict(mean=1.7e308, std=1e308), ValueError),
    (fastinit.trunc_normal_, dict(std=1e39, a=-1e38, b=1e38), ValueError),
    (fastinit.trunc_normal_, dict(mean=-1e39, std=1e39, a=-1e38, b=1e38), ValueError),
    (fastinit.normal_, dict(seed=-(2**63) - 1), ValueError),
    (fastinit.normal_, dict(seed=1.5), TypeError),
    (fastinit.normal_, dict(seed=True), TypeError),
]


@pytest.mark.parametrize("fn,kw,exc", BAD_PARAMS)
def test_bad_parameters(fn, kw, exc) -> None:
    x = sentinel()
    with pytest.raises(exc):
        fn(x, **kw)
    assert untouched(x)


def test_no_representable_value_in_range() -> None:
    import ml_dtypes

    x = sentinel(dtype=ml_dtypes.bfloat16)
    with pytest.raises(ValueError, match="bfloat16"):
        fastinit.uniform_(x, 1.001, 1.002, seed=0)
    assert untouched(x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.complex64, np.bool_])
def test_unsupported_dtype_is_a_type_error_naming_it(dtype) -> None:
    x = np.zeros(8, dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        fastinit.normal_(x, seed=0)
    assert not x.any()


def test_read_only_array() -> None:
    x = sentinel()
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastinit.uniform_(x, seed=0)
    assert untouched(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.lib.stride_tricks.as_strided(np.full(8, SENTINEL, np.float32), (4, 8), (0, 4)),
        lambda: np.lib.stride_tricks.as_strided(np.full(16, SENTINEL, np.float32), (4, 4), (4, 4)),
    ],
    ids=["stride-0", "self-overlap"],
)
def test_overlapping_strides(make) -> None:
    x = make()
    with pytest.raises(ValueError, match="overlap"):
        fastinit.normal_(x, seed=0)
    assert untouched(x)


def test_byte_swapped_array() -> None:
    x = sentinel(dtype=np.dtype(">f4"))
    with pytest.raises(ValueError, match="byte order"):
        fastinit.normal_(x, seed=0)
    assert untouched(x)


@pytest.mark.parametrize(
    "gs,go",
    [
        ((16, 7), (0, 0)),  # local does not fit
        ((16, 8), (1, 0)),  # offset pushes it out
        ((16, 8, 1), (0, 0, 0)),  # wrong rank
        ((16, 8), (0,)),
        ((16, 8), (-1, 0)),
        (None, (0, 0)),  # offset without shape
    ],
)
def test_shard_outside_global_shape(gs, go) -> None:
    x = sentinel()
    with pytest.raises(ValueError):
        fastinit.normal_(x, seed=0, global_shape=gs, global_offset=go)
    assert untouched(x)


def test_not_an_array() -> None:
    with pytest.raises(TypeError, match="__dlpack__"):
        fastinit.normal_([1.0, 2.0], seed=0)


def test_zero_size_is_a_no_op_but_still_validated() -> None:
    x = np.empty((0, 5), np.float32)
    assert fastinit.normal_(x, seed=0) is x
    with pytest.raises(ValueError):
        fastinit.normal_(x, std=-1.0, seed=0)


def test_returns_the_same_object() -> None:
    x = np.empty(5, np.float32)
    assert fastinit.uniform_(x) is x
    assert fastinit.normal_(x) is x
    assert fastinit.trunc_normal_(x) is x
    assert fastinit.constant_(x, 3.0) is x and (x == 3.0).all()
    assert fastinit.zeros_(x) is x and (x == 0).all()
    assert fastinit.ones_(x) is x and (x == 1).all()


def test_threads_setting() -> None:
    before = fastinit.get_num_threads()
    try:
        fastinit.set_num_threads(3)
        assert fastinit.get_num_threads() == 3
        with pytest.raises(ValueError):
            fastinit.set_num_threads(0)
    finally:
        fastinit.set_num_threads(before)


def test_kernel_set_override_is_checked() -> None:
    from fastinit import _core

    with pytest.raises(ValueError, match="not available"):
        _core.set_isa("sse9")


def test_environment_variable_selects_the_kernels(tmp_path) -> None:
    import subprocess
    import sys

    code = "import fastinit; print(fastinit.config()['isa'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "FASTINIT_CPU": "scalar"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "scalar"
    bad = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "FASTINIT_CPU": "nonsense"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "FASTINIT_CPU" in bad.stderr


def test_constant_checks_its_shard_keywords() -> None:
    x = sentinel()
    with pytest.raises(ValueError, match="does not fit"):
        fastinit.constant_(x, 1.0, global_shape=(16, 7))
    assert untouched(x)
    assert (fastinit.zeros_(x, global_shape=(32, 8), global_offset=(16, 0)) == 0).all()


SCHEMES_WITH_SHARDS = [
    (fastinit.xavier_uniform_, {}),
    (fastinit.xavier_normal_, {}),
    (fastinit.kaiming_uniform_, {}),
    (fastinit.kaiming_normal_, {}),
    (fastinit.lecun_normal_, {}),
    (fastinit.variance_scaling_, {}),
    (fastinit.eye_, {}),
    (fastinit.sparse_, {"sparsity": 0.5}),
]


@pytest.mark.parametrize(
    ("fn", "kw"), SCHEMES_WITH_SHARDS, ids=lambda v: getattr(v, "__name__", "")
)
def test_schemes_check_empty_tensors_and_shards_like_fills(fn: Any, kw: dict[str, Any]) -> None:
    # A (global) shape with no element used to return before any check: a non-empty buffer
    # given as a shard outside such a global shape was silently left unwritten, and an empty
    # buffer of an unsupported dtype or a bad seed passed.
    x = np.full((4, 6), 7.0, np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        fn(x, **kw, global_shape=(0, 6), global_offset=(-5, 0))
    assert (x == 7.0).all()
    with pytest.raises(TypeError, match="dtype"):
        fn(np.zeros((0, 6), np.int32), **kw)
    if fn is not fastinit.eye_:
        with pytest.raises(TypeError, match="seed"):
            fn(np.zeros((0, 6), np.float32), **kw, seed=1.5)
        g = fastinit.Generator(3)
        state = g.get_state()
        fn(np.zeros((0, 6), np.float32), **kw, seed=g)  # nothing to fill: no stream taken
        assert g.get_state() == state


def test_float64_fills_take_means_and_stds_beyond_float32() -> None:
    x = np.empty(1000, np.float64)
    fastinit.normal_(x, 1e300, 1e299, seed=1)
    assert np.isfinite(x).all() and abs(x.mean() / 1e300 - 1) < 0.01
    fastinit.trunc_normal_(x, 0.0, 1e39, -1e38, 1e38, seed=1)
    assert ((x >= -1e38) & (x <= 1e38)).all() and x.std() > 1e37


# --------------------------------------------------------------------------------------------
# A key the native call draws only after its checks (the bindings' seed_key): fastinit.torch
# passes one that draws from torch's generator, which a refused call must leave untouched.
# --------------------------------------------------------------------------------------------


class _CountingKey:
    def __init__(self, key: int = 1234, error: Exception | None = None) -> None:
        self.calls, self.key, self.error = 0, key, error

    def __call__(self) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.key


def _overlapping(base: np.ndarray) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(base, shape=(base.size - 1, 2), strides=(4, 4))


def _native_fills() -> dict[str, Any]:
    """name -> write(buffer, key, **bad): each native entry point that takes a key."""
    from fastinit import _core

    fills: dict[str, Any] = {
        "fill": lambda x, key, params=(0.0, 1.0): _core.fill(x, "normal", params, key, 3),
    }
    try:
        from fastinit import _orthogonal

        blas = _orthogonal.load_blas()
        fills["orthogonal"] = lambda x, key, params=None: blas.orthogonal(x, 1.0, key, 3)
    except RuntimeError:  # built without the orthogonal module
        pass
    try:
        from fastinit import _cuda  # type: ignore[attr-defined]

        fills["cuda emulated"] = lambda x, key, params=(0.0, 1.0): _cuda._emulate_fill(
            x, "normal", params, key, 3
        )
    except ImportError:  # built without CUDA
        pass
    return fills


@pytest.mark.parametrize("name", sorted(_native_fills()))
def test_a_callable_key_is_called_once_after_the_checks(name: str) -> None:
    write = _native_fills()[name]
    a, b = sentinel(), sentinel()
    key = _CountingKey()
    write(a, key)
    write(b, 1234)
    assert key.calls == 1 and np.array_equal(a, b) and not untouched(a)

    base = sentinel(17)
    key = _CountingKey()
    with pytest.raises(ValueError, match="overlap"):
        write(_overlapping(base), key)
    assert key.calls == 0 and untouched(base)

    failing = sentinel()
    key = _CountingKey(error=LookupError("no seed today"))
    with pytest.raises(LookupError, match="no seed today"):
        write(failing, key)
    assert key.calls == 1 and untouched(failing)

    for bad in (1.5, "7", None):
        with pytest.raises(TypeError, match="key must be an int or a callable"):
            write(failing, bad)
    with pytest.raises(TypeError, match="returned float, not an int"):
        write(failing, lambda: 1.5)
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError, match=r"key must lie in \[0, 2\*\*64\)"):
            write(failing, bad)
        with pytest.raises(ValueError, match=r"key must lie in \[0, 2\*\*64\)"):
            write(failing, lambda bad=bad: bad)
    assert untouched(failing)


def test_a_callable_key_is_not_called_for_refused_parameters() -> None:
    from fastinit import _core

    key = _CountingKey()
    x = sentinel()
    with pytest.raises(ValueError):
        _core.fill(x, "trunc_normal", (0.0, 1.0, 2.0, 1.0), key, 0)
    with pytest.raises(ValueError):
        _core.fill(x, "normal", (math.inf, 1.0), key, 0)
    with pytest.raises(ValueError):
        _core.fill(x, "normal", (0.0, 1.0), key, 0, (16, 8), (1, 0))  # outside the global shape
    assert key.calls == 0 and untouched(x)


def test_delta_orthogonal_draws_its_key_after_its_checks() -> None:
    from fastinit import _orthogonal

    try:
        blas = _orthogonal.load_blas()
    except RuntimeError:
        pytest.skip("built without the orthogonal module")
    x = np.full((3, 4, 6), SENTINEL, np.float32)
    key = _CountingKey()
    with pytest.raises(ValueError, match="column_axis"):
        blas.delta_orthogonal(x, 1.0, key, 0, 5)
    assert key.calls == 0 and untouched(x)
    blas.delta_orthogonal(x, 1.0, key, 0)
    y = np.full((3, 4, 6), SENTINEL, np.float32)
    blas.delta_orthogonal(y, 1.0, 1234, 0)
    assert key.calls == 1 and np.array_equal(x, y) and (x[0] == 0).all()
