"""The generator itself: Random123's known answers and the word/stream layout."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import fastinit
from fastinit import _fills

KAT = Path(__file__).parent / "data" / "philox4x32_10_kat.txt"


def kat_vectors() -> list[tuple[list[int], list[int], tuple[int, ...]]]:
    rows = []
    for line in KAT.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = [int(w, 16) for w in line.split()[1:]]
        rows.append((words[0:4], words[4:6], tuple(words[6:10])))
    return rows


@pytest.mark.parametrize("counter,key,expected", kat_vectors())
def test_known_answers(counter: list[int], key: list[int], expected: tuple[int, ...]) -> None:
    assert fastinit.philox4x32(counter, key) == expected


def test_kat_file_has_the_three_vectors() -> None:
    assert len(kat_vectors()) == 3


@pytest.mark.parametrize(
    "counter,key",
    [
        ([0, 0, 0], [0, 0]),
        ([0, 0, 0, 0], [0]),
        ([1 << 32, 0, 0, 0], [0, 0]),
        ([-1, 0, 0, 0], [0, 0]),
    ],
)
def test_bad_words_rejected(counter: list[int], key: list[int]) -> None:
    with pytest.raises(ValueError):
        fastinit.philox4x32(counter, key)


def test_random_words_follow_the_counter_layout() -> None:
    seed, stream = 0x0123456789ABCDEF, (5 << 32) | 7
    words = _fills.random_words(12, seed, stream, offset=(1 << 34) - 4)
    key = [seed & 0xFFFFFFFF, seed >> 32]
    for i in range(3):
        block = ((1 << 34) - 4) // 4 + i
        ctr = [block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32]
        assert tuple(int(w) for w in words[4 * i : 4 * i + 4]) == fastinit.philox4x32(ctr, key)


def test_uniform_uses_word_i_of_block_i_over_4() -> None:
    # float32 uniform: element i = (word i >> 8) * 2^-24 for low=0, high=1.
    x = np.empty(64, np.float32)
    fastinit.uniform_(x, seed=99)
    words = _fills.random_words(64, 99, 0)
    np.testing.assert_array_equal(x, (words >> 8).astype(np.float32) * np.float32(2.0**-24))


def _round_to(v: Fraction, dtype: type[np.floating]) -> np.floating:
    """The exact rational v rounded to nearest even in dtype (no double rounding)."""
    f = dtype(float(v))
    best = f
    for g in (np.nextafter(f, dtype(-np.inf)), np.nextafter(f, dtype(np.inf))):
        d, db = abs(Fraction(float(g)) - v), abs(Fraction(float(best)) - v)
        if d < db or (
            d == db and int(g.view(np.uint32 if dtype is np.float32 else np.uint64)) % 2 == 0
        ):
            best = g
    return best


@pytest.mark.parametrize(
    ("dtype", "low", "span"),
    [
        (np.float32, -1.5, 3.7),
        (np.float32, 0.25, 2.0**-3),
        # span * 2^-24 is not a float32 (its low bit falls below the subnormals): the kernels
        # must then form u before multiplying, or the values drift by 2^-20 relative.
        (np.float32, 0.0, (1 + 2.0**-20) * 2.0**-110),
        # span * 2^-24 is exact but subnormal (flush-to-zero modes would read it as 0).
        (np.float32, 2.0**-100, 2.0**-110),
        (np.float64, -1.5, 3.7),
        (np.float64, 0.0, (1 + 2.0**-50) * 2.0**-980),
    ],
)
def test_uniform_is_one_rounding_of_u_times_span_plus_low(
    dtype: type[np.floating], low: float, span: float
) -> None:
    # The frozen mapping: y = fma(u, high - low, low) with u = i * 2^-b, one rounding of the
    # exact value (whatever the kernels do to save a multiply).
    span = float(dtype(span))
    high = low + span
    assert float(dtype(high - low)) == span
    n = 64
    x = np.empty(n, dtype)
    fastinit.uniform_(x, low, high, seed=5)
    words = _fills.random_words(2 * n, 5, 0).astype(np.uint64)
    if dtype is np.float32:
        ints = [int(w) >> 8 for w in words[:n]]
        u = [Fraction(i, 2**24) for i in ints]
    else:
        ints = [(int(words[2 * j]) << 21) | (int(words[2 * j + 1]) >> 11) for j in range(n)]
        u = [Fraction(i, 2**53) for i in ints]
    expect = np.array([_round_to(ui * Fraction(span) + Fraction(low), dtype) for ui in u], dtype)
    lo, hi = dtype(low), dtype(high)
    np.testing.assert_array_equal(x, np.clip(expect, lo, hi))
