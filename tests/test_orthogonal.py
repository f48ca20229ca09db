"""orthogonal_ and delta_orthogonal_: orthogonality, the Haar distribution, the stream mapping,
determinism, dtypes, layouts and bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

import fastinit
from fastinit import _core, _orthogonal
from fastinit._orthogonal import delta_orthogonal_, orthogonal_

from .conftest import ISAS, bits

blas = _orthogonal.load_blas()

SENTINEL = 7.0
F16 = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def as_matrix(x: np.ndarray) -> np.ndarray:
    """torch's flattening (dim 0 by the rest), in float64, with orthonormal columns."""
    a = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    return a if a.shape[0] >= a.shape[1] else a.T


def orth_error(x: np.ndarray, gain: float = 1.0) -> float:
    a = as_matrix(x)
    return float(np.abs(a.T @ a - gain * gain * np.eye(a.shape[1])).max())


def reference(rows: int, cols: int, seed: int, float64: bool, gain: float = 1.0) -> np.ndarray:
    """gain * H_0 ... H_{N-1} [I; 0] diag(d) in float64, from the documented reflectors."""
    m, n = max(rows, cols), min(rows, cols)
    q = np.zeros((m, n))
    q[np.arange(n), np.arange(n)] = 1.0
    signs = np.empty(n)
    for j in range(n - 1, -1, -1):
        v, tau, d = blas.reflector(j, m, n, seed, 0, float64)
        v = v.astype(np.float64)
        q[j:] -= tau * np.outer(v, v @ q[j:])
        signs[j] = d
    q *= signs * gain
    return q if rows >= cols else q.T


def test_public_exports() -> None:
    assert fastinit.orthogonal_ is orthogonal_
    assert fastinit.delta_orthogonal_ is delta_orthogonal_
    assert set(_orthogonal.__all__) == {"orthogonal_", "delta_orthogonal_"}


# --------------------------------------------------------------------------------------------
# orthogonality
# --------------------------------------------------------------------------------------------

SHAPES_2D = [(1, 1), (4, 4), (7, 3), (3, 7), (1, 16), (16, 1), (100, 37), (37, 100), (257, 257)]
TOL = {"float32": 2e-6, "float64": 1e-14}


