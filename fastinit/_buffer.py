"""Targets: what a fill writes into, and the native backend that writes it.

:class:`Target` turns a user's buffer (a NumPy array, or any ``__dlpack__`` producer: torch
tensors and Parameters, CuPy arrays) into a handle for the native kernels plus its backend:
``fastinit._core`` for CPU memory, a :class:`CudaBackend` for CUDA memory. Both offer the
same protocol, ``fill``, ``constant`` and ``scatter_constant`` with ``fastinit._core``'s
signatures, so the fills above never ask where a buffer lives.

The CUDA path loads ``fastinit._cuda`` when the first CUDA buffer arrives, so that
``import fastinit`` needs no CUDA library, and binds it to the buffer's device and stream.

Streams (the DLPack consumer protocol): fastinit launches its kernels on the stream that the
buffer's framework is using, and passes that stream to the producer's
``__dlpack__(stream=...)``, so the fill is ordered after the work already queued for the
buffer and before whatever the program queues next on that stream. Launches are
asynchronous, exactly like the framework's own operations.

- torch tensors: ``torch.cuda.current_stream(device)``;
- CuPy arrays: ``cupy.cuda.get_current_stream()`` on the array's device;
- any other producer: the legacy default stream (DLPack's ``1``), which orders with every
  blocking stream of the device.

Orthogonal initialization on CUDA goes through torch (``fastinit._orthogonal``), launched in
:meth:`CudaBackend.torch_context`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core

__all__ = [
    "CPU_DEVICES",
    "CUDA_DEVICE",
    "LEGACY_DEFAULT_STREAM",
    "CudaBackend",
    "Target",
    "consumer_stream",
    "cuda_backend",
    "cuda_module",
    "dtype_name",
    "export_dlpack",
    "is_torch_tensor",
    "shape_of",
]

#: DLPack device types that fastinit's CPU kernels can write (CPU, CUDA host, CUDA managed),
#: as the native core declares them (csrc/include/fastinit/dlpack.hpp).
CPU_DEVICES: tuple[int, ...] = _core.DLPACK_HOST_DEVICES
#: DLPack's device type of CUDA device memory.
CUDA_DEVICE: int = _core.DLPACK_CUDA

#: DLPack's integer for the legacy default stream (``0`` is reserved for CUDA).
LEGACY_DEFAULT_STREAM = 1

_usable_devices: set[int] = set()
_lock = threading.Lock()


def _reason(exc: BaseException) -> str:
    return str(exc).removeprefix("fastinit: ")


def cuda_module(device_id: int | None = None) -> Any:
    """The ``fastinit._cuda`` module, checked against ``device_id`` when one is given.

    Raises
    ------
    BufferError
        This build has no CUDA module, there is no usable CUDA driver, the device does not
        exist, or the build has no code for its compute capability. The message says which.
    """
    try:
        from . import _cuda
    except ImportError as exc:
        raise BufferError(
            "fastinit: this buffer lives on a CUDA device, but this build of fastinit has no "
            f"CUDA module (build with FASTINIT_CUDA=ON; see fastinit.config()): {exc}"
        ) from None
    if device_id is not None and device_id not in _usable_devices:
        try:
            _cuda.check_device(device_id)
        except RuntimeError as exc:
            raise BufferError(
                f"fastinit: cannot fill a buffer on CUDA device {device_id}: {_reason(exc)}"
            ) from None
        with _lock:
            _usable_devices.add(device_id)
    return _cuda


def consumer_stream(x: Any, device_id: int) -> int:
    """The stream fastinit launches on for the CUDA buffer ``x``, as the integer that
    DLPack's ``__dlpack__(stream=...)`` takes (``1``: legacy default, ``2``: per-thread
    default, otherwise a ``cudaStream_t``)."""
    module = type(x).__module__
    handle = LEGACY_DEFAULT_STREAM
    if module.startswith("torch"):
        import torch

        handle = int(torch.cuda.current_stream(device_id).cuda_stream)
    elif module.startswith("cupy"):
        import cupy

        with cupy.cuda.Device(device_id):
            handle = int(cupy.cuda.get_current_stream().ptr)
    # Frameworks report their legacy default stream as the null handle 0.
    return handle if handle != 0 else LEGACY_DEFAULT_STREAM


class CudaBackend:
    """``fastinit._cuda`` bound to one device and stream, with the ``fill``, ``constant`` and
    ``scatter_constant`` signatures of ``fastinit._core`` (the backend protocol).

    Attributes
    ----------
    device_id : int
        The CUDA device of the buffer.
    dlpack_stream : int
        The stream to pass to the producer's ``__dlpack__(stream=...)`` and to launch on.
    """

    __slots__ = ("device_id", "dlpack_stream", "module")

    def __init__(self, module: Any, device_id: int, dlpack_stream: int) -> None:
        self.module = module
        self.device_id = device_id
        self.dlpack_stream = dlpack_stream

    def fill(
        self,
        target: Any,
        dist: str,
        params: Any,
        key: int | Callable[[], int],
        stream: int,
        global_shape: Any = None,
        global_offset: Any = None,
    ) -> None:
        """Launch a random fill (``stream`` is the Philox stream, not a CUDA stream)."""
        self.module.fill(
            target,
            dist,
            params,
            key,
            stream,
            global_shape,
            global_offset,
            cuda_stream=self.dlpack_stream,
        )

    def constant(
        self, target: Any, value: float, global_shape: Any = None, global_offset: Any = None
    ) -> None:
        """Launch a constant fill (the shard keywords are only validated)."""
        self.module.constant(
            target, value, global_shape, global_offset, cuda_stream=self.dlpack_stream
        )

    def as_torch(self, target: Any, what: str) -> tuple[Any, Any]:
        """``(torch, tensor)``: the capsule ``target`` as a torch tensor, for the operations
        that run through torch's linear algebra (``what`` names the caller in errors)."""
        try:
            import torch
        except ImportError:
            raise BufferError(
                f"fastinit: {what} on CUDA buffers uses torch.linalg.householder_product; "
                "install torch with CUDA support"
            ) from None
        t = torch.from_dlpack(target)
        if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(
                f"fastinit: unsupported dtype {str(t.dtype).removeprefix('torch.')}; "
                "expected float32, float64, float16 or bfloat16"
            )
        return torch, t

    def torch_context(self, torch: Any) -> Any:
        """A context manager that makes torch run on this buffer's device and stream."""
        import contextlib

        if self.dlpack_stream == LEGACY_DEFAULT_STREAM:
            stream = torch.cuda.default_stream(self.device_id)
        else:
            stream = torch.cuda.ExternalStream(self.dlpack_stream, device=self.device_id)
        stack = contextlib.ExitStack()
        stack.enter_context(torch.cuda.device(self.device_id))
        stack.enter_context(torch.cuda.stream(stream))
        return stack

    def scatter_constant(
        self,
        target: Any,
        value: float,
        indices: Any,
        global_shape: Any = None,
        global_offset: Any = None,
    ) -> None:
        """Write ``value`` at the global flat ``indices`` that fall inside the shard."""
        self.module.scatter_constant(
            target, value, indices, global_shape, global_offset, cuda_stream=self.dlpack_stream
        )


