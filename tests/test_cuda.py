"""The CUDA module (fastinit._cuda).

Three layers, so that most of it is checked where no GPU exists:

- build and import: the module is there when the build asked for it, imports without CUDA
  libraries, and reports its devices or why it cannot;
- host emulation: the CUDA kernels' work items (Philox block per thread, run layout, vector
  stores, shard arithmetic) run on the CPU and must equal the CPU kernels bit for bit, for
  every distribution, dtype and layout;
- GPU (skipped without one, with the reason): torch CUDA tensors (and CuPy arrays if
  installed) against the CPU, bit for bit; streams; constants and scatters.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastinit
from fastinit import _buffer, _core, _orthogonal

from .conftest import DTYPES, bits
from .dlpack_ctypes import DELETER, DLDataType, DLDevice, DLManagedTensor, DLTensor, PyCapsule_New

try:
    from fastinit import _cuda  # type: ignore[attr-defined]
except ImportError:
    _cuda = None

BUILD_REQUESTED = os.environ.get("FASTINIT_CUDA", "").strip().upper() in ("ON", "1", "TRUE")


def _device_count() -> tuple[int, str | None]:
    """(visible devices, why there are none)."""
    if _cuda is None:
        return 0, "fastinit was built without its CUDA module (FASTINIT_CUDA=OFF or no nvcc)"
    try:
        n = int(_cuda.device_count())
    except RuntimeError as exc:
        return 0, str(exc).removeprefix("fastinit: ")
    return n, (None if n else _cuda.unavailable_reason())


DEVICES, NO_DEVICE_REASON = _device_count()


def _torch_cuda_reason() -> str | None:
    if NO_DEVICE_REASON is not None:
        return NO_DEVICE_REASON
    try:
        import torch
    except ImportError:
        return "the GPU tests use torch CUDA tensors; torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA support or sees no GPU"
    return None


TORCH_CUDA_REASON = _torch_cuda_reason()
needs_module = pytest.mark.skipif(_cuda is None, reason="fastinit was built without CUDA")


def needs_gpu(test: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a GPU test (`gpu`: conftest reports all their skips as one line) and skips it
    where there is no usable GPU."""
    skip = pytest.mark.skipif(TORCH_CUDA_REASON is not None, reason=str(TORCH_CUDA_REASON))
    return pytest.mark.gpu(skip(test))


needs_no_device = pytest.mark.skipif(
    DEVICES > 0, reason="checks the error path of a machine without a usable GPU"
)

# ---------------------------------------------------------------- the cases

#: (dist, parameters as fastinit._core.fill takes them)
DISTS = {
    "uniform": ("uniform", (-1.5, 2.0)),
    "normal": ("normal", (0.3, 1.7)),
    "trunc_normal": ("trunc_normal", (0.0, 1.0, -2.0, 1.5)),
    "trunc_normal_tail": ("trunc_normal", (0.0, 1.0, 5.0, 6.0)),
}

