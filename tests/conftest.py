"""Shared fixtures: every kernel set the CPU supports, and the float dtypes."""

from __future__ import annotations

from collections.abc import Iterator

import ml_dtypes
import numpy as np
import pytest

from fastinit import _core

ISAS = list(_core.supported_isas())
DTYPES = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
BITS = {8: np.uint64, 4: np.uint32, 2: np.uint16}


def bits(x: np.ndarray) -> np.ndarray:
    """The raw bit patterns of a float array (so that comparisons are bit for bit)."""
    return np.ascontiguousarray(x).view(BITS[x.dtype.itemsize])


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each compiled kernel set this CPU supports."""
    before = _core.get_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


@pytest.fixture(params=list(DTYPES))
def dtype(request: pytest.FixtureRequest) -> np.dtype:
    return DTYPES[request.param]
