"""Helpers for the tests against real model libraries (transformers, timm, torchtitan).

Nothing here copies library code: the libraries are imported and run as their users do.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

P_MIN = 1e-4
SAMPLE = 200_000

# In-place torch ops that *make* initial values (random draws and fills), on any tensor:
# torchtitan draws q, k and v into temporaries and copies them into the fused weight, so a
# draw counts wherever it lands. Copies and arithmetic on values made elsewhere (timm's
# `head.weight.mul_(head_init_scale)`) make no values.
INIT_OPS = frozenset(
    {
        "normal_",
        "uniform_",
        "fill_",
        "zero_",
        "random_",
        "bernoulli_",
        "exponential_",
        "log_normal_",
        "cauchy_",
        "geometric_",
        "erfinv_",
    }
)


def require(module: str, why: str = "") -> Any:
    """Import ``module`` or skip the test with a printed reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{module} is not installed ({exc}){': ' + why if why else ''}"
        print(f"SKIP: {reason}")
        pytest.skip(reason, allow_module_level=True)


class _Placeholder(type):
    """A name timm imports from torchvision; using it raises ImportError."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"{cls.__qualname__} needs torchvision, which is not installed")


def _placeholder(name: str) -> type:
    return _Placeholder(name.rsplit(".", 1)[-1], (), {"__qualname__": name})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{self.__name__}.{name}")


class _NoTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm() -> Any:
    """Import the real timm; without torchvision, through placeholders that exist only
    while timm's top-level imports run.

    timm (every release from 0.9 to 1.0.31) imports ``torchvision`` at the top of
    ``timm.layers``, ``timm.data`` and ``timm.utils``, although building and initializing
    models (what these tests do) never uses it. The only torchvision wheel available here
    is a CUDA build that cannot load against the CPU torch. So when ``import torchvision``
    fails, the names timm binds from it are placeholders that raise ImportError if anything
    uses them, and the placeholder modules and their finder are removed again right after
    the import: nothing else in the process sees a torchvision.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:
        pass
    else:
        return require("timm")
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    finder = _NoTorchvision()
    sys.meta_path.insert(0, finder)
    try:
        return require("timm", "pip install timm (torchvision is not needed for these tests)")
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]


class TorchWrites(torch.overrides.TorchFunctionMode):
    """Counts the elements torch's own in-place init ops write (fastinit's writes are not
    torch ops, so they are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, int, str]] = []  # (storage pointer, elements, op)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in INIT_OPS and args and isinstance(args[0], torch.Tensor):
            t = args[0]
            if not t.is_meta:
                self.writes.append((t.untyped_storage().data_ptr(), t.numel(), name))
        return func(*args, **(kwargs or {}))

    def torch_share(self, model: torch.nn.Module) -> tuple[float, dict[str, int]]:
        """(elements torch's init ops made / the model's parameter elements, per op)."""
        total = sum(p.numel() for p in model.parameters())
        per_op: dict[str, int] = {}
        for _ptr, n, op in self.writes:
            per_op[op] = per_op.get(op, 0) + n
        return sum(per_op.values()) / total, per_op


@contextlib.contextmanager
def counting() -> Iterator[TorchWrites]:
    with TorchWrites() as mode:
        yield mode


def _sample(t: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    x = t.detach().reshape(-1).double().numpy()
    if x.size > SAMPLE:
        x = rng.choice(x, SAMPLE, replace=False)
    return x


def assert_same_laws(ours: torch.nn.Module, default: torch.nn.Module) -> None:
    """Every parameter of ``ours`` follows the law of the same parameter of ``default``
    (two-sample KS test, constants equal), and every buffer is identical."""
    rng = np.random.default_rng(0)
    a = dict(ours.named_parameters(remove_duplicate=False))
    b = dict(default.named_parameters(remove_duplicate=False))
    assert list(a) == list(b)
    bad = []
    for name, p in a.items():
        q = b[name]
        assert p.shape == q.shape and p.dtype == q.dtype, name
        assert not p.is_meta, name
        x, y = _sample(p, rng), _sample(q, rng)
        if y.min() == y.max() or x.min() == x.max():
            if not (x.min() == x.max() == y.min() == y.max()):
                bad.append(f"{name}: constant {y[0]} expected, got [{x.min()}, {x.max()}]")
            continue
        pvalue = stats.ks_2samp(x, y).pvalue
        if pvalue < P_MIN:
            bad.append(
                f"{name}: KS p={pvalue:.2g}, mean/std {x.mean():.4g}/{x.std():.4g} "
                f"vs default {y.mean():.4g}/{y.std():.4g}"
            )
    assert not bad, "\n".join(bad)
    a_buf = dict(ours.named_buffers(remove_duplicate=False))
    b_buf = dict(default.named_buffers(remove_duplicate=False))
    assert list(a_buf) == list(b_buf)
    for name, t in a_buf.items():
        assert torch.equal(t, b_buf[name]), f"buffer {name} differs from the default build"


def assert_ties_as(ours: torch.nn.Module, default: torch.nn.Module) -> None:
    """The same parameters are tied (one object) in both models."""

    def groups(m: torch.nn.Module) -> set[tuple[str, ...]]:
        ids: dict[int, list[str]] = {}
        for n, p in m.named_parameters(remove_duplicate=False):
            ids.setdefault(id(p), []).append(n)
        return {tuple(v) for v in ids.values() if len(v) > 1}

    assert groups(ours) == groups(default)