#: Layouts: alloc(shape) -> (the buffer to fill, shard keywords). alloc returns a zeroed
#: contiguous array (NumPy or torch), so views are taken the same way in both libraries.
Alloc = Callable[[tuple[int, ...]], Any]
LAYOUTS: dict[str, Callable[[Alloc], tuple[Any, dict[str, Any]]]] = {
    "scalar": lambda a: (a(()), {}),
    "empty": lambda a: (a((0, 5)), {}),
    "odd-1d": lambda a: (a((1001,)), {}),
    "matrix": lambda a: (a((64, 33)), {}),
    "4d": lambda a: (a((3, 4, 5, 6)), {}),
    "row-shard": lambda a: (a((10, 29)), {"global_shape": (37, 29), "global_offset": (3, 0)}),
    "column-shard": lambda a: (a((37, 7)), {"global_shape": (37, 29), "global_offset": (0, 5)}),
    "one-column-shard": lambda a: (a((9, 1)), {"global_shape": (37, 29), "global_offset": (4, 6)}),
    "one-row-shard": lambda a: (a((1, 9)), {"global_shape": (37, 29), "global_offset": (4, 6)}),
    "inner-block-shard": lambda a: (
        a((11, 13)),
        {"global_shape": (37, 29), "global_offset": (2, 3)},
    ),
    "3d-shard": lambda a: (a((2, 5, 3)), {"global_shape": (4, 9, 7), "global_offset": (1, 2, 3)}),
    "transposed": lambda a: (a((40, 30)).T[:, 2:], {}),
    "misaligned": lambda a: (a((1001,))[1:], {}),
    "step-3": lambda a: (a((3000,))[::3], {}),
    "3d-slice": lambda a: (a((6, 7, 8))[1:5, ::2, 3:], {}),
    # Global indices above 2^32 elements: the high word of the Philox counter.
    "offset-2^34": lambda a: (
        a((1000,)),
        {"global_shape": (2**34,), "global_offset": (2**34 - 1003,)},
    ),
    "transposed-shard": lambda a: (
        a((13, 11)).T,
        {"global_shape": (30, 20), "global_offset": (5, 7)},
    ),
}

KEY, STREAM = 0x0123_4567_89AB_CDEF, 2**40 + 3


def _numpy_alloc(dtype: np.dtype) -> Alloc:
    return lambda shape: np.zeros(shape, dtype)


# ---------------------------------------------------------------- build and import


def test_module_present_when_the_build_asked_for_it() -> None:
    found = importlib.util.find_spec("fastinit._cuda") is not None
    if BUILD_REQUESTED:
        assert found, "FASTINIT_CUDA=ON, but fastinit._cuda was not built"
    elif not found:
        pytest.skip(
            "fastinit was built without its CUDA module (set FASTINIT_CUDA=ON to require it)"
        )


@needs_module
def test_module_reports_its_build() -> None:
    assert _cuda.runtime_version() >= 11080  # the static cudart linked in, e.g. 13000
    archs = _cuda.architectures().split()
    assert archs, "no CUDA architectures recorded"
    for arch in archs:
        number, _, kind = arch.partition("-")
        assert number.isdigit() and kind in ("", "real", "virtual"), arch
    # A PTX target keeps devices newer than every SASS target working (JIT compilation).
    assert any(a.endswith("-virtual") or "-" not in a for a in archs), archs


@needs_module
def test_device_count_or_a_reason() -> None:
    info = fastinit.config()["cuda"]
    assert info["built"] is True
    try:
        n = _cuda.device_count()
    except RuntimeError as exc:
        assert "driver" in str(exc), str(exc)
        assert info["devices"] == 0 and info["available"] is False
        assert "driver" in info["error"]
        return
    assert isinstance(n, int) and n >= 0
    assert info["devices"] == n and info["available"] is (n > 0)


@needs_module
@pytest.mark.parametrize(
    ("no_device_error", "driver", "runtime", "cause", "absent"),
    [
        (False, 0, 13000, "no CUDA driver: libcuda.so.1 could not be loaded", "too old"),
        (False, 12040, 13000, "the CUDA driver is too old: it supports CUDA 12.4", "libcuda"),
        (True, 13000, 13000, "no CUDA device: the driver (CUDA 13.0) sees no GPU", "driver:"),
        (False, 13000, 13000, "CUDA is unavailable: some error", "driver"),
    ],
    ids=["no-driver", "driver-too-old", "no-device", "other"],
)
def test_one_message_per_cause(
    no_device_error: bool, driver: int, runtime: int, cause: str, absent: str
) -> None:
    # The runtime reports a missing libcuda.so.1 as "insufficient driver": the message must
    # name the one real cause, and only the unknown case carries the runtime's error text.
    msg = _cuda._unavailable_message(no_device_error, driver, runtime, "some error")
    assert msg.startswith(cause), msg
    assert absent not in msg and "insufficient" not in msg, msg
    if cause.startswith(("no CUDA driver", "the CUDA driver")):
        assert "built with CUDA 13.0" in msg, msg


