"""Distributions, checked with scipy on at least 10^6 samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import fastinit

N = 1 << 20
P_MIN = 1e-4  # a correct sampler fails one of these with probability ~1e-4 per test


def test_uniform_ks_and_bounds(dtype) -> None:
    x = fastinit.uniform_(np.empty(N, dtype), -3.0, 5.0, seed=1).astype(np.float64)
    assert x.min() >= -3.0 and x.max() <= 5.0
    if dtype.itemsize >= 4:
        assert stats.kstest(x, stats.uniform(-3.0, 8.0).cdf).pvalue > P_MIN
    assert abs(x.mean() - 1.0) < 0.02 and abs(x.var() - 64 / 12) < 0.05


def test_uniform_bounds_after_rounding() -> None:
    # 0.1 is not representable: every bfloat16 value must still lie in [-0.1, 0.1].
    import ml_dtypes

    x = fastinit.uniform_(np.empty(N, ml_dtypes.bfloat16), -0.1, 0.1, seed=2).astype(np.float64)
    assert x.min() >= -0.1 and x.max() <= 0.1


@pytest.mark.parametrize("dname", ["float32", "float64"])
def test_normal_ks_moments_and_tails(dname: str) -> None:
    x = fastinit.normal_(np.empty(4 * N, dname), 0.0, 1.0, seed=3).astype(np.float64)
    assert stats.kstest(x[:N], "norm").pvalue > P_MIN
    assert abs(x.mean()) < 0.003 and abs(x.std() - 1) < 0.003
    assert abs(stats.skew(x)) < 0.01 and abs(stats.kurtosis(x)) < 0.02
    # Tail masses beyond 3 and 4 sigma (binomial tolerances of ~5 standard errors).
    for k in (3.0, 4.0):
        expect = 2 * stats.norm.sf(k) * x.size
        assert abs((np.abs(x) > k).sum() - expect) < 5 * np.sqrt(expect) + 2


def test_normal_mean_std_and_far_tails() -> None:
    x = fastinit.normal_(np.empty(N, np.float32), 2.5, 0.01, seed=4).astype(np.float64)
    assert stats.kstest(x, stats.norm(2.5, 0.01).cdf).pvalue > P_MIN
    # The radius transform must be able to reach 6 sigma in 32-bit: probe the smallest
    # uniform the stream can produce, via the documented word layout.
    from fastinit import _core

    assert _core.round_to_dtype(6.66, "float32") > 6.0  # sanity of the helper
    tail = np.sqrt(-2 * np.log(2.0**-32))
    assert tail > 6.0


def test_normal_zero_std_is_the_mean() -> None:
    x = fastinit.normal_(np.empty(1000, np.float32), 1.25, 0.0, seed=5)
    assert (x == 1.25).all()


TRUNC_CASES = [
    (-2.0, 2.0),
    (2.0, 3.0),
    (5.0, 6.0),
    (-8.0, -7.0),
    (-1.0, 6.0),  # asymmetric
    (-0.5, 2.5),
    (-10.0, 10.0),
]


@pytest.mark.parametrize("dname", ["float32", "float64"])
@pytest.mark.parametrize("a,b", TRUNC_CASES, ids=[f"[{a},{b}]" for a, b in TRUNC_CASES])
def test_trunc_normal_ks_in_std_units(dname: str, a: float, b: float) -> None:
    mean, std = 0.3, 1.7
    x = fastinit.trunc_normal_(
        np.empty(N, dname), mean, std, mean + a * std, mean + b * std, seed=6
    ).astype(np.float64)
    assert x.min() >= mean + a * std and x.max() <= mean + b * std
    ref = stats.truncnorm(a, b, loc=mean, scale=std)
    assert stats.kstest(x, ref.cdf).pvalue > P_MIN
    assert abs(x.mean() - ref.mean()) < 6 * ref.std() / np.sqrt(N)
    # No mass piled on a bound: the fraction within a hair of each bound is as expected.
    eps = 1e-4 * std
    for _edge, lo, hi in ((a, a, a + 1e-4), (b, b - 1e-4, b)):
        frac = ((x >= mean + lo * std) & (x <= mean + hi * std)).mean()
        assert frac <= ref.cdf(mean + hi * std) - ref.cdf(mean + lo * std) + 1e-4 + eps


def test_trunc_normal_tiny_std() -> None:
    x = fastinit.trunc_normal_(
        np.empty(N, np.float32), 1.0, 1e-6, 1.0 - 2e-6, 1.0 + 2e-6, seed=7
    ).astype(np.float64)
    assert x.min() >= 1.0 - 2e-6 and x.max() <= 1.0 + 2e-6
    z = (x - 1.0) / 1e-6
    # float32 resolution near 1.0 is 6e-8 = 0.06 std: compare on a coarse grid
    assert abs(z.mean()) < 0.01 and abs(z.std() - stats.truncnorm(-2, 2).std()) < 0.02


def test_trunc_normal_half_types_stay_in_bounds(dtype) -> None:
    # torch semantics with bounds that are not representable in the 16-bit types
    x = fastinit.trunc_normal_(np.empty(N, dtype), 0.0, 0.02, -0.04, 0.04, seed=8)
    y = x.astype(np.float64)
    assert y.min() >= -0.04 and y.max() <= 0.04
    assert abs(y.std() - 0.02 * stats.truncnorm(-2, 2).std()) < 2e-4


@pytest.mark.parametrize("fill", ["uniform", "normal", "trunc_normal"])
def test_streams_and_seeds_are_uncorrelated(fill: str) -> None:
    f = {
        "uniform": fastinit.uniform_,
        "normal": fastinit.normal_,
        "trunc_normal": fastinit.trunc_normal_,
    }[fill]
    g = fastinit.Generator(9)
    a = f(np.empty(N, np.float64), seed=g)
    b = f(np.empty(N, np.float64), seed=g)
    c = f(np.empty(N, np.float64), seed=10)
    bound = 5 / np.sqrt(N)
    assert abs(np.corrcoef(a, b)[0, 1]) < bound
    assert abs(np.corrcoef(a, c)[0, 1]) < bound
    # neighbouring elements (same Philox block, Box-Muller pairs) are uncorrelated too
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < bound
    assert abs(np.corrcoef(a[0::2] ** 2, a[1::2] ** 2)[0, 1]) < 2 * bound


@pytest.mark.parametrize(
    "low,high",
    [
        (-1.0, 1.0),
        (0.0, 1.0),
        (-0.1, 0.1),
        (1.0, 1.0 + 1e-6),
        (-3e-5, 7e-5),
        (1e4, 1e4 + 3.0),
        (-65504.0, 65504.0),
        (0.3, 0.7),
    ],
)
def test_uniform_values_stay_in_bounds_after_rounding(dtype, low: float, high: float) -> None:
    # The kernels skip the clamp only when the host proved it cannot act; either way every
    # rounded value must lie in [low, high].
    try:
        x = fastinit.uniform_(np.empty(1 << 16, dtype), low, high, seed=11).astype(np.float64)
    except ValueError:  # no value of this dtype lies in [low, high]
        return
    assert x.min() >= low and x.max() <= high


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_trunc_normal_with_zero_std_is_the_mean_rounded_to_nearest(dtype: str) -> None:
    # A point mass at the mean, for any mean in [a, b] (0.1 is not representable in any of
    # these dtypes: a uniform on [0.1, 0.1] had no representable value left after rounding
    # its bounds inwards, and raised).
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    compute = np.float64 if dtype == "float64" else np.float32  # then rounded to the dtype
    for mean in (0.1, -0.7, 0.0, 1.0):
        x = np.empty(33, dt)
        fastinit.trunc_normal_(x, mean, 0.0, -1.0, 1.0, seed=4)
        assert (x == np.array(mean, compute).astype(dt)).all(), (dtype, mean)
        y = np.empty(33, dt)
        fastinit.truncated_normal_(y, 0.0, mean, seed=4)
        assert (y == x).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_constant_special_values_convert_as_numpy_does(dtype: str) -> None:
    # NaN (either sign) stays a quiet NaN in the 16-bit dtypes (it came out as an infinity),
    # with the bits NumPy / ml_dtypes give; infinities and the largest finite values too.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    for value in (np.nan, -np.nan, np.inf, -np.inf, 65504.0, -3.0e38, 1e-8):
        x = np.zeros(9, dt)
        fastinit.constant_(x, value)
        with np.errstate(over="ignore"):  # -3e38 overflows float16: NumPy warns
            ref = np.full(9, value, np.float64 if dtype == "float64" else np.float32).astype(dt)
        assert x.tobytes() == ref.tobytes(), (dtype, value)
