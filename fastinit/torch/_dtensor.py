"""Sharded initialization on ``torch.distributed``: DTensor, tensor parallel and FSDP2.

A DTensor's local tensor is a box ``[offset, offset + local.shape)`` of its global tensor
(for every placement fastinit accepts, see :func:`shard_spec`). fastinit's fills give a shard
exactly the values the whole tensor has at those positions, so each rank fills its own local
tensor with ``global_shape=`` / ``global_offset=`` and the gathered tensor is bit-identical to
a single-process fill with the same seed, for any mesh, placement or world size. Random fills
send nothing between ranks; the only collective is the optional seed broadcast below.

Seeds
-----
An explicit ``seed=<int>`` is a pure function of (seed, position): nothing is exchanged. A
seed drawn from a torch generator (``generator=``, or torch's default generator, the
``torch.nn.init`` convention) is drawn on every rank -- so every rank's generator advances by
one draw, as in a single process -- and then, by default, replaced by the value drawn on the
first rank of the DTensor's mesh: one 8-byte broadcast per mesh dimension of size > 1, per
call. Ranks whose generators were seeded differently therefore still agree. Turn the
broadcast off with :func:`seed_sync` when every rank is known to hold the same generator
state (``materialize_sharded_`` does, because it seeds each module from a base seed that is
broadcast once).

This module holds the shard maths and the seed agreement only: the initializers of
``fastinit.torch`` (one implementation each) treat a DTensor as a target and call in here.
Sharded materialization (FSDP2) is in ``fastinit.torch._materialize``, ``routed()`` in
``fastinit.torch._patch``.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from .. import _orthogonal
from .._stream import Generator, at, resolve, wrap_u64
from . import _target

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

_T = TypeVar("_T")

__all__ = [
    "apply_to_dtensor",
    "collective_device",
    "draw_seed",
    "is_dtensor",
    "native_local",
    "orthogonal_full",
    "orthogonal_to_dtensor",
    "seed_sync",
    "seed_sync_enabled",
    "shard_spec",
    "sync_seed",
]


# --------------------------------------------------------------------------------------------
# what a rank holds
# --------------------------------------------------------------------------------------------


def is_dtensor(x: Any) -> bool:
    """Whether ``x`` is a ``torch.distributed.tensor.DTensor`` (or a Parameter wrapping one).

    Cheap, and imports nothing: a program that never imported ``torch.distributed.tensor``
    has no DTensor.
    """
    mod = sys.modules.get("torch.distributed.tensor")
    cls = getattr(mod, "DTensor", None) if mod is not None else None
    return cls is not None and isinstance(x, cls)


# Index sets along one tensor dimension are kept as lists of ranges (runs), so a dimension of
# 10**9 elements costs nothing and a strided set (an intermediate step of _StridedShard) is
# exact.
_Runs = list[range]


def _select(runs: _Runs, lo: int, hi: int) -> _Runs:
    """Positions ``[lo, hi)`` of the concatenation of ``runs``."""
    out: _Runs = []
    start = 0
    for r in runs:
        a, b = max(lo - start, 0), min(hi - start, len(r))
        if a < b:
            out.append(r[a:b])
        start += len(r)
    return out


def _chunk(runs: _Runs, num_chunks: int, index: int) -> _Runs:
    """Chunk ``index`` of ``torch.chunk(runs, num_chunks)``: ``ceil(n / num_chunks)`` elements
    per chunk, the remainder on the last non-empty one, empty chunks at the end."""
    n = sum(len(r) for r in runs)
    size = -(-n // num_chunks) if n else 0
    return _select(runs, min(index * size, n), min((index + 1) * size, n))


def _strided_chunk(runs: _Runs, split_factor: int, num_chunks: int, index: int) -> _Runs:
    """``_StridedShard``: split into ``split_factor`` pieces as ``torch.chunk``, take chunk
    ``index`` of ``num_chunks`` of every piece, concatenated (torch's definition)."""
    n = sum(len(r) for r in runs)
    size = -(-n // split_factor) if n else 0
    out: _Runs = []
    for i in range(split_factor):
        out += _chunk(_select(runs, min(i * size, n), min((i + 1) * size, n)), num_chunks, index)
    return out


def _merge(runs: _Runs) -> _Runs:
    out: _Runs = []
    for r in runs:
        if len(r) == 0:
            continue
        if out and out[-1].stop == r.start:
            out[-1] = range(out[-1].start, r.stop)
        else:
            out.append(r)
    return out


def _placement_error(placements: Sequence[Any], why: str) -> NotImplementedError:
    return NotImplementedError(
        f"fastinit: cannot initialize a DTensor with placements {tuple(placements)}: {why}"
    )


def shard_spec(t: Any) -> tuple[Tensor, tuple[int, ...], tuple[int, ...]]:
    """The local tensor of a DTensor and the box of the global tensor it holds.

    Parameters
    ----------
    t : torch.distributed.tensor.DTensor
        On any device mesh (1-D or N-D) with placements ``Shard(d)`` on any dimension
        (uneven shards included: torch's chunking puts ``ceil(n / k)`` on the first ranks and
        may leave the last ones empty; several mesh dimensions may shard the same tensor
        dimension), ``Replicate()``, and ``_StridedShard`` where the rank's rows form one
        contiguous block (FSDP2 over tensor parallel gives that).

    Returns
    -------
    local : torch.Tensor
        The rank's local tensor (the storage the DTensor owns; writing to it writes the
        DTensor).
    global_shape : tuple of int
    global_offset : tuple of int
        ``local`` is the block ``[global_offset, global_offset + local.shape)`` of a tensor of
        ``global_shape``. A replicated dimension has offset 0 and the full size.

    Raises
    ------
    TypeError
        ``t`` is not a DTensor.
    NotImplementedError
        ``Partial`` placements (the local tensors are addends of the value, not parts of it),
        a non-default ``shard_order`` that is not expressed as ``_StridedShard``, a
        ``_StridedShard`` layout whose local rows are not one contiguous block, and unknown
        placement types.
    ValueError
        This rank is not part of the DTensor's mesh.
    RuntimeError
        The local tensor's shape disagrees with its placements (e.g. a padded local tensor).

    Notes
    -----
    The local shape and offset are torch's own
    (``torch.distributed.tensor._utils.compute_local_shape_and_global_offset``, what
    distributed checkpointing uses). fastinit also follows the full index set of every tensor
    dimension through the placements, left to right, with torch's chunking rules, to prove
    that the local tensor is one box (``_StridedShard`` steps can be strided) and to check
    torch's answer.
    """
    if not is_dtensor(t):
        raise TypeError(f"fastinit: expected a DTensor, got {type(t).__name__}")
    from torch.distributed.tensor import placement_types as pt

    strided_cls = getattr(pt, "_StridedShard", None)
    spec = t._spec
    mesh = spec.mesh
    placements = tuple(spec.placements)
    global_shape = tuple(int(s) for s in t.shape)
    has_strided = False
    for p in placements:
        if p.is_partial():
            raise _placement_error(
                placements,
                "Partial placements hold addends of the value, not a part of it; initialize "
                "the tensor before making it Partial, or redistribute it to Shard/Replicate",
            )
        if strided_cls is not None and isinstance(p, strided_cls):
            has_strided = True
        elif not (p.is_shard() or p.is_replicate()):
            raise _placement_error(placements, f"unknown placement {p!r}")
    order = getattr(spec, "shard_order", None)
    if order is not None and not has_strided:
        default_order = getattr(type(spec), "is_default_device_order", None)
        if default_order is not None and not default_order(order):
            raise _placement_error(
                placements, f"the non-default shard_order {order} is not supported"
            )
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        raise ValueError("fastinit: this rank is not part of the DTensor's device mesh")

    runs: list[_Runs] = [[range(n)] for n in global_shape]
    for mesh_dim, p in enumerate(placements):
        if p.is_replicate():
            continue
        dim = p.dim if p.dim >= 0 else p.dim + len(global_shape)
        k, c = mesh.size(mesh_dim), int(coordinate[mesh_dim])
        if strided_cls is not None and isinstance(p, strided_cls):
            runs[dim] = _strided_chunk(runs[dim], int(p.split_factor), k, c)
        else:
            runs[dim] = _chunk(runs[dim], k, c)
    local_shape: list[int] = []
    offset: list[int] = []
    for dim, r in enumerate(runs):
        merged = _merge(r)
        if len(merged) > 1:
            raise _placement_error(
                placements,
                f"this rank's part of dimension {dim} is not contiguous "
                f"({[(m.start, m.stop) for m in merged]})",
            )
        local_shape.append(len(merged[0]) if merged else 0)
        offset.append(merged[0].start if merged else 0)

    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    torch_shape, torch_offset = compute_local_shape_and_global_offset(
        global_shape, mesh, placements
    )
    nonempty = 0 not in local_shape
    if tuple(torch_shape) != tuple(local_shape) or (
        nonempty and tuple(torch_offset) != tuple(offset)
    ):
        raise RuntimeError(
            f"fastinit: torch places this rank's shard of {global_shape} with {placements} at "
            f"{tuple(torch_offset)} + {tuple(torch_shape)}, fastinit at {tuple(offset)} + "
            f"{tuple(local_shape)}; please report this"
        )
    local = t._local_tensor if hasattr(t, "_local_tensor") else t.to_local()
    if tuple(local.shape) != tuple(local_shape):
        raise RuntimeError(
            f"fastinit: the local tensor has shape {tuple(local.shape)} but placements "
            f"{placements} on a mesh of shape {tuple(mesh.shape)} give {tuple(local_shape)}"
        )
    return local, global_shape, tuple(offset)


def apply_to_dtensor(
    fill: Callable[..., Any],
    t: _T,
    *args: Any,
    seed: int | Generator | None = None,
    **kwargs: Any,
) -> _T:
    """Run a fastinit fill on a DTensor's local tensor so the whole equals an unsharded fill.

    Parameters
    ----------
    fill : callable
        Any fastinit fill or scheme taking ``(x, *args, seed=, global_shape=, global_offset=,
        **kwargs)`` -- ``fastinit.uniform_``, ``normal_``, ``trunc_normal_``,
        ``kaiming_uniform_`` (fans come from ``global_shape``), ``sparse_``; or, with
        ``seed=None``, a fill without a seed (``constant_``, ``eye_``, ``dirac_``).
    t : DTensor
        See :func:`shard_spec` for the placements accepted.
    *args, **kwargs
        Passed to ``fill``.
    seed : int, fastinit.Generator or None
        ``int``: a pure seed. ``Generator``: its next stream, taken exactly once on every rank
        (so generators in the same state stay in step even where a shard is empty). ``None``:
        no ``seed=`` is passed. Every rank must pass the same value.

    Returns
    -------
    DTensor
        ``t``.
    """
    local, global_shape, global_offset = shard_spec(t)
    if isinstance(seed, Generator):
        seed = at(*resolve(seed))
    if seed is not None:
        kwargs["seed"] = seed
    fill(
        local.detach(),
        *args,
        global_shape=global_shape,
        global_offset=global_offset,
        **kwargs,
    )
    return _written(t, local)


def _written(t: Any, local: Tensor) -> Any:
    # A native fill writes behind autograd's back: bump the version counters as an in-place
    # op would (see fastinit.torch).
    for x in (local, t):
        with contextlib.suppress(RuntimeError):
            torch.autograd.graph.increment_version(x)
    return t


# --------------------------------------------------------------------------------------------
# seeds across ranks
# --------------------------------------------------------------------------------------------

_SEED_SYNC: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fastinit_dtensor_seed_sync", default=True
)


@contextlib.contextmanager
def seed_sync(enabled: bool) -> Iterator[None]:
    """Turn the broadcast of generator-drawn seeds on or off inside the block.

    Off, each rank uses the seed its own generator gives: correct only when every rank's
    generator is in the same state (e.g. ``torch.manual_seed(s)`` with the same ``s`` on
    every rank and the same sequence of draws since). An explicit ``seed=`` never needs it.
    """
    token = _SEED_SYNC.set(bool(enabled))
    try:
        yield
    finally:
        _SEED_SYNC.reset(token)


def seed_sync_enabled() -> bool:
    """Whether generator-drawn seeds are broadcast here (see :func:`seed_sync`)."""
    return _SEED_SYNC.get()


def collective_device(device_type: str) -> torch.device:
    if device_type == "cpu":
        return torch.device("cpu")
    module = getattr(torch, device_type, None)
    index = module.current_device() if module is not None else 0
    return torch.device(device_type, index)


def sync_seed(seed: int, mesh: DeviceMesh) -> int:
    """The value of ``seed`` on the first rank of ``mesh`` (coordinate ``(0, ..., 0)``).

    One broadcast of one int64 per mesh dimension of size > 1: after broadcasting along
    dimension 0 from coordinate 0, then along dimension 1, ..., every rank holds the value of
    rank ``(0, ..., 0)``. Returns ``seed`` unchanged when the broadcast is off
    (:func:`seed_sync`), when torch.distributed is not initialized, or on a one-rank mesh.
    """
    seed = wrap_u64(seed)
    if not _SEED_SYNC.get() or mesh.size() == 1:
        return seed
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return seed
    signed = seed - (1 << 64) if seed >= 1 << 63 else seed
    buf = torch.tensor([signed], dtype=torch.int64, device=collective_device(mesh.device_type))
    for mesh_dim in range(mesh.ndim):
        if mesh.size(mesh_dim) == 1:
            continue
        group = mesh.get_group(mesh_dim)
        dist.broadcast(buf, src=dist.get_global_rank(group, 0), group=group)
    return wrap_u64(int(buf.item()))


def draw_seed(t: Any, generator: torch.Generator | None = None, seed: int | None = None) -> int:
    """The 64-bit seed of one initialization of the DTensor ``t``, the same on every rank.

    ``seed`` given: that seed, nothing drawn or exchanged. Otherwise one draw from
    ``generator`` (torch's default generator when None), exactly as ``fastinit.torch`` draws
    for a plain tensor, made common to the mesh by :func:`sync_seed`.
    """
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        return wrap_u64(seed)
    return sync_seed(_target.draw_seed(generator), t.device_mesh)


# --------------------------------------------------------------------------------------------
# the local tensor, and orthogonal (the one fill that is not elementwise)
# --------------------------------------------------------------------------------------------


def native_local(t: Any) -> Tensor | None:
    """The local tensor of the DTensor ``t`` if fastinit's kernels fill it; None sends the
    DTensor to torch's implementation."""
    local = t._local_tensor if hasattr(t, "_local_tensor") else t.to_local()
    if local.is_meta or not _target.is_native(local):
        return None
    return local


def _native_orthogonal() -> Callable[..., Any] | None:
    return getattr(_orthogonal, "orthogonal_", None)


def orthogonal_full(shape: Sequence[int], dtype: torch.dtype, gain: float, seed: int) -> Tensor:
    """The whole ``shape`` orthogonal matrix of ``seed`` on the CPU, as a plain tensor.

    ``fastinit.orthogonal_(x, gain, seed=seed)`` on a contiguous CPU tensor (the value an
    unsharded ``fastinit.torch.orthogonal_`` gives for the same seed). Where this build of
    fastinit has no ``orthogonal_`` yet, torch's QR algorithm on a CPU ``torch.Generator``
    seeded with ``seed`` stands in (in float32 for 16-bit dtypes, then rounded), so the result
    is still a function of the seed alone.
    """
    full = torch.empty(tuple(int(s) for s in shape), dtype=dtype)
    native = _native_orthogonal()
    if native is not None:
        native(full, gain, seed=wrap_u64(seed))
        return full
    generator = torch.Generator().manual_seed(wrap_u64(seed))
    # torch's QR has no 16-bit CPU kernels: compute in float32 and round.
    work = full if full.dtype in (torch.float32, torch.float64) else full.float()
    with torch.no_grad():
        _target.ORIGINALS["orthogonal_"](work, gain, generator)
        full.copy_(work)
    return full


def orthogonal_to_dtensor(tensor: Any, gain: float, seed: int) -> Any:
    """Write the ``seed`` orthogonal matrix into the DTensor ``tensor``: the unsharded
    matrix, bit for bit.

    Every rank computes the whole global matrix on the CPU (:func:`orthogonal_full`, same
    seed on every rank) and copies its own block into its local tensor; nothing but the seed
    is exchanged. Cost per rank: the full ``~2 M N**2`` flops and an ``M x N`` CPU buffer
    (``M, N`` = the larger and smaller side of the flattened matrix), i.e. no speed-up from
    sharding. The values equal an unsharded ``fastinit.orthogonal_`` with the same seed and
    thread count (the BLAS may round differently for another thread count or machine).
    """
    local, global_shape, offset = shard_spec(tensor)
    full = orthogonal_full(global_shape, local.dtype, gain, seed)
    box = tuple(slice(o, o + n) for o, n in zip(offset, local.shape, strict=True))
    with torch.no_grad():
        local.copy_(full[box])
    return _written(tensor, local)