@needs_module
@needs_no_device
def test_this_machine_gets_one_cause() -> None:
    reason = _cuda.unavailable_reason()
    causes = ["no CUDA driver:", "the CUDA driver is too old:", "no CUDA device:"]
    assert sum(reason.startswith(c) for c in causes) == 1 or reason.startswith("CUDA is"), reason
    assert "insufficient" not in reason, reason
    if _cuda.driver_version() == 0:
        assert reason.startswith("no CUDA driver:"), reason
        with pytest.raises(RuntimeError) as info:
            _cuda.device_count()
        assert str(info.value) == "fastinit: " + reason
    assert fastinit.config()["cuda"]["error"].removeprefix("fastinit: ") == reason


def test_module_is_not_imported_by_import_fastinit() -> None:
    import subprocess

    code = "import sys, fastinit; print('fastinit._cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_cuda_build_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The import fails as it does in a build without the module.
    monkeypatch.setitem(sys.modules, "fastinit._cuda", None)
    monkeypatch.delattr(fastinit, "_cuda", raising=False)
    with pytest.raises(BufferError, match="no CUDA module"):
        _buffer.cuda_module(0)


# ---------------------------------------------------------------- a hand-written producer


class FakeCudaArray:
    """Claims to live on CUDA device 0 (DLPack device type 2) but exports host memory, so
    it may only reach code that fails before touching the memory. Records every
    ``__dlpack__`` call."""

    def __init__(self, array: np.ndarray, *, dtype_code: tuple[int, int] = (2, 32)) -> None:
        self.array = array
        self.dtype_code = dtype_code
        self.calls: list[dict[str, Any]] = []
        self.deleted = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)

    def __dlpack__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        a = self.array
        self._shape = (ctypes.c_int64 * a.ndim)(*a.shape)

        def deleter(_ptr: Any) -> None:
            self.deleted += 1

        self._deleter = DELETER(deleter)
        tensor = DLTensor(
            a.ctypes.data,
            DLDevice(2, 0),
            a.ndim,
            DLDataType(*self.dtype_code, 1),
            self._shape,
            None,
            0,
        )
        self._managed = DLManagedTensor(tensor, None, self._deleter)
        return PyCapsule_New(ctypes.addressof(self._managed), b"dltensor", None)


@needs_no_device
def test_cuda_buffer_without_a_device_is_a_clear_error() -> None:
    fake = FakeCudaArray(np.zeros(16, np.float32))
    for call in (
        lambda: fastinit.normal_(fake, seed=1),
        lambda: fastinit.zeros_(fake),
        lambda: fastinit.eye_(FakeCudaArray(np.zeros((4, 4), np.float32))),
    ):
        with pytest.raises(BufferError, match="CUDA") as info:
            call()
        if _cuda is not None:
            assert "device 0" in str(info.value) and NO_DEVICE_REASON is not None
    assert fake.calls == [], "the producer was asked for its memory before the check"


@needs_module
def test_the_module_checks_before_any_cuda_call() -> None:
    # All of these fail before a device is touched, with or without a GPU.
    fake = FakeCudaArray(np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="std"):
        _cuda.fill(fake.__dlpack__(), "normal", (0.0, -1.0), 1, 0)
    with pytest.raises(ValueError, match="does not fit"):
        _cuda.fill(fake.__dlpack__(), "normal", (0.0, 1.0), 1, 0, (8,), (0,))
    with pytest.raises(TypeError, match="int32"):
        _cuda.fill(
            FakeCudaArray(np.zeros(4, np.int32), dtype_code=(0, 32)).__dlpack__(),
            "uniform",
            (0.0, 1.0),
            1,
            0,
        )
    with pytest.raises(BufferError, match="CUDA device memory only"):
        _cuda.constant(np.zeros(4, np.float32), 1.0)
    with pytest.raises(BufferError, match="CPU memory only"):
        _cuda._emulate_fill(fake.__dlpack__(), "uniform", (0.0, 1.0), 1, 0)
    assert fake.deleted == 3  # every capsule taken is returned exactly once
    assert not fake.array.any()


