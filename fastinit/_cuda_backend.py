"""The CUDA path: loads ``fastinit._cuda`` when the first CUDA buffer arrives, so that
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
"""

from __future__ import annotations

import threading
from typing import Any

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
        from . import _cuda  # type: ignore[attr-defined]
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
    ``scatter_constant`` signatures of ``fastinit._core`` (what ``fastinit._fills`` calls).

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
        key: int,
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

    def constant(self, target: Any, value: float) -> None:
        """Launch a constant fill."""
        self.module.constant(target, value, cuda_stream=self.dlpack_stream)

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
