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

Orthogonal initialization on CUDA goes through torch: the reflectors come from the same
Philox normal stream as on the CPU (generated on the device by fastinit's fill kernel), and
``torch.linalg.householder_product`` (cuSOLVER's orgqr) accumulates them. See
:func:`orthogonal_torch`.
"""

from __future__ import annotations

import math
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

    def constant(
        self, target: Any, value: float, global_shape: Any = None, global_offset: Any = None
    ) -> None:
        """Launch a constant fill (the shard keywords are only validated)."""
        self.module.constant(
            target, value, global_shape, global_offset, cuda_stream=self.dlpack_stream
        )

    def orthogonal(
        self, target: Any, gain: float, key: int, stream: int, column_axis: Any, threads: int
    ) -> None:
        """``fastinit.orthogonal_`` of the capsule ``target`` (see :func:`orthogonal_torch`)."""
        torch, t = self._as_torch(target, "orthogonal_")
        with torch.cuda.device(self.device_id), torch.cuda.stream(self._torch_stream(torch)):
            orthogonal_torch(t, gain, key, stream, column_axis)

    def delta_orthogonal(
        self, target: Any, gain: float, key: int, stream: int, column_axis: int, threads: int
    ) -> None:
        """``fastinit.delta_orthogonal_``: zeros, and orthogonal_ of the spatial centre."""
        torch, t = self._as_torch(target, "delta_orthogonal_")
        with torch.cuda.device(self.device_id), torch.cuda.stream(self._torch_stream(torch)):
            centre = tuple((k - 1) // 2 for k in t.shape[:-2])
            t.zero_()
            orthogonal_torch(t[centre], gain, key, stream, column_axis)

    def _as_torch(self, target: Any, what: str) -> tuple[Any, Any]:
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

    def _torch_stream(self, torch: Any) -> Any:
        if self.dlpack_stream == LEGACY_DEFAULT_STREAM:
            return torch.cuda.default_stream(self.device_id)
        return torch.cuda.ExternalStream(self.dlpack_stream, device=self.device_id)

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


def orthogonal_torch(t: Any, gain: float, key: int, stream: int, column_axis: int | None) -> None:
    """Write ``gain`` times the (key, stream) Haar (semi-)orthogonal matrix into the torch
    tensor ``t`` (any device), through torch's own linear algebra.

    The reflectors are those of the CPU path (csrc/include/fastinit/orthogonal.hpp): the
    virtual ``M x N`` standard normal matrix ``Z`` is materialized by ``fastinit.normal_``
    (so it holds the CPU's values bit for bit), reflector ``j`` is ``Z[j:, j]``, with the same
    ``v[0]``, ``tau`` and sign correction ``d``; ``torch.linalg.householder_product`` forms
    ``H_0 ... H_{N-1} [I; 0]`` (LAPACK's/cuSOLVER's orgqr, with the reflectors rescaled to a
    unit leading entry). Values agree with the CPU's to rounding (the sums of squares and the
    accumulation are ordered differently). Workspace: about three ``M x N`` matrices of the
    compute type (float32, or float64 for float64 tensors).

    ``column_axis``: ``None`` for torch's rule (rows = dim 0), else an axis (Keras/JAX's).
    """
    import torch

    from . import _fills

    shape = tuple(int(v) for v in t.shape)
    numel = math.prod(shape)
    if numel == 0:
        return
    if column_axis is None:
        view = t
        rows = shape[0]
        cols = numel // rows
    else:
        view = t.movedim(column_axis, -1)
        cols = shape[column_axis]
        rows = numel // cols
    m, n = max(rows, cols), min(rows, cols)
    cdt = torch.float64 if t.dtype == torch.float64 else torch.float32
    # Reflector j is Z[j:, j] of a virtual M x N standard normal matrix (see orthogonal.hpp).
    z = torch.empty((m, n), dtype=cdt, device=t.device)
    g = _fills.Generator(key)
    g.set_state((key, stream))
    _fills.normal_(z, 0.0, 1.0, seed=g)

    x0 = z.diagonal().to(torch.float64)
    lower = z.tril(-1)  # reflector j without its first entry: Z[j+1:, j]
    del z
    rest = lower.to(torch.float64).square().sum(dim=0)
    norm2 = x0 * x0 + rest
    sg = torch.where(x0 >= 0, 1.0, -1.0).to(torch.float64)
    v0 = (x0 + sg * norm2.sqrt()).to(cdt)  # rounded once to the compute type, as on the CPU
    v0d = v0.to(torch.float64)
    tau = 2.0 / (rest + v0d * v0d)
    zero = ~(norm2 > 0)
    tau = torch.where(zero, 0.0, tau)
    d = torch.where(zero, 1.0, -sg)
    v0 = torch.where(zero, torch.ones_like(v0), v0)
    v0d = v0.to(torch.float64)
    # LAPACK's convention: v with v[0] = 1 and tau' = tau v0^2 is the same reflection.
    reflectors = lower / v0[None, :]
    del lower
    q = torch.linalg.householder_product(reflectors, (tau * v0d * v0d).to(cdt))
    del reflectors
    q.mul_((gain * d).to(cdt)[None, :])
    out = q if rows >= cols else q.T
    with torch.no_grad():
        view.copy_(out.reshape(view.shape))