# ---------------------------------------------------------------- host emulation


@needs_module
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_emulated_kernels_equal_the_cpu(dtype_name: str, dist: str, layout: str) -> None:
    dtype = DTYPES[dtype_name]
    name, params = DISTS[dist]
    x, shard = LAYOUTS[layout](_numpy_alloc(dtype))
    gs, go = shard.get("global_shape"), shard.get("global_offset")
    expected = np.zeros(x.shape, dtype)  # a strided view gets its logical positions' values
    _core.fill(expected, name, params, KEY, STREAM, gs, go)
    _cuda._emulate_fill(x, name, params, KEY, STREAM, gs, go)
    np.testing.assert_array_equal(bits(x), bits(expected))


@needs_module
@pytest.mark.parametrize("layout", ["odd-1d", "matrix", "misaligned", "transposed", "3d-slice"])
@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 1 / 3], ids=["0", "1", "-2.5", "third"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_emulated_constant_equals_the_cpu(dtype_name: str, value: float, layout: str) -> None:
    dtype = DTYPES[dtype_name]
    x, _ = LAYOUTS[layout](lambda s: np.full(s, 7, dtype))
    expected, _ = LAYOUTS[layout](lambda s: np.full(s, 7, dtype))
    _core.constant(expected, value)
    _cuda._emulate_constant(x, value)
    np.testing.assert_array_equal(bits(x), bits(expected))


@needs_module
def test_emulated_kernels_leave_the_rest_alone() -> None:
    base = np.full((40, 30), 7.0, np.float32)
    _cuda._emulate_fill(base[3:17, 5:9], "normal", (0.0, 1.0), 1, 0)
    inside = np.zeros((40, 30), bool)
    inside[3:17, 5:9] = True
    assert (base[~inside] == 7.0).all()
    assert (base[inside] != 7.0).all()


# ---------------------------------------------------------------- on a GPU (torch)


def _torch_alloc(device: str, dtype_name: str) -> Alloc:
    import torch

    dt = getattr(torch, dtype_name)
    return lambda shape: torch.zeros(shape, dtype=dt, device=device)


def _torch_bits(t: Any) -> np.ndarray:
    import torch

    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().cpu().view(ints).numpy()


def _public_fill(x: Any, dist: str, params: tuple[float, ...], shard: dict[str, Any]) -> None:
    g = fastinit.Generator(KEY)
    g.set_state((KEY, STREAM))
    if dist == "uniform":
        fastinit.uniform_(x, *params, seed=g, **shard)
    elif dist == "normal":
        fastinit.normal_(x, *params, seed=g, **shard)
    else:
        fastinit.trunc_normal_(x, *params, seed=g, **shard)


@needs_gpu
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_gpu_equals_cpu(dtype_name: str, dist: str, layout: str) -> None:
    import torch

    name, params = DISTS[dist]
    x, shard = LAYOUTS[layout](_torch_alloc("cuda", dtype_name))
    expected = torch.zeros(tuple(x.shape), dtype=x.dtype)
    _public_fill(expected, name, params, shard)
    _public_fill(x, name, params, shard)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(_torch_bits(x), _torch_bits(expected))


@needs_gpu
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_gpu_writes_only_its_view(dtype_name: str) -> None:
    import torch

    base = torch.full((40, 30), 7.0, dtype=getattr(torch, dtype_name), device="cuda")
    fastinit.normal_(base[3:17, 5:9], seed=1)
    torch.cuda.synchronize()
    inside = torch.zeros((40, 30), dtype=torch.bool, device="cuda")
    inside[3:17, 5:9] = True
    assert bool((base[~inside] == 7.0).all())
    assert bool((base[inside] != 7.0).all())


@needs_gpu
@pytest.mark.parametrize("layout", ["odd-1d", "matrix", "misaligned", "transposed", "3d-slice"])
@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 1 / 3], ids=["0", "1", "-2.5", "third"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_gpu_constant_equals_cpu(dtype_name: str, value: float, layout: str) -> None:
    import torch

    x, _ = LAYOUTS[layout](_torch_alloc("cuda", dtype_name))
    x.fill_(7.0)
    expected = torch.full(tuple(x.shape), 7.0, dtype=x.dtype)
    fastinit.constant_(expected, value)
    fastinit.constant_(x, value)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(_torch_bits(x), _torch_bits(expected))


@needs_gpu
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_gpu_eye_and_dirac_equal_cpu(dtype_name: str) -> None:
    import torch

    dt = getattr(torch, dtype_name)
    for make, fill in (
        (lambda dev: torch.empty((37, 29), dtype=dt, device=dev), fastinit.eye_),
        (lambda dev: torch.empty((8, 4, 3, 3), dtype=dt, device=dev), fastinit.dirac_),
    ):
        x, expected = make("cuda"), make("cpu")
        fill(x)
        fill(expected)
        torch.cuda.synchronize()
        np.testing.assert_array_equal(_torch_bits(x), _torch_bits(expected))
    shard = {"global_shape": (37, 29), "global_offset": (5, 3)}
    x = torch.empty((11, 13), dtype=dt, device="cuda")
    expected = torch.empty((11, 13), dtype=dt)
    fastinit.eye_(x, **shard)
    fastinit.eye_(expected, **shard)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(_torch_bits(x), _torch_bits(expected))


@needs_gpu
def test_gpu_fill_is_ordered_on_the_current_stream() -> None:
    import torch

    n = 1 << 24
    expected = torch.empty(n)
    fastinit.normal_(expected, seed=5)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.empty(n, device="cuda")
        fastinit.normal_(x, seed=5)
        y = x.clone()  # queued right behind the fill on the same stream; no synchronization
    side.synchronize()
    np.testing.assert_array_equal(_torch_bits(y), _torch_bits(expected))


@needs_gpu
def test_gpu_parameter_and_generator_streams() -> None:
    import torch

    p = torch.nn.Parameter(torch.empty(100, 7, device="cuda"))
    q = torch.empty(100, 7)
    g1, g2 = fastinit.Generator(3), fastinit.Generator(3)
    for _ in range(3):
        fastinit.uniform_(p, -1.0, 1.0, seed=g1)
        fastinit.uniform_(q, -1.0, 1.0, seed=g2)
        torch.cuda.synchronize()
        np.testing.assert_array_equal(_torch_bits(p), _torch_bits(q))
    assert p.requires_grad and g1.stream == g2.stream == 3


@needs_gpu
def test_gpu_generic_producer_gets_the_legacy_stream() -> None:
    # An int32 buffer fails its dtype check after the export, before any launch.
    fake = FakeCudaArray(np.zeros(4, np.int32), dtype_code=(0, 32))
    with pytest.raises(TypeError, match="int32"):
        fastinit.uniform_(fake, seed=1)
    assert fake.calls and fake.calls[0]["stream"] == _buffer.LEGACY_DEFAULT_STREAM


@needs_gpu
def test_gpu_device_info() -> None:
    info = _cuda.device_info(0)
    assert info["has_code"], f"no kernel image for {info}"
    assert info["multiprocessors"] > 0 and info["total_memory"] > 0


@needs_gpu
@pytest.mark.slow
def test_gpu_more_than_2_31_elements() -> None:
    import torch

    n = 2**31 + 4099
    x = torch.empty(n, dtype=torch.float16, device="cuda")
    fastinit.normal_(x, seed=11)
    for start in (0, 2**31 - 2050, n - 1000):
        expected = torch.empty(1000, dtype=torch.float16)
        fastinit.normal_(expected, seed=11, global_shape=(n,), global_offset=(start,))
        np.testing.assert_array_equal(_torch_bits(x[start : start + 1000]), _torch_bits(expected))


# ---------------------------------------------------------------- on a GPU (CuPy)


@needs_gpu
@pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16"])
def test_gpu_cupy_equals_cpu(dtype_name: str) -> None:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    x = cupy.zeros((257, 33), dtype=dtype_name)
    expected = np.zeros((257, 33), dtype=dtype_name)
    fastinit.normal_(x, 0.5, 2.0, seed=9)
    fastinit.normal_(expected, 0.5, 2.0, seed=9)
    np.testing.assert_array_equal(bits(cupy.asnumpy(x)), bits(expected))


# ---------------------------------------------------------------- orthogonal through torch

ORTHO_CASES = [
    ((64, 32), None),
    ((32, 64), None),
    ((50, 50), None),
    ((8, 3, 3, 3), None),
    ((3, 3, 16, 32), -1),
    ((5, 4, 6), 0),
    ((1, 7), None),
]
#: Largest |difference| from the CPU's values (rounding of two different accumulations; the
#: 16-bit results may differ by one unit in the last place).
ORTHO_ATOL = {"float32": 2e-6, "float64": 1e-13, "float16": 2e-3, "bfloat16": 1.6e-2}


def _cpu_orthogonal() -> Any:
    try:
        from fastinit._orthogonal import delta_orthogonal_, load_blas, orthogonal_

        load_blas()
    except ImportError as exc:
        pytest.skip(f"the CPU orthogonal_ is unavailable: {exc}")
    return orthogonal_, delta_orthogonal_


@pytest.mark.parametrize(("shape", "axis"), ORTHO_CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_orthogonal_through_torch_matches_cpu(
    dtype_name: str, shape: tuple[int, ...], axis: int | None
) -> None:
    # The torch path of CUDA buffers, run here on CPU tensors.
    torch = pytest.importorskip("torch", reason="the CUDA orthogonal_ goes through torch")
    orthogonal_, _ = _cpu_orthogonal()
    dt = getattr(torch, dtype_name)
    expected = torch.empty(shape, dtype=dt)
    orthogonal_(expected, 1.7, seed=123, column_axis=axis)
    got = torch.empty(shape, dtype=dt)
    _orthogonal.orthogonal_torch(got, 1.7, 123, 0, None if axis is None else axis % len(shape))
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= ORTHO_ATOL[dtype_name] * 1.7


@needs_gpu
@pytest.mark.parametrize(("shape", "axis"), [*ORTHO_CASES, ((1024, 4096), None)], ids=str)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_gpu_orthogonal_matches_cpu(
    dtype_name: str, shape: tuple[int, ...], axis: int | None
) -> None:
    import torch

    orthogonal_, _ = _cpu_orthogonal()
    dt = getattr(torch, dtype_name)
    expected = torch.empty(shape, dtype=dt)
    orthogonal_(expected, 1.7, seed=123, column_axis=axis)
    x = torch.empty(shape, dtype=dt, device="cuda")
    orthogonal_(x, 1.7, seed=123, column_axis=axis)
    diff = (x.cpu().double() - expected.double()).abs().max().item()
    assert diff <= ORTHO_ATOL[dtype_name] * 1.7
    if dtype_name == "float64":
        m = (
            x.reshape(shape[0], -1)
            if axis is None
            else x.movedim(axis, -1).reshape(-1, shape[axis])
        )
        m = m if m.shape[0] >= m.shape[1] else m.T
        gram = m.T @ m / 1.7**2
        assert (gram - torch.eye(gram.shape[0], dtype=dt, device="cuda")).abs().max() < 1e-12


@needs_gpu
def test_gpu_delta_orthogonal_matches_cpu() -> None:
    import torch

    _, delta_orthogonal_ = _cpu_orthogonal()
    expected = torch.empty((3, 3, 16, 32))
    delta_orthogonal_(expected, seed=4)
    x = torch.empty((3, 3, 16, 32), device="cuda")
    delta_orthogonal_(x, seed=4)
    assert (x.cpu() - expected).abs().max().item() <= ORTHO_ATOL["float32"]
