"""Orthogonal initialization: Householder reflections from the Philox stream on a real BLAS.

Stewart's method (G. W. Stewart, "The efficient generation of random orthogonal matrices with
an application to condition estimators", SIAM J. Numer. Anal. 17, 1980): the vectors that
define the Householder reflectors of the QR factorization of a Gaussian matrix are distributed
as independent Gaussian vectors (of lengths M, M-1, ..., M-N+1), so they are drawn directly
from the normal stream, with no Gaussian matrix factored. They are accumulated blockwise in
compact-WY form with OpenBLAS level-3 calls (``scipy-openblas32``): about ``2 M N^2 - 2/3 N^3``
flops, half of what ``torch.nn.init.orthogonal_`` spends (``geqrf`` + ``orgqr``).

The native part lives in ``fastinit._blas``, loaded on first use so that ``import fastinit``
neither loads OpenBLAS nor starts its threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import operator
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from . import _fills
from ._buffer import CudaBackend, Target, dtype_name, shape_of
from ._stream import Generator, Key, run_seeded

__all__ = ["delta_orthogonal_", "orthogonal_"]

T = TypeVar("T")

_blas_module: Any = None
_blas_lock = threading.Lock()


class _ForkGate:
    """Keeps ``os.fork()`` away from OpenBLAS's worker threads while they change state.

    OpenBLAS's pre-fork handler shuts its idle workers down and joins them. A worker that is
    just going to sleep (``OPENBLAS_THREAD_TIMEOUT`` cycles after its last task) can miss the
    shutdown signal, and the parent then waits in ``fork()`` forever: seen in 2 of 4 runs of a
    loop forking while another thread ran ``orthogonal_``. So a fork waits for the BLAS calls
    in flight on other threads to end, and for the workers' spin time after the last one,
    while new calls wait for the fork. A call on the forking thread itself (a signal handler
    that forks during ``orthogonal_``) is not waited for.
    """

    def __init__(self) -> None:
        # Reentrant: a signal handler that forks may run while this thread holds it.
        self._cond = threading.Condition(threading.RLock())
        self._active: dict[int, int] = {}  # thread id -> BLAS calls in flight on it
        self._forking = False
        self._last_end = -math.inf  # time.monotonic() when the last call ended

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active[me] = self._active.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                if self._active[me] == 1:
                    del self._active[me]
                else:
                    self._active[me] -= 1
                self._last_end = time.monotonic()
                self._cond.notify_all()

    def before_fork(self) -> None:
        me = threading.get_ident()
        self._cond.acquire()  # held through the fork; released after it
        self._forking = True
        while any(tid != me for tid in self._active):
            self._cond.wait()
        settle = self._last_end + _spin_seconds() - time.monotonic()
        if settle > 0:
            time.sleep(settle)

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()


def _spin_seconds() -> float:
    """How long OpenBLAS's idle workers spin before sleeping: 2^OPENBLAS_THREAD_TIMEOUT TSC
    cycles (read by OpenBLAS at load; fastinit's 18 unless the user set it), at no less than
    1 GHz, plus 1 ms; at most 0.3 s."""
    try:
        t = int(os.environ.get("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT))
    except ValueError:
        t = 28  # OpenBLAS's default for a value it cannot parse
    return min(2.0 ** min(max(t, 4), 30) / 1e9 + 1e-3, 0.3)


_fork_gate = _ForkGate()


def _fresh_state_after_fork() -> None:
    global _blas_lock, _fork_gate
    # A child forked while another thread was loading the BLAS would wait for it forever; and
    # the child has no BLAS calls in flight (and its own workers).
    _blas_lock = threading.Lock()
    _fork_gate = _ForkGate()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _fork_gate.before_fork(),
        after_in_parent=lambda: _fork_gate.after_fork_in_parent(),
        after_in_child=_fresh_state_after_fork,
    )


# ----------------------------------------------------------------------------- the BLAS module


#: OpenBLAS's idle worker threads busy-wait 2^28 TSC cycles (~0.1 s) for the next call by
#: default, taking a core from whatever runs next: fastinit's own OpenMP phases, the next
#: fill, the rest of the program. 2^18 cycles (~0.1 ms) still bridges consecutive BLAS calls
#: within one orthogonal_ call. Applied when fastinit loads the library, unless the user set
#: OPENBLAS_THREAD_TIMEOUT; it affects only this private copy of OpenBLAS.
OPENBLAS_THREAD_TIMEOUT = "18"


def _preload_openblas() -> None:
    """Load ``libscipy_openblas.so`` from wherever ``scipy_openblas32`` is importable.

    ``fastinit._blas`` normally finds it through its RPATH (``$ORIGIN/../scipy_openblas32/lib``,
    i.e. the same site-packages). Loading it here first also covers layouts where the two
    packages live in different directories: the dynamic loader then reuses this copy, which it
    matches by soname.
    """
    try:
        import scipy_openblas32
    except ImportError:  # the RPATH may still find it; the import below says if not
        return
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def load_blas() -> Any:
    """The ``fastinit._blas`` extension module, loading OpenBLAS on first use.

    Returns
    -------
    module
        ``fastinit._blas``.

    Raises
    ------
    ImportError
        If this fastinit was built without it (``-DFASTINIT_ORTHOGONAL=OFF``) or
        ``scipy-openblas32`` cannot be loaded.
    """
    global _blas_module
    if _blas_module is None:
        with _blas_lock:
            if _blas_module is None:
                # OpenBLAS reads its environment once, when the library is loaded (here).
                user_timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
                if user_timeout is None:
                    os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_THREAD_TIMEOUT
                try:
                    _preload_openblas()
                    from . import _blas
                except ImportError as exc:
                    raise ImportError(
                        "fastinit: orthogonal initialization needs the fastinit._blas module and "
                        "the scipy-openblas32 package (pip install scipy-openblas32; a build "
                        f"with -DFASTINIT_ORTHOGONAL=OFF has no orthogonal_): {exc}"
                    ) from exc
                finally:
                    if user_timeout is None:
                        del os.environ["OPENBLAS_THREAD_TIMEOUT"]
                _blas_module = _blas
    return _blas_module


def sync_blas_threads(n: int) -> None:
    """Give OpenBLAS ``n`` threads now, if it is loaded (hook for ``fastinit.set_num_threads``).

    Every orthogonal call also sets OpenBLAS's thread count to ``fastinit.get_num_threads()``
    before it uses the BLAS, so this hook only makes the change immediate.
    """
    if _blas_module is not None:
        _blas_module.set_num_threads(operator.index(n))


_fills.on_num_threads(sync_blas_threads)


def blas_info() -> dict[str, Any]:
    """The BLAS behind orthogonal initialization: name, version, config, threads."""
    return dict(load_blas().info())


# ----------------------------------------------------------------------------- helpers


def _normalize_axis(axis: Any, ndim: int, what: str) -> int:
    if isinstance(axis, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(axis).__name__}") from None
    if not -ndim <= a < ndim:
        raise ValueError(f"{what}={a} is out of range for a {ndim}-D tensor")
    return a % ndim


#: The largest float32: a larger gain overflows the float32 computation (every value NaN).
_FLOAT32_MAX = 3.4028234663852886e38


def _check_gain(gain: Any, x: Any) -> float:
    if isinstance(gain, (str, bytes)):
        raise TypeError(f"gain must be a real number, got {type(gain).__name__}")
    g = _fills.check_finite("gain", gain)
    if g in (float("inf"), float("-inf")):
        raise ValueError("gain must be finite")
    if abs(g) > _FLOAT32_MAX and dtype_name(x) != "float64":
        raise ValueError(
            f"gain={g} overflows the float32 computation of a {dtype_name(x)} buffer "
            "(|gain| <= 3.4e38; use a float64 buffer)"
        )
    return g


def _shape(x: Any) -> tuple[int, ...]:
    if not hasattr(x, "shape"):
        Target(x)  # raises the TypeError that names what is accepted
    return shape_of(x)


def _native(x: Any, name: str) -> tuple[Any, Any]:
    """``(Target, module)``: the buffer handle and the object whose ``name`` writes it
    (``fastinit._blas`` on the CPU, :class:`_TorchOrthogonal` on CUDA)."""
    target = Target(x)
    if target.skip:
        return target, None
    if target.on_cpu:
        return target, load_blas()
    if not isinstance(target.backend, CudaBackend):
        raise BufferError(
            f"fastinit: {name}_ runs on the CPU only in this build; cannot write to DLPack "
            f"device {target.device}"
        )
    return target, _TorchOrthogonal(target.backend)


# ----------------------------------------------------------------------------- CUDA, via torch


class _TorchOrthogonal:
    """The ``orthogonal``/``delta_orthogonal`` calls of ``fastinit._blas`` for CUDA buffers:
    :func:`orthogonal_torch` on the buffer's device and stream."""

    __slots__ = ("backend",)

    def __init__(self, backend: CudaBackend) -> None:
        self.backend = backend

    def orthogonal(
        self, target: Any, gain: float, key: Key, stream: int, column_axis: Any, threads: int
    ) -> None:
        torch, t = self.backend.as_torch(target, "orthogonal_")
        with self.backend.torch_context(torch):
            orthogonal_torch(t, gain, key, stream, column_axis)

    def delta_orthogonal(
        self, target: Any, gain: float, key: Key, stream: int, column_axis: int, threads: int
    ) -> None:
        torch, t = self.backend.as_torch(target, "delta_orthogonal_")
        with self.backend.torch_context(torch):
            centre = tuple((k - 1) // 2 for k in t.shape[:-2])
            t.zero_()
            orthogonal_torch(t[centre], gain, key, stream, column_axis)


def orthogonal_torch(t: Any, gain: float, key: Key, stream: int, column_axis: int | None) -> None:
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
    _fills.fill_at(z, "normal", (0.0, 1.0), key, stream)

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


# ----------------------------------------------------------------------------- public API


def orthogonal_(
    x: T,
    gain: float = 1.0,
    *,
    seed: int | Generator | None = None,
    column_axis: int | None = None,
) -> T:
    """Fill ``x`` in place with ``gain`` times a Haar-distributed (semi-)orthogonal matrix.

    Parameters
    ----------
    x : array
        A writable NumPy array (float32, float64, float16, ``ml_dtypes.bfloat16``) or any
        object with ``__dlpack__`` on the CPU (torch tensors and Parameters) with at least 2
        dimensions.
    gain : float
        Scale factor (finite).
    seed : int, fastinit.Generator or None
        ``int``: a pure function of the seed. ``Generator``: its next stream. ``None``: the
        default generator's next stream.
    column_axis : int, optional
        ``None`` (default): torch's rule. The matrix is ``rows = x.shape[0]`` by ``cols =
        prod(x.shape[1:])``; its columns are orthonormal when ``rows >= cols``, else its rows.
        An axis: Keras/JAX's rule. ``cols = x.shape[column_axis]`` and ``rows`` = the other
        dimensions flattened in order (``column_axis=-1`` is Keras' ``Orthogonal`` and JAX's
        ``orthogonal()`` default).

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    ValueError
        ``x`` has fewer than 2 dimensions ("Only tensors with 2 or more dimensions are
        supported", as torch), a bad ``column_axis``, a non-finite gain, a read-only or
        overlapping buffer, or a matrix side of 2^31 or more (32-bit BLAS).
    TypeError
        Unsupported dtype or object.
    BufferError
        A buffer on a device other than the CPU.

    Notes
    -----
    **Algorithm.** With ``M = max(rows, cols)`` and ``N = min(rows, cols)``, fastinit forms
    ``Q = gain * H_0 ... H_{N-1} [I; 0] diag(d)`` (``M x N``) and writes ``Q`` when
    ``rows >= cols``, ``Q.T`` otherwise. ``H_j = I - tau_j v_j v_j^T`` acts on rows ``j..M-1``
    and comes from a Gaussian vector ``x_j`` of length ``M - j`` (Stewart's method); ``d_j =
    -sign(x_j[0])`` is the sign correction that makes ``Q`` exactly Haar-distributed (the Q
    factor of a Gaussian matrix whose ``R`` has a positive diagonal). The reflectors are
    accumulated in blocks of ``nb`` (128, or 256 when ``N >= 2048``) in compact-WY form by
    OpenBLAS: about ``2 M N^2 - 2/3 N^3`` flops, half of a Gaussian QR (``geqrf`` + ``orgqr``,
    what ``torch.nn.init.orthogonal_`` does).

    **Stream.** ``x_j`` is column ``j`` of a virtual ``M x N`` standard normal matrix ``Z``
    from the diagonal down: ``x_j[t] = Z[j + t, j]``, where ``Z`` is exactly what
    ``fastinit.normal_(np.empty((M, N), dtype), seed=...)`` writes with the same ``(seed,
    stream)`` (logical index ``(j + t) * N + j``; the 32-bit class for float32, float16 and
    bfloat16, the 64-bit class for float64). ``v_j``, ``tau_j`` and ``d_j`` follow from
    ``x_j`` in double with a fixed summation order (``csrc/include/fastinit/orthogonal.hpp``),
    so any device or shard can regenerate any reflector, bit for bit, on its own.

    **Precision.** float64 is computed in float64; float32, float16 and bfloat16 in float32,
    the 16-bit results being the float32 result rounded to nearest even. ``max|Q^T Q - I|`` is
    about 4e-7 in float32 at n = 4096 and 2e-15 in float64 at n = 1024. The gain enters with
    each block's own columns; when that overflows (``|gain|`` near the compute type's largest
    value), ``Q`` is computed again with gain 1 and multiplied by ``gain`` once, as torch does.

    **Reproducibility.** The reflectors are bit-identical everywhere. ``Q`` goes through BLAS
    level-3 calls whose rounding depends on the OpenBLAS kernel (CPU family, OpenBLAS version)
    and may depend on the thread count: the same seed, shape, dtype class and
    ``fastinit.get_num_threads()`` on the same machine give the same bits, whatever the memory
    layout of ``x``. Across thread counts or machines values agree to rounding (~1e-6 in
    float32). A ``(r, c)`` and a ``(c, r)`` tensor initialized with the same seed are transposes
    of each other to the same precision.

    **Threads.** ``fastinit.set_num_threads`` governs both fastinit's OpenMP threads and
    OpenBLAS's (set on every call); the two pools never run at the same time, and OpenBLAS's
    idle workers stop spinning after ~0.1 ms (``OPENBLAS_THREAD_TIMEOUT=18`` unless set).

    **Workspace.** ``(M + N) * nb + 3 * nb^2`` elements of the compute type (float32 or
    float64), e.g. 9 MiB for a 4096 x 4096 float32 matrix, when ``x`` holds the matrix in
    place: float32/float64 buffers whose flattened matrix is row-major with unit column stride
    (C-contiguous tensors, row slices). Otherwise (float16/bfloat16, or other layouts) add a
    full ``rows x cols`` matrix of the compute type (4 bytes per element for the 16-bit
    dtypes, twice the buffer), copied out at the end.
    Everything is allocated before the first write.
    """
    shape = _shape(x)
    if len(shape) < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    axis = None if column_axis is None else _normalize_axis(column_axis, len(shape), "column_axis")
    g = _check_gain(gain, x)
    target, module = _native(x, "orthogonal")
    if module is None:
        return x
    threads = _fills.get_num_threads()

    def call(key: Key, stream: int) -> None:
        with _fork_gate.call():
            target.run(lambda: module.orthogonal(target.handle, g, key, stream, axis, threads))

    run_seeded(seed, call)
    return x


def delta_orthogonal_(
    x: T,
    gain: float = 1.0,
    *,
    seed: int | Generator | None = None,
    column_axis: int = -1,
) -> T:
    """Delta-orthogonal initialization of a convolution kernel, with JAX's semantics.

    ``x`` has layout ``(*spatial, in, out)`` with 1 to 3 spatial dimensions. Every element is
    zero except the spatial centre ``x[(k1-1)//2, ..., :, :]``, which receives
    ``orthogonal_(centre, gain, column_axis=column_axis)`` (Xiao et al., "Dynamical Isometry
    and a Mean Field Theory of CNNs", 2018; ``jax.nn.initializers.delta_orthogonal``).

    Parameters
    ----------
    x : array
        A writable 3-D, 4-D or 5-D buffer (see :func:`orthogonal_` for the accepted types),
        with ``x.shape[-2] <= x.shape[-1]`` (``fan_in <= fan_out``).
    gain : float
        Scale factor (JAX's ``scale``).
    seed : int, fastinit.Generator or None
        As for :func:`orthogonal_`.
    column_axis : int
        The column axis of the ``(in, out)`` centre matrix, ``-1`` (default) or ``-2``.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    ValueError
        Not 3-D, 4-D or 5-D ("Delta orthogonal initializer requires a 3D, 4D or 5D shape."),
        ``fan_in > fan_out``, a bad ``column_axis`` or gain; nothing is written.
    TypeError
        Unsupported dtype or object.

    Notes
    -----
    The centre matrix takes the values :func:`orthogonal_` gives an ``(in, out)`` buffer with
    the same seed. Workspace: as :func:`orthogonal_` for the ``in x out`` centre matrix.
    """
    shape = _shape(x)
    if len(shape) not in (3, 4, 5):
        raise ValueError("Delta orthogonal initializer requires a 3D, 4D or 5D shape.")
    if shape[-1] < shape[-2]:
        raise ValueError("`fan_in` must be less or equal than `fan_out`. ")
    axis = _normalize_axis(column_axis, 2, "column_axis")
    g = _check_gain(gain, x)
    target, module = _native(x, "delta_orthogonal")
    if module is None:
        return x
    threads = _fills.get_num_threads()

    def call(key: Key, stream: int) -> None:
        with _fork_gate.call():
            target.run(
                lambda: module.delta_orthogonal(target.handle, g, key, stream, axis, threads)
            )

    run_seeded(seed, call)
    return x
