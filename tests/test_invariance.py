"""The stream contract, bit for bit: values depend on the logical position only."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastinit

from .conftest import DTYPES, ISAS, bits

FILLS: dict[str, Callable[..., np.ndarray]] = {
    "uniform": lambda x, **kw: fastinit.uniform_(x, -0.5, 1.5, **kw),
    "normal": lambda x, **kw: fastinit.normal_(x, 0.1, 0.7, **kw),
    "trunc_normal": lambda x, **kw: fastinit.trunc_normal_(x, 0.0, 1.0, -1.0, 3.0, **kw),
}


@pytest.fixture(params=list(FILLS))
def fill(request: pytest.FixtureRequest) -> Callable[..., np.ndarray]:
    return FILLS[request.param]


@pytest.fixture
def threads() -> Iterator[None]:
    before = fastinit.get_num_threads()
    yield
    fastinit.set_num_threads(before)


# Sizes that are not multiples of any SIMD group and large enough for several OpenMP chunks.
N_LARGE = 3 * (1 << 18) + 37


def test_thread_count_does_not_change_values(fill, dtype, threads) -> None:
    out = []
    for n in (1, 2, 3):
        fastinit.set_num_threads(n)
        out.append(bits(fill(np.empty(N_LARGE, dtype), seed=11)))
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_every_kernel_set_gives_the_scalar_bits(fill, dtype) -> None:
    from fastinit import _core

    before = _core.get_isa()
    results = {}
    try:
        for name in _core.supported_isas():
            _core.set_isa(name)
            # An odd offset puts the SIMD group boundaries somewhere else in memory.
            results[name] = bits(
                fill(np.empty(10007, dtype), seed=3, global_shape=(10007 + 5,), global_offset=(5,))
            )
    finally:
        _core.set_isa(before)
    for name, r in results.items():
        np.testing.assert_array_equal(r, results["scalar"], err_msg=name)


def test_prefix_offsets_are_consistent(fill, dtype, isa) -> None:
    # Any contiguous range of the stream starting anywhere equals the slice of a whole fill.
    whole = bits(fill(np.empty(1000, dtype), seed=8))
    for start in (0, 1, 2, 3, 5, 63, 64, 65, 129, 500):
        for length in (1, 2, 3, 7, 64, 130):
            if start + length > 1000:
                continue
            part = bits(
                fill(np.empty(length, dtype), seed=8, global_shape=(1000,), global_offset=(start,))
            )
            np.testing.assert_array_equal(part, whole[start : start + length])


@st.composite
def shards(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    ndim = draw(st.integers(1, 4))
    gshape = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    offset = tuple(draw(st.integers(0, g - 1)) for g in gshape)
    local = tuple(draw(st.integers(1, g - o)) for g, o in zip(gshape, offset, strict=False))
    return gshape, offset, local


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=shards(), dname=st.sampled_from(list(DTYPES)), dist=st.sampled_from(list(FILLS)))
def test_every_shard_equals_the_whole_tensor_there(spec, dname: str, dist: str) -> None:
    gshape, offset, local = spec
    dtype, fill = DTYPES[dname], FILLS[dist]
    whole = fill(np.empty(gshape, dtype), seed=21)
    part = fill(np.empty(local, dtype), seed=21, global_shape=gshape, global_offset=offset)
    index = tuple(slice(o, o + n) for o, n in zip(offset, local, strict=False))
    np.testing.assert_array_equal(bits(part), bits(whole[index]))


@settings(max_examples=40, deadline=None)
@given(spec=shards(), dist=st.sampled_from(list(FILLS)))
def test_strided_shard_views(spec, dist: str) -> None:
    # A shard written through a transposed, strided view of a bigger buffer.
    gshape, offset, local = spec
    fill = FILLS[dist]
    whole = fill(np.empty(gshape, np.float32), seed=4)
    big = np.zeros(tuple(2 * n + 1 for n in local[::-1]), np.float32)
    view = big[tuple(slice(1, None, 2) for _ in local)].T
    assert view.shape == local
    fill(view, seed=4, global_shape=gshape, global_offset=offset)
    index = tuple(slice(o, o + n) for o, n in zip(offset, local, strict=False))
    np.testing.assert_array_equal(bits(view), bits(whole[index]))
    mask = np.ones(big.shape, bool)
    mask[tuple(slice(1, None, 2) for _ in local)] = False
    assert not big[mask].any(), "wrote outside the view"


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a.T,
        lambda a: a[::2, 1::3],
        lambda a: a[::-1, ::-2],
        lambda a: np.asfortranarray(a),
        lambda a: a.reshape(6, 5, 40).transpose(2, 0, 1),
    ],
    ids=["transpose", "step-slices", "negative-strides", "fortran", "3d-permuted"],
)
def test_views_get_their_logical_values(make_view, fill, dtype) -> None:
    view = make_view(np.zeros((30, 40), dtype))
    expected = fill(np.empty(view.shape, dtype), seed=6)
    fill(view, seed=6)
    np.testing.assert_array_equal(bits(view), bits(expected))


def test_column_shard_of_a_matrix(fill) -> None:
    whole = fill(np.empty((300, 200), np.float32), seed=12)
    col = fill(
        np.empty((300, 1), np.float32), seed=12, global_shape=(300, 200), global_offset=(0, 77)
    )
    np.testing.assert_array_equal(bits(col), bits(whole[:, 77:78]))


@pytest.mark.parametrize("dname", ["float16", "bfloat16"])
def test_half_types_are_float32_rounded_to_nearest_even(fill, dname: str) -> None:
    ref = fill(np.empty(200003, np.float32), seed=31)
    half = fill(np.empty(200003, DTYPES[dname]), seed=31)
    expected = ref.astype(DTYPES[dname])  # numpy / ml_dtypes round to nearest even
    np.testing.assert_array_equal(bits(half), bits(expected))


def test_float16_rounding_edge_cases() -> None:
    # Subnormals, ties and overflow of the float32 -> float16 conversion, through a normal fill
    # with tiny and huge scales.
    for std in (1e-7, 3e-5, 1.0, 3e4, 1e5):
        ref = fastinit.normal_(np.empty(50000, np.float32), 0.0, std, seed=2)
        half = fastinit.normal_(np.empty(50000, np.float16), 0.0, std, seed=2)
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(bits(half), bits(ref.astype(np.float16)))


def test_torch_tensors_get_numpy_values(fill) -> None:
    torch = pytest.importorskip("torch")

    def tbits(t):
        ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        return t.contiguous().view(ints).numpy()

    for tdt, ndt in [
        (torch.float32, np.float32),
        (torch.float64, np.float64),
        (torch.float16, np.float16),
        (torch.bfloat16, ml_dtypes.bfloat16),
    ]:
        t = fill(torch.empty(123, 45, dtype=tdt), seed=13)
        a = fill(np.empty((123, 45), ndt), seed=13)
        np.testing.assert_array_equal(tbits(t).view(bits(a).dtype), bits(a))
        # a transposed torch view gets the values of its logical positions
        u = fill(torch.empty(45, 123, dtype=tdt).T, seed=13)
        np.testing.assert_array_equal(tbits(u), tbits(t))


_STORE_KINDS_SCRIPT = """
import hashlib, mmap, sys
import ml_dtypes, numpy as np
import fastinit
from fastinit import _core

