"""DLPack consumption: torch tensors, Parameters, and hand-written producers (legacy and
versioned capsules, the read-only flag, capsule renaming, one deleter call)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import fastinit

from .conftest import bits
from .dlpack_ctypes import (
    DELETER,
    DELETER_V,
    DLDataType,
    DLDevice,
    DLManagedTensor,
    DLManagedTensorVersioned,
    DLPackVersion,
    DLTensor,
    PyCapsule_New,
)

# ---------------------------------------------------------------- a minimal ctypes producer


PyCapsule_GetName = ctypes.pythonapi.PyCapsule_GetName
PyCapsule_GetName.restype = ctypes.c_char_p
PyCapsule_GetName.argtypes = [ctypes.py_object]

DTYPE_CODES = {"float32": (2, 32), "float64": (2, 64), "float16": (2, 16), "int32": (0, 32)}


class Producer:
    """Exports a NumPy array's memory through hand-built DLPack structs."""

    def __init__(
        self,
        array: np.ndarray,
        *,
        versioned: bool,
        read_only: bool = False,
        dtype: str | None = None,
        strides: bool = True,
        device_type: int = 1,
    ) -> None:
        self.array = array
        self.versioned = versioned
        self.read_only = read_only
        self.dtype = dtype or array.dtype.name
        self.strides = strides
        self.device_type = device_type
        self.deleted = 0
        self.capsules: list[object] = []

    def __dlpack_device__(self) -> tuple[int, int]:
        return (self.device_type, 0)

    def _tensor(self) -> DLTensor:
        a = self.array
        self._shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        self._strides = (ctypes.c_int64 * a.ndim)(*(s // a.itemsize for s in a.strides))
        code, nbits = DTYPE_CODES[self.dtype]
        return DLTensor(
            a.ctypes.data,
            DLDevice(self.device_type, 0),
            a.ndim,
            DLDataType(code, nbits, 1),
            self._shape,
            self._strides if self.strides else None,
            0,
        )

    def __dlpack__(self, *, max_version=None, stream=None, dl_device=None, copy=None):
        if self.versioned and max_version is not None and max_version[0] >= 1:

            def deleter(_ptr) -> None:
                self.deleted += 1

            self._deleter = DELETER_V(deleter)
            self._managed = DLManagedTensorVersioned(
                DLPackVersion(1, 0), None, self._deleter, 1 if self.read_only else 0, self._tensor()
            )
            cap = PyCapsule_New(ctypes.addressof(self._managed), b"dltensor_versioned", None)
        else:

            def deleter(_ptr) -> None:
                self.deleted += 1

            self._deleter = DELETER(deleter)
            self._managed = DLManagedTensor(self._tensor(), None, self._deleter)
            cap = PyCapsule_New(ctypes.addressof(self._managed), b"dltensor", None)
        self.capsules.append(cap)
        return cap


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "legacy"])
@pytest.mark.parametrize("strides", [True, False], ids=["strides", "compact"])
def test_hand_written_producer(versioned: bool, strides: bool) -> None:
    a = np.zeros((20, 30), np.float32)
    p = Producer(a, versioned=versioned, strides=strides)
    assert fastinit.normal_(p, seed=5) is p
    np.testing.assert_array_equal(
        bits(a), bits(fastinit.normal_(np.empty((20, 30), np.float32), seed=5))
    )
    assert p.deleted == 1
    name = PyCapsule_GetName(p.capsules[0])
    assert name == (b"used_dltensor_versioned" if versioned else b"used_dltensor")


def test_strided_producer_view() -> None:
    base = np.zeros((30, 20), np.float32)
    p = Producer(base.T, versioned=True)
    fastinit.uniform_(p, seed=1)
    np.testing.assert_array_equal(
        bits(base.T), bits(fastinit.uniform_(np.empty((20, 30), np.float32), seed=1))
    )


def test_read_only_flag_is_honoured() -> None:
    a = np.full(10, 3.0, np.float32)
    p = Producer(a, versioned=True, read_only=True)
    with pytest.raises(BufferError, match="read-only"):
        fastinit.uniform_(p, seed=1)
    assert (a == 3.0).all()
    assert p.deleted == 1  # consumed capsules are released even on error


def test_unsupported_dtype_releases_the_capsule() -> None:
    a = np.zeros(10, np.int32)
    p = Producer(a, versioned=True)
    with pytest.raises(TypeError, match="int32"):
        fastinit.normal_(p, seed=1)
    assert p.deleted == 1 and not a.any()


def test_bad_parameters_do_not_consume_the_producer() -> None:
    a = np.zeros(10, np.float32)
    p = Producer(a, versioned=True)
    with pytest.raises(ValueError):
        fastinit.normal_(p, std=-1.0, seed=1)
    assert not a.any()


def test_unknown_device_is_rejected_before_export() -> None:
    a = np.zeros(10, np.float32)
    p = Producer(a, versioned=True, device_type=8)  # Metal
    with pytest.raises(BufferError, match="device"):
        fastinit.normal_(p, seed=1)
    assert not a.any() and not p.capsules


def test_a_used_capsule_cannot_be_consumed_again() -> None:
    from fastinit import _core

    a = np.zeros(4, np.float32)
    p = Producer(a, versioned=False)
    cap = p.__dlpack__()
    _core.fill(cap, "normal", [0.0, 1.0], 1, 0)
    with pytest.raises(BufferError, match="consumed only once"):
        _core.fill(cap, "normal", [0.0, 1.0], 1, 0)
    assert p.deleted == 1


# ---------------------------------------------------------------- torch


def test_torch_parameter_with_requires_grad() -> None:
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.empty(64, 32))
    out = fastinit.normal_(w, std=0.02, seed=3)
    assert out is w and w.requires_grad
    ref = fastinit.normal_(np.empty((64, 32), np.float32), std=0.02, seed=3)
    np.testing.assert_array_equal(w.detach().numpy(), ref)


def test_torch_meta_tensor_is_a_no_op() -> None:
    torch = pytest.importorskip("torch")
    t = torch.empty(10, 10, device="meta")
    assert fastinit.normal_(t, seed=1) is t


@pytest.mark.parametrize("tdtype", ["float32", "float64", "float16", "bfloat16"])
def test_torch_dtypes(tdtype: str) -> None:
    torch = pytest.importorskip("torch")
    t = torch.empty(1000, dtype=getattr(torch, tdtype))
    fastinit.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, seed=2)
    f = t.double()
    assert f.min() >= -0.04 and f.max() <= 0.04 and f.std() > 0.01


def test_torch_integer_tensor_rejected() -> None:
    torch = pytest.importorskip("torch")
    t = torch.zeros(10, dtype=torch.int64)
    with pytest.raises(TypeError, match="int64"):
        fastinit.normal_(t, seed=1)
    assert not t.any()


def test_torch_channels_last_conv_weight() -> None:
    torch = pytest.importorskip("torch")
    w = torch.empty(8, 3, 5, 5).to(memory_format=torch.channels_last)
    fastinit.normal_(w, seed=4)
    ref = fastinit.normal_(torch.empty(8, 3, 5, 5), seed=4)
    assert torch.equal(w, ref)
