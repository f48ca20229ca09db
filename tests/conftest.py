"""Shared fixtures: every kernel set the CPU supports, and the float dtypes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """GPU tests (mark `gpu`) skip for one reason where there is no GPU: report them under their
    file alone, so that `pytest -ra` folds them into one line instead of one per test."""
    report = yield
    if (
        report.skipped
        and item.get_closest_marker("gpu") is not None
        and isinstance(report.longrepr, tuple)
    ):
        path, _, reason = report.longrepr
        report.longrepr = (path, None, reason)
    return report