def cuda_backend(x: Any, device_id: int) -> CudaBackend:
    """The backend that fills the CUDA buffer ``x`` on device ``device_id``.

    Raises
    ------
    BufferError
        CUDA is unavailable for this device (see :func:`cuda_module`).
    """
    return CudaBackend(cuda_module(device_id), device_id, consumer_stream(x, device_id))


# ----------------------------------------------------------------------------- targets


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked without importing torch)."""
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach") and hasattr(x, "is_meta")


def _is_fake(x: Any) -> bool:
    # Imports nothing: without torch's fake-tensor module loaded there is no FakeTensor.
    mod = sys.modules.get("torch._subclasses.fake_tensor")
    cls = getattr(mod, "FakeTensor", None) if mod is not None else None
    return cls is not None and isinstance(x, cls)


def _has_storage(x: Any) -> bool:
    """Whether the torch tensor ``x`` has memory behind it (functional and other wrapper
    tensors have none: their data pointer is NULL or cannot be read)."""
    try:
        return int(x.data_ptr()) != 0 or x.numel() == 0
    except RuntimeError:
        return False


def _is_dtensor(x: Any) -> bool:
    # Imports nothing: without torch.distributed.tensor loaded there is no DTensor.
    mod = sys.modules.get("torch.distributed.tensor")
    cls = getattr(mod, "DTensor", None) if mod is not None else None
    return cls is not None and isinstance(x, cls)


def shape_of(x: Any) -> tuple[int, ...]:
    """The shape of an array-like buffer as a tuple of ints."""
    return tuple(int(s) for s in x.shape)


def dtype_name(x: Any) -> str:
    """The buffer's dtype as 'float32', 'float64', 'float16', 'bfloat16' or another name."""
    dt = x.dtype
    name = getattr(dt, "name", None)
    if isinstance(name, str):
        return name
    return str(dt).removeprefix("torch.")


