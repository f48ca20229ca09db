"""Index arithmetic at the int64 limits: rejected with ValueError/BufferError, never wrapped
(signed overflow is undefined behaviour; tools/sanitize.sh runs these under UBSan)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import fastinit
from fastinit import _core, _fills

from .test_dlpack import DELETER, DLDataType, DLDevice, DLManagedTensor, DLTensor, PyCapsule_New

BIG = 2**40


@pytest.mark.parametrize(
    ("shape", "global_shape", "global_offset"),
    [
        ((1, 1), (BIG, BIG), None),  # more than 2^63 - 1 elements
        ((1, 1, 1), (2**31, 2**31, 2**31), None),
        ((2,), (2**63 - 1,), (2**63 - 1,)),  # offset + extent past int64
        ((3, 1), (3, 2**62), (0, 2**62 - 1)),
    ],
)
def test_global_shape_beyond_int64_is_rejected(shape, global_shape, global_offset) -> None:
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=r"global_shape|does not fit"):
        fastinit.normal_(x, seed=1, global_shape=global_shape, global_offset=global_offset)
    with pytest.raises(ValueError, match=r"global_shape|does not fit"):
        _fills.scatter_constant_(
            x, 1.0, np.array([0]), global_shape=global_shape, global_offset=global_offset
        )


def test_empty_shard_of_a_huge_global_shape_is_a_no_op() -> None:
    fastinit.uniform_(np.zeros((0, 1, 1), np.float32), seed=1, global_shape=(0, BIG, BIG))


def test_scatter_far_outside_a_strided_shard_is_skipped() -> None:
    x = np.zeros((2, 8), np.float32)[:, :1]  # element strides (8, 1)
    _fills.scatter_constant_(x, 1.0, np.array([2**61 - 1]), global_shape=(2**61, 1))
    assert not x.any()


def _legacy_capsule(shape, strides):
    buf = np.zeros(16, np.float32)
    sh = (ctypes.c_int64 * len(shape))(*shape)
    st = None if strides is None else (ctypes.c_int64 * len(strides))(*strides)
    m = DLManagedTensor()
    m.dl_tensor = DLTensor(
        buf.ctypes.data, DLDevice(1, 0), len(shape), DLDataType(2, 32, 1), sh, st, 0
    )
    m.deleter = DELETER(0)
    return PyCapsule_New(ctypes.addressof(m), b"dltensor", None), (buf, sh, st, m)


@pytest.mark.parametrize(
    ("shape", "strides", "error"),
    [
        ((2, 2), (-(2**63), 1), ValueError),  # |INT64_MIN| does not exist
        ((3, 2), (2**62, 1), ValueError),  # the span passes 2^63
        ((2**32, 2**32), None, BufferError),  # more than 2^63 - 1 elements
    ],
)
def test_dlpack_extents_and_strides_beyond_int64_are_rejected(shape, strides, error) -> None:
    cap, _keep = _legacy_capsule(shape, strides)
    with pytest.raises(error):
        _core.fill(cap, "uniform", [0.0, 1.0], 1, 0)


@pytest.mark.parametrize("shape", [(2**32, 2**32, 0), (0, 2**32, 2**32)])
def test_dlpack_empty_tensor_with_huge_extents_is_a_no_op(shape) -> None:
    cap, _keep = _legacy_capsule(shape, None)
    _core.fill(cap, "uniform", [0.0, 1.0], 1, 0)