@pytest.mark.parametrize("shape", SHAPES_2D, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_orthogonal_2d(shape: tuple[int, int], dtype: str) -> None:
    x = np.full(shape, SENTINEL, dtype)
    assert orthogonal_(x, seed=3) is x
    assert orth_error(x) <= TOL[dtype]


@pytest.mark.parametrize(
    "shape", [(16, 4, 3), (4, 16, 3), (8, 3, 3, 3), (64, 3, 3, 3), (6, 5, 2, 2, 2)], ids=str
)
def test_orthogonal_conv_shapes(shape: tuple[int, ...]) -> None:
    x = np.full(shape, SENTINEL, np.float32)
    orthogonal_(x, seed=11)
    assert orth_error(x) <= TOL["float32"]


@pytest.mark.parametrize("gain", [0.5, 2.0, -1.5, math.sqrt(2)])
def test_gain(gain: float) -> None:
    x = np.empty((50, 20))
    orthogonal_(x, gain, seed=5)
    assert orth_error(x, gain) <= 1e-13
    y = orthogonal_(np.empty((50, 20)), seed=5)
    np.testing.assert_allclose(x, gain * y, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("dtype", "gain"),
    [(np.float32, 3e38), (np.float32, -3.3e38), (np.float64, 1.7e308), (np.float64, -1e308)],
)
@pytest.mark.parametrize("shape", [(64, 64), (600, 600), (300, 40), (40, 300), (5, 7, 3)])
def test_gain_near_the_largest_value(dtype: type, gain: float, shape: tuple[int, ...]) -> None:
    # The gain enters before the last reflector products, whose intermediate values then
    # overflowed (inf/NaN in up to 79% of a 600 x 600 float32 matrix); such a result is redone
    # with gain 1 and scaled once at the end, as torch scales its QR factor.
    x = orthogonal_(np.empty(shape, dtype), gain, seed=7)
    unit = orthogonal_(np.empty(shape, dtype), 1.0, seed=7)
    assert np.isfinite(x).all()
    tol = TOL["float32" if dtype is np.float32 else "float64"]
    assert np.abs(x / gain - unit).max() <= tol
    if shape in ((64, 64), (600, 600)):  # these overflowed with the gain inside (seed 7)
        assert np.array_equal(x, unit * dtype(gain))
    # The 16-bit path scales its float32 workspace before rounding: finite, the same signs.
    if dtype is np.float32:
        y = orthogonal_(np.empty(shape, ml_dtypes.bfloat16), gain, seed=7).astype(np.float64)
        assert np.isfinite(y).all() and (np.sign(y) == np.sign(unit) * np.sign(gain)).all()


def test_zero_gain_and_empty() -> None:
    x = orthogonal_(np.full((5, 3), SENTINEL), 0.0, seed=1)
    assert (x == 0).all()
    for shape in [(0, 4), (4, 0), (3, 0, 2)]:
        orthogonal_(np.empty(shape, np.float32), seed=1)  # a no-op, as in torch


def test_issue_targets_float64_1024() -> None:
    x = orthogonal_(np.empty((1024, 1024)), seed=2024)
    assert orth_error(x) <= 1e-12


@pytest.mark.slow
def test_issue_targets_float32_4096() -> None:
    # The full float64 Gram matrix costs 10^11 flops; 512 sampled columns keep it cheap.
    x = orthogonal_(np.empty((4096, 4096), np.float32), seed=2024)
    cols = np.linspace(0, 4095, 512).astype(int)
    s = x[:, cols].astype(np.float64)
    assert np.abs(s.T @ s - np.eye(512)).max() <= 1e-5
    r = x[cols].astype(np.float64)
    assert np.abs(r @ r.T - np.eye(512)).max() <= 1e-5


# --------------------------------------------------------------------------------------------
# the stream mapping and the algorithm
# --------------------------------------------------------------------------------------------


def documented_sum_of_squares(column: np.ndarray, j: int) -> float:
    """sum_{r > j} Z[r, j]^2 in double: Z[r, j] into partial sum r mod 16, then a pairwise tree."""
    lanes = [0.0] * 16
    for r in range(j + 1, len(column)):
        e = float(column[r])
        lanes[r % 16] += e * e
    for w in (8, 4, 2, 1):
        for i in range(w):
            lanes[i] = lanes[i] + lanes[i + w]
    return lanes[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reflectors_come_from_the_documented_stream_positions(dtype: str) -> None:
    # Reflector j of an M x N Q is Z[j:, j], Z the M x N matrix normal_ would write.
    m, n, seed = 37, 19, 99
    z = fastinit.normal_(np.empty((m, n), dtype), seed=seed)
    for j in (0, 1, 5, 16, n - 1):
        v, tau, d = blas.reflector(j, m, n, seed, 0, dtype == "float64")
        assert (bits(v[1:]) == bits(z[j + 1 :, j])).all()
        x0, rest = float(z[j, j]), documented_sum_of_squares(z[:, j], j)
        s = math.sqrt(x0 * x0 + rest)
        sg = 1.0 if x0 >= 0 else -1.0
        assert v[0] == np.asarray(x0 + sg * s, dtype)
        assert d == -sg
        assert tau == 2.0 / (rest + float(v[0]) * float(v[0]))


@pytest.mark.parametrize("shape", [(37, 19), (19, 37)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_phase_one_writes_the_documented_reflectors(shape: tuple[int, int], dtype: str) -> None:
    # H_1 .. H_{N-1} leave e_0 alone, so the first column of Q is H_0 e_0 d_0 = x_0 / |x_0|:
    # the first column of Z, normalized, whichever order phase 1 wrote Q in.
    m, n = max(shape), min(shape)
    z = fastinit.normal_(np.empty((m, n), dtype), seed=5)
    q = orthogonal_(np.empty(shape, dtype), seed=5)
    first = q[:, 0] if shape[0] >= shape[1] else q[0]
    col = z[:, 0].astype(np.float64)
    tol = 2e-7 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(first, col / np.linalg.norm(col), rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [(4, 4), (9, 5), (5, 9), (300, 129), (129, 300), (1, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_reference_product_of_reflectors(shape: tuple[int, int], dtype: str) -> None:
    x = orthogonal_(np.empty(shape, dtype), 1.25, seed=42)
    ref = reference(*shape, seed=42, float64=dtype == "float64", gain=1.25)
    assert np.abs(x - ref).max() <= (1e-6 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("block", [1, 2, 7, 64])
def test_block_size_does_not_change_the_matrix(block: int) -> None:
    x = np.empty((150, 70))
    blas.orthogonal(x, 1.0, 8, 0, None, 1, True, block)
    ref = reference(150, 70, 8, True)
    assert np.abs(x - ref).max() <= 1e-14


# --------------------------------------------------------------------------------------------
# Haar distribution
# --------------------------------------------------------------------------------------------

HAAR_N = 4
HAAR_SAMPLES = 20000


def haar_sample(sign_correction: bool) -> np.ndarray:
    """HAAR_SAMPLES 4 x 4 matrices from the consecutive seeds 0, 1, 2, ..."""
    out = np.empty((HAAR_SAMPLES, HAAR_N, HAAR_N), np.float64)
    if sign_correction:
        for s in range(HAAR_SAMPLES):
            orthogonal_(out[s], seed=s)
    else:
        for s in range(HAAR_SAMPLES):
            blas.orthogonal(out[s], 1.0, s, 0, None, 1, False)
    return out


def haar_checks(q: np.ndarray) -> list[str]:
    """The failed checks of Q ~ Haar(O(4)); empty if all pass."""
    failed = []
    # (Q00 + 1) / 2 ~ Beta((n-1)/2, (n-1)/2): the first coordinate of a uniform unit vector.
    a = (HAAR_N - 1) / 2
    p = stats.kstest((q[:, 0, 0] + 1) / 2, stats.beta(a, a).cdf).pvalue
    if p < 1e-3:
        failed.append(f"KS of Q00: p = {p:.3g}")
    # E tr Q = 0 and Var tr Q = 1 under Haar: the mean of 20000 has standard error 0.007.
    mean_trace = float(np.trace(q, axis1=1, axis2=2).mean())
    if abs(mean_trace) > 0.05:
        failed.append(f"mean trace {mean_trace:.3f}")
    # det = +1 and -1 equally often.
    plus = float((np.linalg.det(q) > 0).mean())
    if abs(plus - 0.5) > 0.02:
        failed.append(f"P(det = +1) = {plus:.3f}")
    return failed


def test_haar_distribution() -> None:
    q = haar_sample(True)
    assert np.abs(np.einsum("sij,sik->sjk", q, q) - np.eye(HAAR_N)).max() < 1e-14
    assert haar_checks(q) == []


def test_haar_checks_catch_a_missing_sign_correction() -> None:
    failed = haar_checks(haar_sample(False))
    assert any("KS" in f for f in failed) and any("trace" in f for f in failed)


# --------------------------------------------------------------------------------------------
# determinism, seeds, threads
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bits_and_different_seeds_differ() -> None:
    a = orthogonal_(np.empty((64, 48), np.float32), seed=123)
    b = orthogonal_(np.empty((64, 48), np.float32), seed=123)
    c = orthogonal_(np.empty((64, 48), np.float32), seed=124)
    assert (bits(a) == bits(b)).all()
    assert not np.allclose(a, c)


def test_generator_streams() -> None:
    g = fastinit.Generator(77)
    a = orthogonal_(np.empty((20, 20)), seed=g)
    b = orthogonal_(np.empty((20, 20)), seed=g)
    assert g.stream == 2 and not np.allclose(a, b)
    g2 = fastinit.Generator(77)
    assert (orthogonal_(np.empty((20, 20)), seed=g2) == a).all()
    assert (orthogonal_(np.empty((20, 20)), seed=g2) == b).all()
    fastinit.manual_seed(5)
    c = orthogonal_(np.empty((20, 20)))
    fastinit.manual_seed(5)
    assert (orthogonal_(np.empty((20, 20))) == c).all()


@pytest.mark.parametrize("shape", [(700, 300), (300, 700)])
def test_thread_counts(shape: tuple[int, int]) -> None:
    before = fastinit.get_num_threads()
    try:
        runs = {}
        for t in (1, 2, 3):
            fastinit.set_num_threads(t)
            first = orthogonal_(np.empty(shape, np.float32), seed=9)
            again = orthogonal_(np.empty(shape, np.float32), seed=9)
            assert (bits(first) == bits(again)).all(), f"{t} threads not reproducible"
            assert blas.get_num_threads() == t  # OpenBLAS follows fastinit's count
            runs[t] = first
        # Across thread counts only the BLAS rounding may differ.
        for t in (2, 3):
            np.testing.assert_allclose(runs[t], runs[1], rtol=0, atol=2e-6)
    finally:
        fastinit.set_num_threads(before)


def test_every_simd_path_gives_the_same_bits() -> None:
    before = _core.get_isa()
    try:
        results = []
        for isa in ISAS:
            _core.set_isa(isa)  # one kernel set per process: _blas uses _core's
            results.append(orthogonal_(np.empty((90, 40), np.float32), seed=4))
        for r in results[1:]:
            assert (bits(r) == bits(results[0])).all()
    finally:
        _core.set_isa(before)


# --------------------------------------------------------------------------------------------
# dtypes and layouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(F16))
@pytest.mark.parametrize("shape", [(64, 64), (100, 30), (30, 100), (16, 3, 3, 3)], ids=str)
def test_16_bit_dtypes_are_float32_rounded(name: str, shape: tuple[int, ...]) -> None:
    x = orthogonal_(np.full(shape, SENTINEL, F16[name]), 0.75, seed=31)
    ref = orthogonal_(np.empty(shape, np.float32), 0.75, seed=31).astype(F16[name])
    assert (bits(x) == bits(ref)).all()


@pytest.mark.parametrize("shape", [(40, 24), (24, 40)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_memory_layout_does_not_change_the_bits(shape: tuple[int, int], dtype: str) -> None:
    ref = orthogonal_(np.empty(shape, dtype), seed=17)
    fortran = orthogonal_(np.empty(shape, dtype, order="F"), seed=17)
    big = np.full((shape[0] + 3, 2 * shape[1]), SENTINEL, dtype)
    strided = big[1 : 1 + shape[0], ::2]  # column stride 2
    orthogonal_(strided, seed=17)
    rows = np.full((shape[0], shape[1] + 5), SENTINEL, dtype)
    orthogonal_(rows[:, : shape[1]], seed=17)  # leading dimension > cols: in place
    flipped = np.empty(shape, dtype)[::-1]  # negative row stride
    orthogonal_(flipped, seed=17)
    for y in (fortran, strided, rows[:, : shape[1]], flipped):
        assert (bits(y) == bits(ref)).all()
    assert (big[0] == SENTINEL).all() and (big[:, 1::2] == SENTINEL).all()
    assert (rows[:, shape[1] :] == SENTINEL).all()


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_transposed_shapes_give_transposed_matrices(shape: tuple[int, int]) -> None:
    a = orthogonal_(np.empty(shape), seed=6)
    b = orthogonal_(np.empty(shape[::-1]), seed=6)
    np.testing.assert_allclose(a, b.T, rtol=0, atol=1e-15)


def test_column_axis_keras_jax_rule() -> None:
    # Keras: rows = all but the last dimension, cols = the last.
    x = orthogonal_(np.empty((3, 3, 16, 32), np.float32), seed=8, column_axis=-1)
    flat = orthogonal_(np.empty((144, 32), np.float32), seed=8)
    assert (bits(x.reshape(144, 32)) == bits(flat)).all()
    # JAX: Q reshaped to the other dimensions + (ncols,), then the last axis moved back.
    y = orthogonal_(np.empty((5, 6, 7)), seed=8, column_axis=0)
    q = orthogonal_(np.empty((42, 5)), seed=8)
    assert (bits(y) == bits(np.moveaxis(q.reshape(6, 7, 5), -1, 0))).all()
    z = orthogonal_(np.empty((4, 9, 3)), seed=8, column_axis=1)
    q = orthogonal_(np.empty((12, 9)), seed=8)
    assert (bits(z) == bits(np.moveaxis(q.reshape(4, 3, 9), -1, 1))).all()


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.empty(64, 32))
    assert orthogonal_(w, seed=1) is w
    ref = orthogonal_(np.empty((64, 32), np.float32), seed=1)
    assert np.array_equal(w.detach().numpy(), ref)
    b = orthogonal_(torch.empty(32, 64, dtype=torch.bfloat16), seed=1)
    assert torch.equal(b, torch.from_numpy(ref.T.copy()).to(torch.bfloat16))
    meta = torch.empty(8, 8, device="meta")
    assert orthogonal_(meta, seed=1) is meta
    t = orthogonal_(torch.empty(10, 4, 3).transpose(0, 1), seed=2)  # a non-contiguous view
    assert orth_error(t.contiguous().numpy()) <= TOL["float32"]


# --------------------------------------------------------------------------------------------
# delta_orthogonal_
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 16, 32), (3, 3, 16, 32), (5, 4, 16, 16), (3, 3, 3, 8, 8)])
def test_delta_orthogonal(shape: tuple[int, ...]) -> None:
    x = np.full(shape, SENTINEL, np.float32)
    assert delta_orthogonal_(x, 1.5, seed=21) is x
    centre = tuple((k - 1) // 2 for k in shape[:-2])
    expected = orthogonal_(np.empty(shape[-2:], np.float32), 1.5, seed=21, column_axis=-1)
    assert (bits(x[centre]) == bits(expected)).all()
    mask = np.ones(shape, bool)
    mask[centre] = False
    assert (x[mask] == 0).all()
    # rows of the (in, out) centre are orthonormal (in <= out)
    c = x[centre].astype(np.float64)
    assert np.abs(c @ c.T - 2.25 * np.eye(shape[-2])).max() <= 1e-5


def test_delta_orthogonal_column_axis() -> None:
    x = delta_orthogonal_(np.empty((3, 8, 8)), seed=3, column_axis=-2)
    expected = orthogonal_(np.empty((8, 8)), seed=3, column_axis=0)
    assert (bits(x[1]) == bits(expected)).all()


@pytest.mark.parametrize(
    ("shape", "kw", "exc", "match"),
    [
        ((8, 8), {}, ValueError, "3D, 4D or 5D"),
        ((2, 2, 2, 2, 2, 2), {}, ValueError, "3D, 4D or 5D"),
        ((3, 16, 8), {}, ValueError, "fan_in"),
        ((3, 8, 8), {"column_axis": 2}, ValueError, "column_axis"),
        ((3, 8, 8), {"gain": math.nan}, ValueError, "NaN"),
    ],
)
def test_delta_orthogonal_rejects(shape, kw, exc, match) -> None:
    x = np.full(shape, SENTINEL, np.float32)
    with pytest.raises(exc, match=match):
        delta_orthogonal_(x, seed=1, **kw)
    assert (x == SENTINEL).all()


# --------------------------------------------------------------------------------------------
# bad input: a clear exception, the buffer untouched, the generator not advanced
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kw", "exc", "match"),
    [
        (lambda: np.full(8, SENTINEL, np.float32), {}, ValueError, "2 or more dimensions"),
        (lambda: np.full((), SENTINEL, np.float32), {}, ValueError, "2 or more dimensions"),
        (lambda: np.full((4, 4), 7, np.int32), {}, TypeError, "int32"),
        (lambda: np.full((4, 4), 7, np.complex64), {}, TypeError, "complex64"),
        (lambda: np.full((4, 4), SENTINEL), {"gain": math.nan}, ValueError, "NaN"),
        (lambda: np.full((4, 4), SENTINEL), {"gain": math.inf}, ValueError, "finite"),
        (lambda: np.full((4, 4), SENTINEL), {"gain": "1"}, TypeError, "gain"),
        (lambda: np.full((4, 4), SENTINEL), {"column_axis": 2}, ValueError, "column_axis"),
        (lambda: np.full((4, 4), SENTINEL), {"column_axis": True}, TypeError, "column_axis"),
        (lambda: np.full((4, 4), SENTINEL), {"column_axis": 1.0}, TypeError, "column_axis"),
    ],
)
def test_rejects_bad_input(make, kw, exc, match) -> None:
    x = make()
    g = fastinit.Generator(3)
    with pytest.raises(exc, match=match):
        orthogonal_(x, seed=g, **kw)
    assert (x == x.dtype.type(SENTINEL)).all() if x.dtype.kind == "f" else (x == 7).all()
    assert g.stream == 0


def test_rejects_read_only_and_overlapping_buffers() -> None:
    x = np.full((4, 4), SENTINEL)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        orthogonal_(x, seed=1)
    y = np.broadcast_to(np.zeros(4), (4, 4))
    with pytest.raises(ValueError):
        orthogonal_(y, seed=1)
    with pytest.raises(TypeError):
        orthogonal_([[1.0, 0.0], [0.0, 1.0]], seed=1)


IDLE_CHECK = """
import time
import numpy as np
import fastinit
from fastinit._orthogonal import orthogonal_
fastinit.set_num_threads(2)
x = np.empty((512, 512), np.float32)
idle = []
for _ in range(3):
    orthogonal_(x, seed=1)
    t = time.process_time()
    time.sleep(0.1)
    idle.append(time.process_time() - t)
print(min(idle))
"""


def test_openblas_workers_sleep_after_a_call() -> None:
    # OpenBLAS's idle workers would otherwise busy-wait ~0.1 s after every call, taking a core
    # from whatever runs next (fastinit's own OpenMP phases included).
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", IDLE_CHECK], env=env, capture_output=True, text=True, check=True
    )
    assert float(out.stdout) < 0.02


def test_blas_info_and_thread_hook() -> None:
    info = _orthogonal.blas_info()
    assert info["name"] == "scipy-openblas32"
    assert info["version"] and isinstance(info["threads"], int)
    before = blas.get_num_threads()
    try:
        _orthogonal.sync_blas_threads(1)
        assert blas.get_num_threads() == 1
    finally:
        _orthogonal.sync_blas_threads(before)
