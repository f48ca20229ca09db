"""NumPy-level schemes: gains, fans, Glorot/He/LeCun, variance scaling, eye/dirac/sparse."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fastinit
from fastinit import _schemes

# KS tests reject at this p-value. Every seed is fixed, so a test either always passes or
# always fails; the threshold keeps the chance that a correct fill fails a given test tiny.
P_MIN = 1e-4

TORCH_GAINS = {
    "linear": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3,
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)),
    "selu": 0.75,
}


def ks_p(values: np.ndarray, cdf: object, *args: float) -> float:
    return float(stats.kstest(np.asarray(values, np.float64).ravel(), cdf, args=args).pvalue)


# ------------------------------------------------------------------------------ gains


@pytest.mark.parametrize("name", sorted(TORCH_GAINS))
def test_calculate_gain_values(name: str) -> None:
    assert fastinit.calculate_gain(name) == pytest.approx(TORCH_GAINS[name], rel=1e-15)


def test_calculate_gain_leaky_relu_param() -> None:
    assert fastinit.calculate_gain("leaky_relu", 0.2) == math.sqrt(2.0 / 1.04)
    assert fastinit.calculate_gain("leaky_relu", 0) == math.sqrt(2.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gelu",), "Unsupported nonlinearity gelu"),
        (("leaky_relu", True), "negative_slope True not a valid number"),
        (("leaky_relu", "0.1"), "negative_slope 0.1 not a valid number"),
    ],
)
def test_calculate_gain_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        fastinit.calculate_gain(*args)


# ------------------------------------------------------------------------------ fans


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=2, max_size=5))
def test_torch_fans_match_torch(shape: list[int]) -> None:
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))
    assert fastinit.compute_fans(shape) == expected


@pytest.mark.parametrize(
    ("shape", "kwargs", "fans"),
    [
        ((64, 32), {}, (32, 64)),
        ((64, 32, 3, 3), {}, (288, 576)),
        ((64, 32, 3, 3), {"layout": "torch"}, (288, 576)),
        ((32, 64), {"layout": "keras"}, (32, 64)),
        ((3, 3, 32, 64), {"layout": "keras"}, (288, 576)),
        ((5,), {"layout": "keras"}, (5, 5)),
        ((), {"layout": "keras"}, (1, 1)),
        ((32, 64), {"layout": "jax"}, (32, 64)),
        ((3, 3, 32, 64), {"layout": "jax"}, (288, 576)),
        ((8, 32, 64), {"in_axis": 1, "out_axis": 2, "batch_axis": 0}, (32, 64)),
        ((8, 32, 64), {"in_axis": -2, "out_axis": -1, "batch_axis": (0,)}, (32, 64)),
        ((4, 5, 6, 7), {"in_axis": (0, 1), "out_axis": 3}, (20 * 6, 7 * 6)),
        ((64, 32, 3, 3), {"in_axis": 1, "out_axis": 0}, (288, 576)),
    ],
)
def test_compute_fans_layouts(shape: tuple, kwargs: dict, fans: tuple) -> None:
    assert fastinit.compute_fans(shape, **kwargs) == fans


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((5,), {}, "Fan in and fan out can not be computed for tensor with fewer than 2"),
        ((), {}, "Fan in and fan out can not be computed"),
        ((5,), {"layout": "jax"}, "Can't compute input and output sizes of a 1-dimensional"),
        ((4, 5), {"layout": "torch", "in_axis": 0}, "select JAX's rule"),
        ((4, 5), {"layout": "flax"}, "layout must be"),
        ((4, 5), {"in_axis": 2}, r"in_axis=2 is out of range"),
        ((4, 5, 6), {"in_axis": 0, "out_axis": 0}, "distinct axes"),
        ((4, 5, 6), {"in_axis": 0, "out_axis": 1, "batch_axis": 1}, "distinct axes"),
    ],
)
def test_compute_fans_errors(shape: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fastinit.compute_fans(shape, **kwargs)


# ------------------------------------------------------------------------------ distributions

CONV = (256, 96, 3, 3)  # 221184 elements; fan_in 864, fan_out 2304
LINEAR = (384, 512)


def xavier_bound(shape: tuple[int, ...], gain: float = 1.0) -> float:
    fan_in, fan_out = fastinit.compute_fans(shape)
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("shape", [LINEAR, CONV], ids=["linear", "conv"])
@pytest.mark.parametrize("gain", [1.0, 5.0 / 3])
def test_xavier_uniform_distribution(shape: tuple, gain: float) -> None:
    x = fastinit.xavier_uniform_(np.empty(shape, np.float64), gain, seed=11)
    b = xavier_bound(shape, gain)
    assert np.abs(x).max() <= b
    assert np.abs(x).max() > 0.999 * b
    assert ks_p(x, "uniform", -b, 2 * b) > P_MIN


@pytest.mark.parametrize("shape", [LINEAR, CONV], ids=["linear", "conv"])
def test_xavier_normal_distribution(shape: tuple) -> None:
    fan_in, fan_out = fastinit.compute_fans(shape)
    std = 0.5 * math.sqrt(2.0 / (fan_in + fan_out))
    x = fastinit.xavier_normal_(np.empty(shape, np.float64), 0.5, seed=12)
    assert ks_p(x, "norm", 0.0, std) > P_MIN


@pytest.mark.parametrize(
    ("a", "mode", "nonlinearity"),
    [
        (math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Linear / nn.Conv*
        (0.0, "fan_out", "relu"),
        (0.2, "FAN_IN", "leaky_relu"),
        (0.0, "fan_in", "tanh"),
    ],
)
def test_kaiming_uniform_distribution(a: float, mode: str, nonlinearity: str) -> None:
    fan_in, fan_out = fastinit.compute_fans(CONV)
    fan = fan_in if mode.lower() == "fan_in" else fan_out
    gain = TORCH_GAINS[nonlinearity] if nonlinearity != "leaky_relu" else math.sqrt(2 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan)
    x = fastinit.kaiming_uniform_(np.empty(CONV, np.float64), a, mode, nonlinearity, seed=13)
    assert np.abs(x).max() <= bound
    assert ks_p(x, "uniform", -bound, 2 * bound) > P_MIN


def test_kaiming_uniform_sqrt5_is_one_over_sqrt_fan_in() -> None:
    x = fastinit.kaiming_uniform_(np.empty(CONV, np.float32), a=math.sqrt(5), seed=3)
    bound = 1.0 / math.sqrt(96 * 9)
    assert np.abs(x).max() <= np.float32(bound)
    assert ks_p(x, "uniform", -bound, 2 * bound) > P_MIN


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_distribution(mode: str) -> None:
    fan_in, fan_out = fastinit.compute_fans(CONV)
    std = math.sqrt(2.0) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    x = fastinit.kaiming_normal_(np.empty(CONV, np.float64), 0, mode, "relu", seed=14)
    assert ks_p(x, "norm", 0.0, std) > P_MIN


def test_kaiming_errors_in_torch_order() -> None:
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"^Mode fan_avg not supported, please use one of"):
        fastinit.kaiming_uniform_(x, mode="fan_avg")
    with pytest.raises(ValueError, match=r"^Unsupported nonlinearity gelu$"):
        fastinit.kaiming_normal_(x, nonlinearity="gelu")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        fastinit.kaiming_uniform_(np.zeros(5, np.float32))
    # torch checks the mode before the fans
    with pytest.raises(ValueError, match=r"^Mode bad not supported"):
        fastinit.kaiming_uniform_(np.zeros(5, np.float32), mode="bad")
    assert not x.any()


def truncated_stddev(variance: float) -> float:
    return math.sqrt(variance) / 0.87962566103423978


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "uniform"])
def test_variance_scaling(mode: str, distribution: str) -> None:
    scale = 2.0
    fan_in, fan_out = fastinit.compute_fans(CONV)
    n = {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]
    variance = scale / n
    x = fastinit.variance_scaling_(
        np.empty(CONV, np.float64), scale, mode, distribution, seed=15
    ).ravel()
    if distribution == "truncated_normal":
        s = truncated_stddev(variance)
        assert np.abs(x).max() <= 2 * s
        assert ks_p(x, stats.truncnorm(-2.0, 2.0, scale=s).cdf) > P_MIN
    elif distribution == "normal":
        assert ks_p(x, "norm", 0.0, math.sqrt(variance)) > P_MIN
    else:
        limit = math.sqrt(3 * variance)
        assert ks_p(x, "uniform", -limit, 2 * limit) > P_MIN
    # Every distribution has variance scale / n (the truncated one thanks to the correction).
    assert x.var() == pytest.approx(variance, rel=0.01)


def test_truncated_normal_correction_constant() -> None:
    assert stats.truncnorm(-2, 2).std() == pytest.approx(
        fastinit.TRUNCATED_NORMAL_STDDEV_FACTOR, rel=1e-15
    )


def test_variance_scaling_keras_layout_equals_transposed_torch_layout() -> None:
    # A Keras Dense kernel (in, out) holds the same fans as the torch weight (out, in).
    k = fastinit.variance_scaling_(
        np.empty((300, 200)), 1.0, "fan_in", "uniform", seed=1, layout="keras"
    )
    limit = math.sqrt(3.0 / 300)
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.99 * limit


def test_variance_scaling_jax_batch_axis() -> None:
    x = fastinit.variance_scaling_(
        np.empty((16, 64, 128)),
        1.0,
        "fan_in",
        "normal",
        seed=2,
        in_axis=1,
        out_axis=2,
        batch_axis=0,
    )
    assert x.var() == pytest.approx(1 / 64, rel=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "scale must be a positive"),
        ({"scale": -1.0}, "scale must be a positive"),
        ({"scale": math.inf}, "scale must be a positive"),
        ({"scale": math.nan}, "scale must be a positive"),
        ({"mode": "fan"}, "mode must be one of"),
        ({"distribution": "gamma"}, "distribution must be one of"),
    ],
)
def test_variance_scaling_errors(kwargs: dict, message: str) -> None:
    x = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match=message):
        fastinit.variance_scaling_(x, **kwargs)
    assert not x.any()


def test_lecun() -> None:
    n = fastinit.lecun_normal_(np.empty(CONV), seed=4)
    u = fastinit.lecun_uniform_(np.empty(CONV), seed=4)
    fan_in = 96 * 9
    s = truncated_stddev(1.0 / fan_in)
    assert np.abs(n).max() <= 2 * s
    assert ks_p(n, stats.truncnorm(-2.0, 2.0, scale=s).cdf) > P_MIN
    assert n.var() == pytest.approx(1 / fan_in, rel=0.01)
    assert np.abs(u).max() <= math.sqrt(3 / fan_in)
    assert u.var() == pytest.approx(1 / fan_in, rel=0.01)
    same = fastinit.variance_scaling_(np.empty(CONV), 1.0, "fan_in", "truncated_normal", seed=4)
    assert np.array_equal(n, same)


# ------------------------------------------------------------------------------ seeds, shards


SCHEMES = {
    "xavier_uniform_": lambda x, **kw: fastinit.xavier_uniform_(x, 1.3, **kw),
    "xavier_normal_": lambda x, **kw: fastinit.xavier_normal_(x, **kw),
    "kaiming_uniform_": lambda x, **kw: fastinit.kaiming_uniform_(x, math.sqrt(5), **kw),
    "kaiming_normal_": lambda x, **kw: fastinit.kaiming_normal_(x, mode="fan_out", **kw),
    "lecun_normal_": lambda x, **kw: fastinit.lecun_normal_(x, **kw),
    "lecun_uniform_": lambda x, **kw: fastinit.lecun_uniform_(x, **kw),
    "variance_scaling_": lambda x, **kw: fastinit.variance_scaling_(x, 0.5, "fan_avg", **kw),
    "sparse_": lambda x, **kw: fastinit.sparse_(x, 0.4, 0.1, **kw),
}


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_seed_is_pure_and_generator_advances(name: str) -> None:
    fill = SCHEMES[name]
    a = fill(np.empty((40, 30), np.float32), seed=5)
    b = fill(np.empty((40, 30), np.float32), seed=5)
    c = fill(np.empty((40, 30), np.float32), seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    g = fastinit.Generator(9)
    first, second = (fill(np.empty((40, 30), np.float32), seed=g) for _ in range(2))
    assert not np.array_equal(first, second)
    h = fastinit.Generator(9)
    assert np.array_equal(first, fill(np.empty((40, 30), np.float32), seed=h))
    assert np.array_equal(second, fill(np.empty((40, 30), np.float32), seed=h))


@pytest.mark.parametrize("name", sorted(SCHEMES))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_shards_equal_the_whole(name: str, data: st.DataObject) -> None:
    fill = SCHEMES[name]
    rows = data.draw(st.integers(1, 40), label="rows")
    cols = data.draw(st.integers(1, 40), label="cols")
    whole = fill(np.empty((rows, cols), np.float32), seed=77)
    r0 = data.draw(st.integers(0, rows - 1), label="r0")
    c0 = data.draw(st.integers(0, cols - 1), label="c0")
    r1 = data.draw(st.integers(r0 + 1, rows), label="r1")
    c1 = data.draw(st.integers(c0 + 1, cols), label="c1")
    shard = np.full((r1 - r0, c1 - c0), np.nan, np.float32)
    fill(shard, seed=77, global_shape=(rows, cols), global_offset=(r0, c0))
    assert np.array_equal(shard, whole[r0:r1, c0:c1])


def test_fans_come_from_the_global_shape() -> None:
    shard = fastinit.kaiming_uniform_(
        np.empty((4, 1000), np.float64), seed=1, global_shape=(4, 10_000), global_offset=(0, 0)
    )
    bound = math.sqrt(2.0) * math.sqrt(3 / 10_000)  # a=0: gain sqrt(2)
    assert np.abs(shard).max() <= bound
    assert np.abs(shard).max() > 0.99 * bound


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
def test_half_dtypes_are_rounded_float32(dtype: type, distribution: str) -> None:
    shape = (64, 48)
    ref = fastinit.variance_scaling_(
        np.empty(shape, np.float32), 2.0, "fan_in", distribution, seed=8
    )
    half = fastinit.variance_scaling_(np.empty(shape, dtype), 2.0, "fan_in", distribution, seed=8)
    rounded = ref.astype(dtype)
    if distribution == "truncated_normal":
        # Bounds win over rounding: a value that would round past ±2s is the last one inside.
        limit = 2 * truncated_stddev(2.0 / 48)
        assert np.abs(half.astype(np.float64)).max() <= limit
        outside = np.abs(rounded.astype(np.float64)) > limit
        assert outside.sum() < 5
        half, rounded = half[~outside], rounded[~outside]
    assert np.array_equal(half.view(np.uint16), rounded.view(np.uint16))


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_zero_size_is_a_no_op(name: str) -> None:
    x = np.empty((0, 5), np.float32)
    assert SCHEMES[name](x, seed=1) is x


def test_transposed_view_gets_its_logical_values() -> None:
    base = np.full((30, 40), np.nan, np.float32)
    view = base.T  # logical shape (40, 30), strides transposed
    fastinit.xavier_uniform_(view, seed=3)
    ref = fastinit.xavier_uniform_(np.empty((40, 30), np.float32), seed=3)
    assert np.array_equal(view, ref)


# ------------------------------------------------------------------------------ eye_ / dirac_


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 7), (0, 3)])
def test_eye(shape: tuple) -> None:
    x = np.full(shape, np.nan, np.float32)
    assert fastinit.eye_(x) is x
    assert np.array_equal(x, np.eye(*shape, dtype=np.float32))


def test_eye_shards() -> None:
    shard = np.full((3, 4), np.nan, np.float64)
    fastinit.eye_(shard, global_shape=(10, 12), global_offset=(2, 1))
    assert np.array_equal(shard, np.eye(10, 12)[2:5, 1:5])


def test_eye_error() -> None:
    x = np.ones((2, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"^Only tensors with 2 dimensions are supported$"):
        fastinit.eye_(x)
    assert (x == 1).all()


def dirac_reference(shape: tuple[int, ...], groups: int) -> np.ndarray:
    out = np.zeros(shape)
    per = shape[0] // groups
    centre = tuple(s // 2 for s in shape[2:])
    for g in range(groups):
        for d in range(min(per, shape[1])):
            out[(g * per + d, d, *centre)] = 1
    return out


@pytest.mark.parametrize(
    ("shape", "groups"),
    [((4, 4, 3), 1), ((6, 3, 3, 3), 1), ((3, 6, 5, 5), 1), ((8, 2, 3, 3), 2), ((6, 4, 3, 2, 4), 3)],
)
def test_dirac(shape: tuple, groups: int) -> None:
    x = np.full(shape, np.nan, np.float32)
    assert fastinit.dirac_(x, groups) is x
    assert np.array_equal(x, dirac_reference(shape, groups))


def test_dirac_shard() -> None:
    shape = (8, 4, 3, 3)
    shard = np.full((4, 4, 2, 3), np.nan)
    fastinit.dirac_(shard, 2, global_shape=shape, global_offset=(2, 0, 1, 0))
    assert np.array_equal(shard, dirac_reference(shape, 2)[2:6, :, 1:3, :])


@pytest.mark.parametrize(
    ("shape", "groups", "message"),
    [
        ((4, 4), 1, r"^Only tensors with 3, 4, or 5 dimensions are supported$"),
        ((4, 4, 3, 3, 3, 3), 1, r"^Only tensors with 3, 4, or 5 dimensions are supported$"),
        ((5, 4, 3), 2, "^dim 0 must be divisible by groups$"),
    ],
)
def test_dirac_errors(shape: tuple, groups: int, message: str) -> None:
    x = np.ones(shape, np.float32)
    with pytest.raises(ValueError, match=message):
        fastinit.dirac_(x, groups)
    assert (x == 1).all()


# ------------------------------------------------------------------------------ sparse_


@pytest.mark.parametrize(("rows", "sparsity"), [(300, 0.3), (17, 0.5), (64, 0.0), (9, 1.0)])
def test_sparse_zero_count_per_column(rows: int, sparsity: float) -> None:
    x = fastinit.sparse_(np.empty((rows, 50), np.float64), sparsity, seed=21)
    assert ((x == 0).sum(axis=0) == math.ceil(sparsity * rows)).all()


def test_sparse_values_and_pattern_distribution() -> None:
    rows, cols, sparsity, std = 20, 20_000, 0.25, 0.05
    x = fastinit.sparse_(np.empty((rows, cols), np.float64), sparsity, std, seed=22)
    nonzero = x[x != 0]
    assert ks_p(nonzero, "norm", 0.0, std) > P_MIN
    # Each row is zero in a column with probability 5/20: chi-square over the 20 rows.
    counts = (x == 0).sum(axis=1)
    expected = cols * math.ceil(sparsity * rows) / rows
    assert stats.chisquare(counts, np.full(rows, expected)).pvalue > P_MIN
    # Pairs of rows are zero together as often as sampling without replacement says.
    z = (x == 0).astype(np.float64)
    together = (z[0] * z[1]).mean()
    assert together == pytest.approx(5 / 20 * 4 / 19, abs=0.01)


def test_sparse_pattern_is_frozen() -> None:
    # Golden: the stream derivation of the zero pattern is part of the frozen contract.
    x = fastinit.sparse_(np.empty((10, 4), np.float32), 0.3, seed=1234)
    zero_rows = [sorted(np.flatnonzero(x[:, j] == 0).tolist()) for j in range(4)]
    assert zero_rows == GOLDEN_SPARSE_ROWS
    key_rows = _schemes.sparse_zero_rows(10, 3, 0, 4, 1234, _schemes.sparse_pattern_stream(0))
    assert [sorted(r) for r in key_rows.tolist()] == GOLDEN_SPARSE_ROWS


GOLDEN_SPARSE_ROWS = [[0, 6, 9], [5, 7, 9], [1, 3, 8], [0, 6, 7]]


def _column_zeros(rows: int, num_zeros: int, start: int, stop: int, **kw: int) -> np.ndarray:
    runs = list(_schemes.sparse_column_zero_rows(rows, num_zeros, 3, start, stop, 99, 7, **kw))
    chunk = kw.get("chunk", 1 << 21)
    assert all(r.size <= chunk for r in runs)
    return np.sort(np.concatenate(runs)) if runs else np.empty(0, np.int64)


@pytest.mark.parametrize("rows", [1, 2, 3, 17, 1000, 4097])
@pytest.mark.parametrize(("chunk", "digit_bits"), [(1, 4), (3, 2), (7, 16), (64, 1), (1 << 21, 16)])
def test_sparse_column_zeros_are_the_smallest_keys(rows: int, chunk: int, digit_bits: int) -> None:
    # The bounded radix selection gives the rows of the num_zeros smallest keys exactly,
    # whatever run length and digit width (small ones force many histogram passes and
    # candidate runs), for the whole column and for row ranges inside and across runs.
    keys = _schemes._rank_keys(rows, 3, 1, 0, rows, 99, 7)[0]
    order = np.argsort(keys)
    ranges = {(0, rows), (rows // 3, rows - rows // 4), (rows - 1, rows), (0, 1), (rows, rows)}
    for num_zeros in sorted({1, max(rows // 2, 1), max(rows - 1, 1), rows}):
        want = np.sort(order[:num_zeros])
        for start, stop in sorted(ranges):
            got = _column_zeros(rows, num_zeros, start, stop, chunk=chunk, digit_bits=digit_bits)
            assert np.array_equal(got, want[(want >= start) & (want < stop)]), (start, stop)


@pytest.mark.parametrize("digit_bits", [5, 7, 16])
def test_sparse_column_zeros_last_digit_is_narrower(
    monkeypatch: pytest.MonkeyPatch, digit_bits: int
) -> None:
    # Keys that share their top 56 bits make the selection run down to the lowest bits, where
    # the last digit is narrower than digit_bits when it does not divide 64 (12 * 5 + 4,
    # 9 * 7 + 1). Random keys never get there.
    rows = 200
    rng = np.random.default_rng(0)
    fake = (np.uint64(0xABCDEF12345678) << np.uint64(8)) | rng.permutation(256)[:rows].astype(
        np.uint64
    )

    def keys(rows_: int, col: int, ncols: int, start: int, stop: int, *_: object) -> np.ndarray:
        return fake[None, start:stop]

    monkeypatch.setattr(_schemes, "_rank_keys", keys)
    order = np.argsort(fake)
    for num_zeros in (1, 2, 77, 199, 200):
        got = _column_zeros(rows, num_zeros, 0, rows, chunk=1, digit_bits=digit_bits)
        assert np.array_equal(got, np.sort(order[:num_zeros]))


@pytest.mark.parametrize("sparsity", [0.37, 1.0, 0.001])
def test_sparse_tall_columns_take_the_same_pattern(
    monkeypatch: pytest.MonkeyPatch, sparsity: float
) -> None:
    # Columns taller than the key budget go through the threshold path: the same matrix, whole
    # and as shards (rows split across runs of the budget, offset into the global matrix).
    ref = fastinit.sparse_(np.empty((300, 20)), sparsity, seed=3)
    monkeypatch.setattr(_schemes, "_SPARSE_CHUNK_KEYS", 50)
    assert np.array_equal(fastinit.sparse_(np.empty((300, 20)), sparsity, seed=3), ref)
    for (r0, r1), (c0, c1) in [((101, 171), (9, 15)), ((0, 300), (19, 20)), ((299, 300), (0, 20))]:
        shard = np.empty((r1 - r0, c1 - c0))
        fastinit.sparse_(shard, sparsity, seed=3, global_shape=(300, 20), global_offset=(r0, c0))
        assert np.array_equal(shard, ref[r0:r1, c0:c1])


def test_sparse_pattern_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny shard of a matrix with 2^22 rows: the pattern pass held every key of a column
    # (~146 MiB here) before; now at most a budget's worth (2^16 keys, ~0.5 MiB, here).
    import tracemalloc

    monkeypatch.setattr(_schemes, "_SPARSE_CHUNK_KEYS", 1 << 16)
    rows = 1 << 22
    x = np.empty((3, 2), np.float32)
    tracemalloc.start()
    try:
        fastinit.sparse_(x, 0.5, seed=1, global_shape=(rows, 3), global_offset=(rows - 3, 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    # The zeros are the rows whose keys rank below ceil(rows / 2) in their column.
    stream = _schemes.sparse_pattern_stream(0)
    for j in (1, 2):
        t = np.partition(_schemes._rank_keys(rows, j, 1, 0, rows, 1, stream)[0], rows // 2 - 1)
        keys = _schemes._rank_keys(rows, j, 1, rows - 3, rows, 1, stream)[0]
        assert np.array_equal(x[:, j - 1] == 0, keys <= t[rows // 2 - 1])


def test_sparse_pattern_follows_the_stream() -> None:
    g = fastinit.Generator(5)
    a = fastinit.sparse_(np.empty((30, 30)), 0.5, seed=g)
    b = fastinit.sparse_(np.empty((30, 30)), 0.5, seed=g)
    assert not np.array_equal(a == 0, b == 0)
    # The values are the plain normal_ fill of the same (key, stream).
    g2 = fastinit.Generator(5)
    ref = fastinit.normal_(np.empty((30, 30)), 0.0, 0.01, seed=g2)
    assert np.array_equal(a[a != 0], ref[a != 0])


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((4,), {"sparsity": 0.1}, "^Only tensors with 2 dimensions are supported$"),
        ((4, 4, 4), {"sparsity": 0.1}, "^Only tensors with 2 dimensions are supported$"),
        ((4, 4), {"sparsity": 1.5}, "sparsity must be in"),
        ((4, 4), {"sparsity": -0.1}, "sparsity must be in"),
        ((4, 4), {"sparsity": math.nan}, "sparsity must be in"),
        ((4, 4), {"sparsity": 0.1, "std": -1.0}, "std >= 0"),
    ],
)
def test_sparse_errors(shape: tuple, kwargs: dict, message: str) -> None:
    x = np.ones(shape, np.float32)
    g = fastinit.Generator(1)
    with pytest.raises(ValueError, match=message):
        fastinit.sparse_(x, seed=g, **kwargs)
    assert (x == 1).all()
    assert g.stream == 0


def test_schemes_all_exported() -> None:
    for name in _schemes.__all__:
        assert getattr(fastinit, name) is getattr(_schemes, name)


def test_leaky_relu_gain_of_a_huge_slope_is_its_limit() -> None:
    # Found by the fuzz suite: torch's formula raises OverflowError for |slope| > ~1.3e154,
    # where the gain is sqrt(2) / |slope| to within rounding (0.0 beyond float range).
    for slope in (1.3407807929942597e154, -1e200, 1e300):
        assert fastinit.calculate_gain("leaky_relu", slope) == pytest.approx(
            math.sqrt(2.0) / abs(slope), rel=1e-15
        )
    assert fastinit.calculate_gain("leaky_relu", 10**400) == 0.0
    assert fastinit.calculate_gain("leaky_relu", 1e100) == math.sqrt(2.0 / (1 + 1e100**2))
    x = np.ones((8, 8), np.float32)
    fastinit.kaiming_normal_(x, a=1e200, nonlinearity="leaky_relu", seed=0)
    assert np.all(x == 0.0)  # std ~ 5e-201 rounds to zero in float32


def test_sparse_rejected_call_takes_no_stream() -> None:
    # Found by the fuzz suite at 10^4 cases: sparse_ took the Generator's stream before the
    # buffer was validated.
    g = fastinit.Generator(0)
    state = g.get_state()
    x = np.zeros((8, 4), np.float32)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastinit.sparse_(x, 0.5, seed=g)
    assert g.get_state() == state
    y = np.zeros((8, 4), np.float32)
    fastinit.sparse_(y, 0.5, seed=g)
    assert g.get_state() != state
    ref = np.zeros((8, 4), np.float32)
    fastinit.sparse_(ref, 0.5, seed=fastinit.Generator(0))
    assert np.array_equal(y, ref)
