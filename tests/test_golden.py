"""Frozen values. The stream contract says a (seed, stream, position, distribution, dtype
class) always gives the same value: a change here is a breaking change of fastinit's output."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastinit

from .conftest import bits

GOLDEN = {
    ("uniform", "float32"): [0xBF1E4DE7, 0x3FC7BB68, 0xBE4FED40, 0x3FB1AF6A, 0x3F5CCC9A, 0xBF29C5C7, 0x3FF73B28, 0xBF428369],  # noqa: E501
    ("normal", "float32"): [0xC02BB0E1, 0xC0017A91, 0x4019FAE0, 0xC008FD56, 0x3F2C06D6, 0x401C7EE4, 0x3F6DD574, 0x3F06EA59],  # noqa: E501
    ("trunc_normal", "float32"): [0xBF65C261, 0x3F891CD4, 0xBEF971EF, 0x3F5BD164, 0x3EBAB18D, 0xBF735F78, 0x3FF5DD0A, 0xBF89B1C9],  # noqa: E501
    ("uniform", "float64"): [0xBFE3C9BCC4AE1126, 0xBFC9FDA7584E50A0, 0x3FEB999353EAC746, 0x3FFEE7651B93D7C8, 0xBFD028A95D42FAC6, 0x3FF644521769B57A, 0x3FF2273CEBA6B25A, 0x3FD61A1C8DEE5D24],  # noqa: E501
    ("normal", "float64"): [0x3FF575C18EB819A8, 0xC00BC97C0111235B, 0x3FFE7C8849CFB2B9, 0x3FFDB1A937CFD71D, 0xC0019D0CD87ABE3F, 0x4003A19C7D9D85FB, 0x3FF11B91C86E22C0, 0xBFF0C7CCA87FA658],  # noqa: E501
    ("trunc_normal", "float64"): [0xBFECB84C191FAA24, 0xBFDF2E3E08E9B508, 0x3FD75630D3F28C32, 0x3FFEBBA0F510F9DA, 0xBFE0FC23465141E1, 0x3FEB9A7716CF023B, 0x3FE342C7D7C3A2C6, 0xBFA673E1A6C149AB],  # noqa: E501
    ("uniform", "float16"): [0xB8F2, 0x3E3E, 0xB27F, 0x3D8D, 0x3AE6, 0xB94E, 0x3FBA, 0xBA14],
    ("normal", "float16"): [0xC15E, 0xC00C, 0x40D0, 0xC048, 0x3960, 0x40E4, 0x3B6F, 0x3837],
    ("trunc_normal", "float16"): [0xBB2E, 0x3C49, 0xB7CC, 0x3ADF, 0x35D6, 0xBB9B, 0x3FAF, 0xBC4E],
    ("uniform", "bfloat16"): [0xBF1E, 0x3FC8, 0xBE50, 0x3FB2, 0x3F5D, 0xBF2A, 0x3FF7, 0xBF43],
    ("normal", "bfloat16"): [0xC02C, 0xC001, 0x401A, 0xC009, 0x3F2C, 0x401C, 0x3F6E, 0x3F07],
    ("trunc_normal", "bfloat16"): [0xBF66, 0x3F89, 0xBEF9, 0x3F5C, 0x3EBB, 0xBF73, 0x3FF6, 0xBF8A],
}  # fmt: skip

NP = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}


def fill(dist: str, x: np.ndarray, **kw: object) -> np.ndarray:
    if dist == "uniform":
        return fastinit.uniform_(x, -1.0, 2.0, **kw)
    if dist == "normal":
        return fastinit.normal_(x, 0.5, 2.0, **kw)
    return fastinit.trunc_normal_(x, 0.0, 1.0, -1.5, 2.5, **kw)


@pytest.mark.parametrize("dist,dtype", list(GOLDEN))
def test_golden_values(dist: str, dtype: str, isa: str) -> None:
    x = fill(dist, np.empty(8, NP[dtype]), seed=1234)
    assert [int(v) for v in bits(x)] == GOLDEN[(dist, dtype)]


@pytest.mark.parametrize("dist", ["uniform", "normal", "trunc_normal"])
def test_generator_streams_are_the_seed_with_successive_streams(dist: str) -> None:
    g = fastinit.Generator(77)
    a = fill(dist, np.empty(100, np.float32), seed=g)
    b = fill(dist, np.empty(100, np.float32), seed=g)
    assert g.stream == 2
    assert not np.array_equal(a, b)
    # Stream 0 of a fresh generator is the pure seed=77 call.
    np.testing.assert_array_equal(bits(a), bits(fill(dist, np.empty(100, np.float32), seed=77)))
    g2 = fastinit.Generator(77)
    g2.next_stream()
    np.testing.assert_array_equal(bits(b), bits(fill(dist, np.empty(100, np.float32), seed=g2)))


def test_manual_seed_makes_default_generator_reproducible() -> None:
    fastinit.manual_seed(5)
    a = fastinit.normal_(np.empty(50, np.float32))
    b = fastinit.normal_(np.empty(50, np.float32))
    fastinit.manual_seed(5)
    np.testing.assert_array_equal(a, fastinit.normal_(np.empty(50, np.float32)))
    np.testing.assert_array_equal(b, fastinit.normal_(np.empty(50, np.float32)))


def test_rejected_call_does_not_consume_a_stream() -> None:
    g = fastinit.Generator(3)
    with pytest.raises(ValueError):
        fastinit.normal_(np.empty(4, np.float32), std=-1.0, seed=g)
    with pytest.raises(TypeError):
        fastinit.normal_(np.empty(4, np.int32), seed=g)
    assert g.stream == 0