class Target:
    """A buffer ready for the native kernels: a NumPy array, or a fresh DLPack capsule.

    Attributes
    ----------
    handle : numpy.ndarray or PyCapsule
        What the backend's functions take.
    backend : module or CudaBackend
        The native module whose ``fill``/``constant``/``scatter_constant`` write this buffer.
    device : tuple of int
        The DLPack ``(device_type, device_id)``.
    skip : bool
        Set for buffers with no storage to fill (torch meta and fake tensors: a no-op, as
        torch's in-place ops on them).

    Raises
    ------
    TypeError
        ``x`` is neither a NumPy array nor a DLPack producer.
    BufferError
        ``x`` lives on a device fastinit cannot write (or CUDA is unavailable for it).
    """

    __slots__ = ("backend", "device", "handle", "negated", "skip", "tensor")

    def __init__(self, x: Any) -> None:
        self.skip = False
        self.device = (1, 0)
        self.backend: Any = _core
        self.tensor: Any = None  # a torch tensor: its detached alias, for finish()
        self.negated = False
        if isinstance(x, np.ndarray):
            self.handle: Any = x
            return
        if is_torch_tensor(x):
            if x.is_meta or _is_fake(x):
                self.skip = True
                self.handle = None
                return
            if _is_dtensor(x):
                # A DTensor exports a capsule, but its data is the local shard: filling it
                # as the global shape would write out of bounds.
                raise TypeError(
                    "fastinit: cannot fill a DTensor directly; use fastinit.torch's "
                    "initializers, which fill each rank's shard"
                )
            if x.layout != sys.modules["torch"].strided or x.is_nested:
                raise TypeError(
                    f"fastinit: cannot fill a tensor with layout {x.layout}"
                    f"{' (nested)' if x.is_nested else ''} in place; fastinit writes dense "
                    "(strided) buffers"
                )
            if not _has_storage(x):
                raise BufferError(
                    f"fastinit: this {type(x).__name__} has no storage to write (a functional "
                    "or wrapper tensor); fill the tensor it wraps"
                )
            if x.is_conj():
                raise TypeError(
                    "fastinit: cannot fill a tensor with its conjugate bit set (complex "
                    "dtypes are not supported)"
                )
            # A Parameter (or any tensor requiring grad) cannot be exported; its detached
            # alias shares the storage (and the version counter), so writing through it
            # fills the original in place.
            x = x.detach()
            self.tensor = x
            # A negative view (e.g. ``c.conj().imag``) exports its memory, which holds the
            # negated values: finish() negates what was written so that the view reads the
            # values the fill defines.
            self.negated = bool(x.is_neg())
            if x.device.type == "cpu":
                # torch's C export directly (the same memory and capsule contents as
                # ``Tensor.__dlpack__``, a legacy capsule): ``__dlpack__`` and
                # ``__dlpack_device__`` are Python methods that cost ~9 us of a ~26 us call
                # on a small tensor.
                self.handle = sys.modules["torch"].utils.dlpack.to_dlpack(x)
                return
        if not hasattr(x, "__dlpack__"):
            raise TypeError(
                "fastinit: expected a NumPy array or an object implementing __dlpack__ "
                f"(torch tensor, CuPy array, ...), got {type(x).__name__}"
            )
        if hasattr(x, "__dlpack_device__"):
            dev = tuple(int(v) for v in x.__dlpack_device__())
            self.device = (dev[0], dev[1])
            if dev[0] == CUDA_DEVICE:
                # Raises a clear error where CUDA is unavailable. The producer is handed the
                # stream the kernels will run on (the DLPack consumer stream protocol).
                self.backend = cuda_backend(x, dev[1])
                self.handle = export_dlpack(x, stream=self.backend.dlpack_stream)
                return
            if dev[0] not in CPU_DEVICES:
                raise BufferError(f"fastinit: unsupported DLPack device {dev}")
        self.handle = export_dlpack(x)

    def finish(self, complete: bool = True) -> None:
        """After the native write: give a torch tensor torch's in-place semantics.

        Bumps the version counter (a tensor saved for backward that was overwritten is then
        detected by autograd, as after any in-place op) and, for a negative view, negates
        what was written. ``complete=False`` (an interrupted call): only the version bump,
        since the buffer holds a partial write.
        """
        t = self.tensor
        if t is None:
            return
        torch = sys.modules["torch"]
        if self.negated and complete:
            with torch.no_grad():
                t.neg_()  # bumps the version counter too
            return
        try:
            torch.autograd.graph.increment_version(t)
        except RuntimeError:  # inference tensors have no version counter
            pass

    def run(self, write: Any) -> None:
        """``write()`` (the native call), then :meth:`finish`; an interrupted write (a
        KeyboardInterrupt between slices) still bumps the version counter."""
        try:
            write()
        except (TypeError, ValueError, BufferError, OverflowError):
            raise  # rejected before any write
        except BaseException:
            self.finish(complete=False)
            raise
        self.finish()

    @property
    def on_cpu(self) -> bool:
        """Whether the CPU kernels write this buffer."""
        return self.device[0] in CPU_DEVICES


def export_dlpack(x: Any, stream: int | None = None) -> Any:
    """Ask the producer for a versioned capsule (DLPack >= 1.0) and fall back to the legacy one.
    ``stream``: the CUDA stream the consumer will use (device buffers only)."""
    kwargs = {} if stream is None else {"stream": stream}
    try:
        return x.__dlpack__(max_version=(1, 0), **kwargs)
    except TypeError:
        return x.__dlpack__(**kwargs)
