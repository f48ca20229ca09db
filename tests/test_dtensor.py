"""Sharded initialization on torch.distributed (fastinit.torch._dtensor), bit for bit.

One group of processes per world size (1, 2 and 4; torch.multiprocessing spawn, gloo, CPU)
runs every check of that size once and gathers each initialized DTensor with
``full_tensor()``; rank 0 saves the gathered tensors. The tests here, in the pytest process
(which never initializes torch.distributed), compare them bit for bit with the same
initialization of an unsharded tensor. A group that does not finish in time is killed and its
tests fail.

Skips: the whole file without torch, torch.distributed, gloo or DTensor (torch < 2.4); the
tests of the ``fastinit.torch`` entry points until fastinit.torch routes DTensors to
fastinit.torch._dtensor (docs/sharded.md has the lines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch
import torch.distributed as dist
from torch import nn

if not dist.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)
if not dist.is_gloo_available():
    pytest.skip("torch.distributed has no gloo backend in this build", allow_module_level=True)
try:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
except ImportError:  # pragma: no cover - depends on the torch version
    pytest.skip("torch.distributed.tensor (DTensor) needs torch >= 2.4", allow_module_level=True)

import fastinit
import fastinit.torch as ftorch
from fastinit import _fills, _schemes
from fastinit.torch import _dtensor, _materialize, _patch, _target

WORLD_SIZES = (1, 2, 4)
#: Hard limit for one group of processes (start-up, every check, shut-down).
GROUP_TIMEOUT_S = 150.0
FSDP_SEED = 20250607

# --------------------------------------------------------------------------------------------
# the checks, shared by the workers (sharded) and the tests (unsharded reference)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One initialization of one DTensor.

    kind: 'gen' (fastinit.torch._dtensor.<fn>(t, *args, generator=Generator().manual_seed(key))),
    'seed' (the same with seed=key), 'apply' (apply_to_dtensor(<core fill fn>, t, *args,
    seed=key)), 'torch' (fastinit.torch.<fn>(t, *args, generator=...)).
    layout: placements, one letter group per mesh dimension ('S0', 'S1', 'R'; 'S0,S1' is a
    2x2 mesh).
    """

    kind: str
    fn: str
    shape: tuple[int, ...]
    layout: str
    dtype: str = "float32"
    args: tuple[Any, ...] = ()
    key: int = 1234

    @property
    def id(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"{self.kind}:{self.fn}{self.args}:{self.dtype}:{shape}:{self.layout}"


LAYOUTS_1D = ("S0", "S1", "R")
LAYOUTS_2D = ("S0,S1", "S0,S0", "S1,S1", "R,S0", "S1,R")
# Even for 1, 2 and 4 ranks; uneven (remainder on the first ranks); an empty shard on 4 ranks.
MATRICES = ((16, 12), (7, 5), (3, 9))
CONV = (6, 5, 3, 3)

RANDOM_FNS: dict[str, tuple[Any, ...]] = {
    "uniform_": (-0.5, 2.0),
    "normal_": (0.25, 3.0),
    "trunc_normal_": (0.0, 1.0, -1.5, 0.75),
    "kaiming_uniform_": (math.sqrt(5),),
    "kaiming_normal_": (0.0, "fan_out", "relu"),
    "xavier_uniform_": (1.5,),
    "xavier_normal_": (0.5,),
    "orthogonal_": (1.25,),
    "sparse_": (0.3, 0.02),
}
CORE: dict[str, Callable[..., Any]] = {
    "uniform_": _fills.uniform_,
    "normal_": _fills.normal_,
    "trunc_normal_": _fills.trunc_normal_,
    "truncated_normal_": _fills.truncated_normal_,
    "kaiming_uniform_": _schemes.kaiming_uniform_,
    "kaiming_normal_": _schemes.kaiming_normal_,
    "xavier_uniform_": _schemes.xavier_uniform_,
    "xavier_normal_": _schemes.xavier_normal_,
    "variance_scaling_": _schemes.variance_scaling_,
    "sparse_": _schemes.sparse_,
}


def cases(world_size: int) -> list[Case]:
    layouts = LAYOUTS_1D + (LAYOUTS_2D if world_size == 4 else ())
    out: list[Case] = []
    for fn, args in RANDOM_FNS.items():
        shapes: list[tuple[int, ...]] = list(MATRICES)
        if fn != "sparse_":  # 2-D only
            shapes.append(CONV)
        for shape in shapes:
            for layout in layouts:
                if any(int(p[1]) >= len(shape) for p in layout.split(",") if p != "R"):
                    continue
                out.append(Case("gen", fn, shape, layout, args=args))
    for dtype in ("bfloat16", "float16", "float64"):
        for fn in ("uniform_", "normal_", "trunc_normal_", "orthogonal_"):
            out.append(Case("gen", fn, (7, 5), "S0", dtype, RANDOM_FNS[fn]))
    for fn in ("uniform_", "normal_", "kaiming_uniform_", "orthogonal_"):
        for layout in ("S1",) + (("S1,S0",) if world_size == 4 else ()):
            out.append(Case("seed", fn, (7, 9), layout, args=RANDOM_FNS[fn], key=2**64 - 5))
    structured: list[tuple[str, tuple[int, ...], tuple[Any, ...]]] = [
        ("constant_", (16, 12), (0.125,)),
        ("ones_", (7, 5), ()),
        ("zeros_", (3, 9), ()),
        ("eye_", (7, 5), ()),
        ("eye_", (3, 9), ()),
        ("dirac_", CONV, ()),
        ("dirac_", (8, 4, 3), (2,)),
    ]
    for fn, shape, args in structured:
        for layout in ("S0", "S1") + (("S0,S1", "S1,S1") if world_size == 4 else ()):
            out.append(Case("gen", fn, shape, layout, args=args))
    apply = [
        ("normal_", (0.0, 0.02)),
        ("truncated_normal_", (0.5, 0.0, -3.0, 1.0)),
        ("kaiming_normal_", (0.0, "fan_out")),
        ("variance_scaling_", (2.0, "fan_avg", "truncated_normal")),
    ]
    for fn, args in apply:
        for layout in ("S0", "S1") + (("S1,S0",) if world_size == 4 else ()):
            out.append(Case("apply", fn, CONV, layout, args=args, key=77))
    for fn in (
        "uniform_",
        "normal_",
        "trunc_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "orthogonal_",
        "zeros_",
        "eye_",
    ):
        for layout in ("S0", "S1") + (("S0,S1",) if world_size == 4 else ()):
            args = RANDOM_FNS.get(fn, ())
            out.append(Case("torch", fn, (7, 5), layout, args=args))
    return out


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _generator(key: int) -> torch.Generator:
    return torch.Generator().manual_seed(key)


def _takes_seed(fn: str) -> bool:
    return fn in RANDOM_FNS


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """fastinit's, OpenBLAS's (through fastinit) and torch's thread counts at 1, restored."""
    before = fastinit.get_num_threads(), torch.get_num_threads()
    fastinit.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        fastinit.set_num_threads(before[0])
        torch.set_num_threads(before[1])


def reference(case: Case) -> torch.Tensor:
    """The unsharded result of ``case`` (computed in this process, no torch.distributed)."""
    x = torch.empty(case.shape, dtype=_dtype(case.dtype))
    with _one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.kind == "apply":
            CORE[case.fn](x, *case.args, seed=case.key)
        elif case.fn == "orthogonal_":
            # fastinit.torch.orthogonal_ of a plain tensor, where fastinit has it; the
            # documented stand-in (the whole matrix of the same seed) where it does not.
            if case.kind == "seed":
                seed = case.key
            else:
                seed = _target.draw_seed(_generator(case.key))
            x = _dtensor.orthogonal_full(case.shape, x.dtype, case.args[0], seed)
        elif case.kind == "seed":
            CORE[case.fn](x, *case.args, seed=case.key)
        elif _takes_seed(case.fn):
            getattr(ftorch, case.fn)(x, *case.args, generator=_generator(case.key))
        else:
            getattr(ftorch, case.fn)(x, *case.args)
    return x


def _bits(x: torch.Tensor) -> torch.Tensor:
    view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[x.element_size()]
    return x.contiguous().view(view)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(_bits(a), _bits(b))


# --------------------------------------------------------------------------------------------
# models for materialization
# --------------------------------------------------------------------------------------------


class NoReset(nn.Module):
    """Parameters no reset_parameters covers: materialize_'s fallback rule."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(5, 3))
        self.bias = nn.Parameter(torch.empty(5))
        self.scale = nn.Parameter(torch.empty(9))


class Model(nn.Module):
    """Uneven everywhere on 2 and 4 ranks; NoReset.weight leaves rank 3 of 4 empty."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 12)
        self.inp = nn.Linear(12, 10)
        self.norm = nn.LayerNorm(10)
        self.out = nn.Linear(10, 7)
        self.conv = nn.Conv1d(3, 6, 3)
        self.extra = NoReset()


def plain_model() -> dict[str, torch.Tensor]:
    """``fastinit.torch.materialize_`` of the unsharded model: the reference."""
    with torch.device("meta"):
        model = Model()
    ftorch.materialize_(model, seed=FSDP_SEED)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# --------------------------------------------------------------------------------------------
# the worker (one per rank)
# --------------------------------------------------------------------------------------------


def _placements(layout: str) -> list[Any]:
    return [Replicate() if p == "R" else Shard(int(p[1])) for p in layout.split(",")]


def _run_case(case: Case, meshes: dict[int, Any]) -> torch.Tensor:
    placements = _placements(case.layout)
    mesh = meshes[len(placements)]
    t = distribute_tensor(torch.zeros(case.shape, dtype=_dtype(case.dtype)), mesh, placements)
    if case.kind == "apply":
        _dtensor.apply_to_dtensor(CORE[case.fn], t, *case.args, seed=case.key)
    else:
        fn = getattr(ftorch, case.fn)
        if not _takes_seed(case.fn):
            fn(t, *case.args)
        elif case.kind == "seed":
            with _target.fixed_seed(case.key):
                fn(t, *case.args)
        else:
            fn(t, *case.args, generator=_generator(case.key))
    return t.full_tensor()


def _box_problem(t: Any, whole: torch.Tensor, what: Any) -> list[Any]:
    """[] if shard_spec's box of ``t`` holds this rank's values of ``whole``."""
    try:
        local, global_shape, offset = _dtensor.shard_spec(t)
    except Exception as exc:
        return [(what, repr(exc))]
    box = tuple(slice(o, o + n) for o, n in zip(offset, local.shape, strict=True))
    if global_shape != tuple(whole.shape) or not torch.equal(local, whole[box]):
        return [(what, offset, tuple(local.shape))]
    return []


def _check_layouts(meshes: dict[int, Any], world_size: int) -> None:
    """shard_spec's box holds exactly what torch's own distribute_tensor put on this rank.

    Problems are collected and raised at the end, so that a failing rank still takes part in
    every collective of the others (a rank that left early would desynchronize the group).
    """
    layouts = LAYOUTS_1D + (LAYOUTS_2D if world_size == 4 else ())
    problems: list[Any] = []
    for shape in (*MATRICES, CONV, (1, 2)):
        whole = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
        for layout in layouts:
            placements = _placements(layout)
            if any(p.is_shard() and p.dim >= len(shape) for p in placements):
                continue
            t = distribute_tensor(whole, meshes[len(placements)], placements)
            problems += _box_problem(t, whole, (shape, layout))
    assert not problems, problems


class _Collectives:
    """Counts (or forbids) the torch.distributed collectives called inside the block."""

    NAMES = ("broadcast", "all_reduce", "all_gather", "all_gather_into_tensor", "scatter",
             "reduce_scatter_tensor", "send", "recv", "barrier")  # fmt: skip

    def __init__(self, forbid: bool = False) -> None:
        self.forbid = forbid
        self.calls: list[str] = []

    def __enter__(self) -> _Collectives:
        self.saved = {n: getattr(dist, n) for n in self.NAMES if hasattr(dist, n)}
        for name, fn in self.saved.items():
            setattr(dist, name, self._wrap(name, fn))
        return self

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.forbid:
                raise AssertionError(f"unexpected collective {name}")
            return fn(*args, **kwargs)

        return counted

    def __exit__(self, *exc: object) -> None:
        for name, fn in self.saved.items():
            setattr(dist, name, fn)


def _seed_checks(rank: int, world_size: int, meshes: dict[int, Any], saved: dict) -> dict:
    status: dict[str, Any] = {}
    mesh = meshes[1]
    # Ranks seeded differently still agree: the seed drawn on rank 0 is broadcast.
    torch.manual_seed(1000 + rank)
    t = distribute_tensor(torch.zeros(7, 5), mesh, [Shard(0)])
    with _Collectives() as seen:
        ftorch.uniform_(t)
    status["broadcasts_1d"] = seen.calls
    saved["seeds:broadcast"] = t.full_tensor()
    after = torch.default_generator.get_state()
    expected = torch.Generator().manual_seed(1000 + rank)
    _target.draw_seed(expected)
    status["one_draw_per_rank"] = bool(torch.equal(after, expected.get_state()))
    # Without the broadcast each rank uses its own draw.
    torch.manual_seed(1000 + rank)
    t = distribute_tensor(torch.zeros(7, 5), mesh, [Shard(0)])
    with _dtensor.seed_sync(False), _Collectives(forbid=True):
        ftorch.uniform_(t)
    saved["seeds:nosync"] = t.full_tensor()
    # An explicit seed, a constant and a generator on a one-rank mesh: no collective at all.
    t = distribute_tensor(torch.zeros(7, 5), mesh, [Shard(1)])
    with _Collectives(forbid=True):
        _seeded(ftorch.normal_, 5, t)
        _seeded(ftorch.kaiming_uniform_, 6, t)
        _seeded(ftorch.orthogonal_, 7, t)
        ftorch.zeros_(t)
        _dtensor.apply_to_dtensor(fastinit.normal_, t, seed=fastinit.Generator(3))
    status["explicit_seed_no_collective"] = True
    if world_size == 4:
        t = distribute_tensor(torch.zeros(7, 5), meshes[2], [Shard(0), Shard(1)])
        with _Collectives() as seen:
            ftorch.normal_(t, generator=_generator(1))
        status["broadcasts_2d"] = seen.calls
    return status


def _torch_seed_check(rank: int, meshes: dict[int, Any], saved: dict) -> None:
    """fastinit.torch.normal_(dtensor) with ranks seeded differently: rank 0's draw."""
    torch.manual_seed(1000 + rank)
    t = distribute_tensor(torch.zeros(7, 5), meshes[1], [Shard(1)])
    ftorch.normal_(t, 0.5, 2.0)
    saved["torch_seeds"] = t.full_tensor()


def _seeded(fn: Callable[..., Any], seed: int, *args: Any) -> Any:
    """``fn(*args)`` with the explicit seed ``seed`` (nothing drawn, nothing exchanged)."""
    with _target.fixed_seed(seed):
        return fn(*args)


def _check_errors(meshes: dict[int, Any]) -> None:
    from torch.distributed.tensor import DTensor, Partial

    partial = DTensor.from_local(torch.zeros(4, 3), meshes[1], [Partial()])
    with pytest.raises(NotImplementedError, match="Partial"):
        _seeded(ftorch.normal_, 1, partial)
    with pytest.raises(NotImplementedError, match="Partial"):
        _dtensor.shard_spec(partial)
    # The core fills refuse a DTensor (its capsule holds only the local shard).
    whole = distribute_tensor(torch.zeros(8, 3), meshes[1], [Shard(0)])
    with pytest.raises(TypeError, match="DTensor"):
        fastinit.uniform_(whole, seed=1)
    with pytest.raises(TypeError, match="DTensor"):
        _dtensor.shard_spec(torch.zeros(3))
    t = distribute_tensor(torch.zeros(4, 3, dtype=torch.int32), meshes[1], [Shard(0)])
    with pytest.raises(TypeError, match="seed="):
        _seeded(ftorch.uniform_, 1, t)
    t = distribute_tensor(torch.zeros(4, 3), meshes[1], [Shard(0)])
    with pytest.raises(ValueError, match="low <= high"):
        _seeded(ftorch.uniform_, 1, t, 2.0, 1.0)
    with pytest.raises(ValueError, match="Fan in and fan out"):
        ftorch.xavier_uniform_(distribute_tensor(torch.zeros(4), meshes[1], [Shard(0)]))
    # Arguments torch accepts and the kernels cannot honour take torch's path on a DTensor as on
    # a plain tensor (the drop-in never fails where torch works): an infinite mean, a
    # truncation interval without float32 probability mass.
    d = distribute_tensor(torch.zeros(8, 3), meshes[1], [Shard(0)])
    ftorch.normal_(d, math.inf, 1.0)
    assert torch.isinf(d.full_tensor()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ftorch.trunc_normal_(d, 0.0, 1.0, 40.0, 41.0)
    full = d.full_tensor()
    assert ((full >= 40.0) & (full <= 41.0)).all()
    with pytest.raises(RuntimeError):  # torch's error for reversed bounds, as for a plain tensor
        ftorch.uniform_(d, 2.0, 1.0)


def _fully_shard() -> Callable[..., Any]:
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import fully_shard
    return fully_shard


def _fsdp(
    mesh: Any, materialize: Callable[..., Any], seed: int | None = FSDP_SEED
) -> dict[str, torch.Tensor]:
    """FSDP2 on the meta device, materialized rank by rank, then gathered."""
    fully_shard = _fully_shard()
    with torch.device("meta"):
        model = Model()
    for name in ("inp", "out", "conv"):
        fully_shard(getattr(model, name), mesh=mesh)
    fully_shard(model, mesh=mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        materialize(model, "cpu", seed=seed)
    sharded: list[tuple[str, Any]] = list(model.named_parameters())
    for _, p in sharded:
        assert _dtensor.is_dtensor(p) and not p.to_local().is_meta
    return {k: v.full_tensor() for k, v in sharded}


def _fsdp_tp(mesh2: Any) -> dict[str, torch.Tensor]:
    """Tensor parallel inside FSDP2 on a 2x2 mesh (_StridedShard placements), on meta."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    with torch.device("meta"):
        model = Model()
    parallelize_module(model, mesh2["tp"], {"inp": ColwiseParallel(), "out": RowwiseParallel()})
    _fully_shard()(model, mesh=mesh2["dp"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _materialize.materialize_sharded_(model, "cpu", seed=FSDP_SEED)
    sharded: list[tuple[str, Any]] = list(model.named_parameters())
    return {k: v.full_tensor() for k, v in sharded}


def _check_strided_layout(mesh2: Any) -> list[str]:
    """shard_spec on FSDP2-over-TP parameters (values known: arange) finds the right box."""
    from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

    seen, problems = [], []
    for rows in (8, 7, 5, 3):
        linear = nn.Linear(6, rows)
        model = nn.Sequential(linear)
        whole = torch.arange(rows * 6, dtype=torch.float32).reshape(rows, 6)
        with torch.no_grad():
            linear.weight.copy_(whole)
        parallelize_module(model, mesh2["tp"], {"0": ColwiseParallel()})
        _fully_shard()(model, mesh=mesh2["dp"])
        w: Any = linear.weight
        seen.append(str(tuple(w.placements)))
        problems += _box_problem(w, whole, rows)
        with contextlib.suppress(Exception):
            _seeded(ftorch.normal_, rows, w)
        if not same_bits(w.full_tensor(), _fills.normal_(torch.empty(rows, 6), seed=rows)):
            problems.append(("values", rows))
    assert not problems, problems
    return seen


def worker(rank: int, world_size: int, store: str, out_dir: str) -> None:
    """One rank: every check of this world size; results to ``out_dir``."""
    logging.getLogger("torch.distributed").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    fastinit.set_num_threads(1)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    status: dict[str, Any] = {}
    saved: dict[str, torch.Tensor] = {}

    timing: dict[str, float] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        section = name.split(":")[0]
        start = time.perf_counter()
        try:
            result = fn()
            status[name] = "ok" if result is None else result
        except Exception:  # reported to the test, which fails with it
            status[name] = {"error": traceback.format_exc()}
        timing[section] = timing.get(section, 0.0) + time.perf_counter() - start

    try:
        meshes = {1: init_device_mesh("cpu", (world_size,))}
        if world_size == 4:
            meshes[2] = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        status["fastinit.torch routes DTensors"] = getattr(ftorch, "_dtensor", None) is not None
        for case in cases(world_size):
            if case.kind == "torch" and not status["fastinit.torch routes DTensors"]:
                continue

            def run(case: Case = case) -> None:
                saved[case.id] = _run_case(case, meshes)

            attempt(case.id, run)
        attempt("layouts", lambda: _check_layouts(meshes, world_size))
        attempt("errors", lambda: _check_errors(meshes))
        attempt("seeds", lambda: _seed_checks(rank, world_size, meshes, saved))

        def fsdp(prefix: str, materialize: Callable[..., Any], seed: int | None) -> None:
            gathered = _fsdp(meshes[1], materialize, seed)
            saved.update({f"{prefix}:{k}": v for k, v in gathered.items()})

        def fsdp_unseeded() -> None:
            # No seed: the base seed is drawn on every rank and rank 0's is broadcast.
            torch.manual_seed(1000 + rank)
            fsdp("fsdp_unseeded", _materialize.materialize_sharded_, None)

        attempt("fsdp", lambda: fsdp("fsdp", _materialize.materialize_sharded_, FSDP_SEED))
        attempt("fsdp_unseeded", fsdp_unseeded)
        if status["fastinit.torch routes DTensors"]:
            attempt("torch_fsdp", lambda: fsdp("torch_fsdp", ftorch.materialize_, FSDP_SEED))
            attempt("torch_seeds", lambda: _torch_seed_check(rank, meshes, saved))
        if world_size == 4:
            attempt("strided_layout", lambda: _check_strided_layout(meshes[2]))
            attempt(
                "fsdp_tp",
                lambda: saved.update({f"fsdp_tp:{k}": v for k, v in _fsdp_tp(meshes[2]).items()}),
            )
        dist.barrier()
    finally:
        status["seconds"] = timing
        Path(out_dir, f"status{rank}.json").write_text(json.dumps(status))
        if rank == 0:
            torch.save(saved, Path(out_dir, "tensors.pt"))
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# running the groups (once per world size per test session)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GroupResult:
    world_size: int
    status: list[dict[str, Any]]  # per rank
    tensors: dict[str, torch.Tensor]
    seconds: float

    def check(self, name: str) -> Any:
        """The value rank 0 recorded for ``name``; fails with any rank's traceback."""
        for rank, st in enumerate(self.status):
            if name not in st:
                pytest.fail(f"rank {rank} of {self.world_size} did not run {name!r}")
            value = st[name]
            if isinstance(value, dict) and "error" in value:
                pytest.fail(f"rank {rank} of {self.world_size}, {name}:\n{value['error']}")
        return self.status[0][name]

    def tensor(self, name: str) -> torch.Tensor:
        """A gathered tensor rank 0 saved (its check, if it has one, must have passed)."""
        if name in self.status[0]:
            self.check(name)
        if name not in self.tensors:
            pytest.fail(f"the {self.world_size}-process group saved no tensor {name!r}")
        return self.tensors[name]


def _run_group(world_size: int, directory: Path) -> GroupResult:
    import torch.multiprocessing as mp

    directory.mkdir(parents=True, exist_ok=True)
    store = directory / "store"
    start = time.monotonic()
    ctx = mp.start_processes(
        worker,
        args=(world_size, str(store), str(directory)),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    try:
        while not ctx.join(timeout=max(0.1, GROUP_TIMEOUT_S - (time.monotonic() - start))):
            if time.monotonic() - start > GROUP_TIMEOUT_S:
                raise TimeoutError(
                    f"the {world_size}-process group did not finish in {GROUP_TIMEOUT_S:.0f} s"
                )
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    status = [json.loads((directory / f"status{r}.json").read_text()) for r in range(world_size)]
    tensors = torch.load(directory / "tensors.pt")
    return GroupResult(world_size, status, tensors, time.monotonic() - start)


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], GroupResult]:
    """``group(n)``: the results of the n-process group, run on first use."""
    results: dict[int, GroupResult | BaseException] = {}

    def get(world_size: int) -> GroupResult:
        if world_size not in results:
            try:
                results[world_size] = _run_group(
                    world_size, tmp_path_factory.mktemp(f"dtensor_ws{world_size}")
                )
            except BaseException as exc:  # every test of this size fails with it
                results[world_size] = exc
        result = results[world_size]
        if isinstance(result, BaseException):
            pytest.fail(f"the {world_size}-process group failed: {result!r}")
        return result

    return get


def _ids(world_size: int, kind: str) -> list[str]:
    return sorted({c.fn for c in cases(world_size) if c.kind == kind})


def _params(kind: str) -> list[Any]:
    return [pytest.param(ws, fn, id=f"ws{ws}-{fn}") for ws in WORLD_SIZES for fn in _ids(ws, kind)]


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------


def _compare(result: GroupResult, kind: str, fn: str) -> None:
    selected = [c for c in cases(result.world_size) if c.kind == kind and c.fn == fn]
    assert selected
    bad = []
    for case in selected:
        got = result.tensor(case.id)
        if not same_bits(got, reference(case)):
            bad.append(case.id)
    assert not bad, f"sharded != unsharded on {result.world_size} ranks: {bad}"


@pytest.mark.parametrize(("world_size", "fn"), _params("gen"))
def test_dtensor_init_matches_single_process(group: Any, world_size: int, fn: str) -> None:
    """fastinit.torch._dtensor.<fn>(dtensor, generator=g) gathered == fastinit.torch.<fn>(plain,
    generator=g), over Shard(0), Shard(1), Replicate, uneven and empty shards, 2x2 meshes and
    four dtypes."""
    _compare(group(world_size), "gen", fn)


@pytest.mark.parametrize(("world_size", "fn"), _params("seed"))
def test_explicit_seed_matches_core(group: Any, world_size: int, fn: str) -> None:
    _compare(group(world_size), "seed", fn)


@pytest.mark.parametrize(("world_size", "fn"), _params("apply"))
def test_apply_to_dtensor_matches_core(group: Any, world_size: int, fn: str) -> None:
    """apply_to_dtensor(<core fill or scheme>, ...): fans come from the global shape."""
    _compare(group(world_size), "apply", fn)


@pytest.mark.parametrize(("world_size", "fn"), _params("torch"))
def test_fastinit_torch_routes_dtensors(group: Any, world_size: int, fn: str) -> None:
    result = group(world_size)
    _require_routing(result)
    _compare(result, "torch", fn)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_shard_spec_matches_torch_layout(group: Any, world_size: int) -> None:
    group(world_size).check("layouts")


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_unsupported_placements_and_bad_arguments_raise(group: Any, world_size: int) -> None:
    group(world_size).check("errors")


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_seed_broadcast(group: Any, world_size: int) -> None:
    """Ranks seeded differently agree (rank 0's draw wins); each rank's generator advances by
    one draw; one broadcast per mesh dimension, none for an explicit seed."""
    result = group(world_size)
    result.check("seeds")
    expected = torch.empty(7, 5)
    ftorch.uniform_(expected, generator=_generator(1000))
    assert same_bits(result.tensor("seeds:broadcast"), expected)
    for rank_status in result.status:
        assert rank_status["seeds"]["one_draw_per_rank"]
        assert rank_status["seeds"]["explicit_seed_no_collective"]
        assert rank_status["seeds"]["broadcasts_1d"] == ["broadcast"] * (world_size > 1)
        if world_size == 4:
            assert rank_status["seeds"]["broadcasts_2d"] == ["broadcast"] * 2
    nosync = result.tensor("seeds:nosync")
    if world_size == 1:
        assert same_bits(nosync, expected)
    else:
        # Rank 0's rows are right, the others were drawn from other generators.
        assert same_bits(
            nosync[: 4 if world_size == 2 else 2], expected[: 4 if world_size == 2 else 2]
        )
        assert not same_bits(nosync, expected)


@pytest.fixture(scope="module")
def plain() -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plain_model()


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fsdp2_materialize_matches_unsharded(
    group: Any, plain: dict[str, torch.Tensor], world_size: int
) -> None:
    """fully_shard on meta + materialize_sharded_ == fastinit.torch.materialize_ unsharded."""
    result = group(world_size)
    result.check("fsdp")
    for name, ref in plain.items():
        assert same_bits(result.tensor(f"fsdp:{name}"), ref), name


def _require_routing(result: GroupResult) -> None:
    if not result.check("fastinit.torch routes DTensors"):
        pytest.skip(
            "fastinit.torch does not route DTensors to fastinit.torch._dtensor yet "
            "(the integration lines are in docs/sharded.md)"
        )


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fastinit_torch_materialize_fsdp2(
    group: Any, plain: dict[str, torch.Tensor], world_size: int
) -> None:
    """fastinit.torch.materialize_ on an FSDP2 model delegates to materialize_sharded_."""
    result = group(world_size)
    _require_routing(result)
    for name, ref in plain.items():
        assert same_bits(result.tensor(f"torch_fsdp:{name}"), ref), name


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fastinit_torch_seed_broadcast(group: Any, world_size: int) -> None:
    """fastinit.torch.normal_(dtensor), generator=None, ranks seeded 1000 + rank: every rank
    uses rank 0's draw."""
    result = group(world_size)
    _require_routing(result)
    expected = ftorch.normal_(torch.empty(7, 5), 0.5, 2.0, generator=_generator(1000))
    assert same_bits(result.tensor("torch_seeds"), expected)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fsdp2_materialize_unseeded_uses_rank0_base_seed(group: Any, world_size: int) -> None:
    """seed=None, ranks seeded 1000 + rank: the model of rank 0's base seed, on every rank."""
    result = group(world_size)
    result.check("fsdp_unseeded")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1000)
        with torch.device("meta"):
            model = Model()
        ftorch.materialize_(model)
    for name, ref in model.named_parameters():
        assert same_bits(result.tensor(f"fsdp_unseeded:{name}"), ref.detach()), name


def test_fsdp2_two_ranks_equal_one_rank(group: Any) -> None:
    one, two = group(1), group(2)
    one.check("fsdp")
    two.check("fsdp")
    names = [k for k in one.tensors if k.startswith("fsdp:")]
    with torch.device("meta"):
        assert len(names) == len(list(Model().parameters()))
    for name in names:
        assert same_bits(one.tensor(name), two.tensor(name)), name


def test_fsdp2_over_tensor_parallel_2x2(group: Any, plain: dict[str, torch.Tensor]) -> None:
    """_StridedShard placements (FSDP2 over TP on a 2x2 mesh): shard_spec's boxes hold
    torch's values, and materialization equals the unsharded model."""
    result = group(4)
    placements = result.check("strided_layout")
    assert any("_StridedShard" in p for p in placements), placements
    result.check("fsdp_tp")
    for name, ref in plain.items():
        assert same_bits(result.tensor(f"fsdp_tp:{name}"), ref), name


def test_is_dtensor_and_routing_without_distributed() -> None:
    """In a process without torch.distributed: plain tensors are not DTensors, and routed()
    sends them to fastinit.torch (same values as fastinit.torch itself)."""
    assert not _dtensor.is_dtensor(torch.zeros(2))
    a, b = torch.empty(6, 4), torch.empty(6, 4)
    with _patch.routed():
        assert torch.nn.init.kaiming_uniform_ is not _target.ORIGINALS["kaiming_uniform_"]
        torch.nn.init.kaiming_uniform_(a, generator=_generator(3))
    assert torch.nn.init.kaiming_uniform_ is _target.ORIGINALS["kaiming_uniform_"]
    ftorch.kaiming_uniform_(b, generator=_generator(3))
    assert same_bits(a, b)


def _flat(runs: list[range]) -> list[int]:
    return [i for r in runs for i in r]


def test_chunk_rule_matches_torch_chunk() -> None:
    """The index bookkeeping of shard_spec follows torch.chunk (uneven and empty chunks)."""
    for n in range(0, 23):
        for k in range(1, 7):
            chunks = torch.arange(n).chunk(k) if n else ()
            for c in range(k):
                want = chunks[c].tolist() if c < len(chunks) else []
                assert _flat(_dtensor._chunk([range(n)], k, c)) == want, (n, k, c)


def test_strided_rule_matches_torch() -> None:
    """_StridedShard's index set: torch's own definition, where this torch exposes it."""
    try:
        from torch.distributed.tensor.placement_types import (
            _StridedShard,
            _StridedShardOffsetMode,
        )
    except ImportError:
        pytest.skip("this torch has no _StridedShard offset API to compare with")
    for n in range(0, 19):
        for sf in (1, 2, 3, 4):
            for k in (1, 2, 3):
                p = _StridedShard(0, split_factor=sf)
                for c in range(k):
                    size, offsets = p.local_shard_size_and_offset(
                        n, k, c, _StridedShardOffsetMode.ALL
                    )
                    got = _flat(_dtensor._strided_chunk([range(n)], sf, k, c))
                    want = offsets if isinstance(offsets, list) else []
                    assert len(got) == size and got == want, (n, sf, k, c)