dt = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
      "bfloat16": ml_dtypes.bfloat16}[sys.argv[1]]
n = int(sys.argv[2])
fills = {
    "uniform": lambda x: fastinit.uniform_(x, -0.5, 1.5, seed=11),
    "normal": lambda x: fastinit.normal_(x, 0.1, 0.7, seed=11),
    "trunc_normal": lambda x: fastinit.trunc_normal_(x, 0.0, 1.0, -1.0, 3.0, seed=11),
}
def fresh():
    # never touched: the fill faults the pages in (plain stores)
    m = mmap.mmap(-1, n * np.dtype(dt).itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(m, dtype=dt, count=n)
def resident():
    x = np.empty(n, dt); x.view(np.uint8).fill(0xFF)   # touched: streaming stores
    return x
def half():
    x = fresh(); x[: n // 2].view(np.uint8).fill(0xFF)
    return x
for isa in _core.supported_isas():
    _core.set_isa(isa)
    for name, f in fills.items():
        for kind, make in (("fresh", fresh), ("resident", resident), ("half", half)):
            x = f(make())
            raw = np.ascontiguousarray(x).view(np.uint8)
            print(isa, name, kind, hashlib.sha256(raw.tobytes()).hexdigest())
"""


def test_streaming_and_plain_stores_give_the_same_bits(dtype) -> None:
    # Fills above FASTINIT_NT_THRESHOLD stream into resident pages and use plain stores on
    # pages that are not resident yet; the store kind must never change a value.
    import hashlib
    import subprocess
    import sys

    name = next(k for k, v in DTYPES.items() if v == dtype)
    env = {**os.environ, "FASTINIT_NT_THRESHOLD": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _STORE_KINDS_SCRIPT, name, str(N_LARGE)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n")
    lines = [line.split() for line in out if line.strip()]
    assert len(lines) == 3 * len(FILLS) * len(ISAS)
    expect = {
        fname: hashlib.sha256(f(np.empty(N_LARGE, dtype), seed=11).view(np.uint8)).hexdigest()
        for fname, f in FILLS.items()
    }
    for isa, fname, kind, digest in lines:
        assert digest == expect[fname], (isa, fname, kind)


@pytest.mark.slow
def test_more_than_2_to_31_elements() -> None:
    # 2^31 + 4099 bfloat16 elements (4 GiB): values at sampled positions beyond 2^31 equal
    # small shard fills there, which proves 64-bit indexing end to end.
    n = (1 << 31) + 4099
    try:
        x = np.empty(n, ml_dtypes.bfloat16)
    except MemoryError:
        pytest.skip("not enough memory for a 4 GiB buffer")
    fastinit.uniform_(x, -1.0, 1.0, seed=123)
    rng = np.random.default_rng(0)
    for pos in [0, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, n - 1, *rng.integers(0, n - 8, 8)]:
        pos = int(min(pos, n - 8))
        part = fastinit.uniform_(
            np.empty(8, ml_dtypes.bfloat16),
            -1.0,
            1.0,
            seed=123,
            global_shape=(n,),
            global_offset=(pos,),
        )
        np.testing.assert_array_equal(bits(part), bits(x[pos : pos + 8]))
    # 2-D with a row index that overflows 32-bit arithmetic when multiplied by the row length
    part2 = fastinit.uniform_(
        np.empty((2, 4), ml_dtypes.bfloat16),
        -1.0,
        1.0,
        seed=123,
        global_shape=(n // 4099, 4099),
        global_offset=(n // 4099 - 2, 100),
    )
    rows = n // 4099
    for r in range(2):
        start = (rows - 2 + r) * 4099 + 100
        np.testing.assert_array_equal(bits(part2[r]), bits(x[start : start + 4]))
    del x
