"""How :func:`fastinit.torch.patched` reaches the init code of real model stacks.

Model code holds its init functions in every possible way: module attributes, dicts captured
at import (transformers' ``TORCH_INIT_FUNCTIONS``), ``functools.partial`` objects in configs
and closures (torchtitan), names imported from a helper module (timm), and tensor methods
(``w.uniform_(...)``, timm's ``trunc_normal_`` internals). Replacing module attributes misses
most of them, and leaks wherever a library copied a replaced attribute while it was replaced.

So fastinit never replaces a binding. Two mechanisms, both undone exactly:

- **Code routing.** Every function named in :data:`REGISTRY` keeps its identity, but while
  fastinit is installed its ``__code__`` is a trampoline with the same signature that calls
  :func:`_route`; the original code is kept in a clone of the function. Whoever holds the
  function -- an attribute, a dict, a partial, a closure -- reaches the trampoline. The
  trampoline routes to fastinit only for threads that asked for it (see *Threads*), and
  otherwise runs the original code, so other threads see torch's behaviour unchanged.
- **A** ``torch.overrides.TorchFunctionMode`` pushed by :func:`enter` on the calling thread
  routes ``Tensor.normal_``, ``uniform_``, ``fill_`` and ``zero_`` on tensors fastinit fills
  natively to the matching ``fastinit.torch`` function with the same arguments (the same
  law; torch's own checks and errors for anything else), and, inside
  :func:`fastinit.torch.materialize_`, hands the thread's generator to random torch calls
  that were given none.

A library that is not imported costs nothing: its entries are installed when the library
finishes importing (an import hook is active while anything is installed) and its functions
get their own code back when the last user leaves. Nothing else is touched: leaving
restores every function's code and removes the import hook. (The trampolines find
:func:`_route` through ``sys.modules``, not through a name added to the library's module: a
thread already inside a trampoline when another thread leaves must still reach it, and then
runs the original code.)

Threads: routing is per thread. :func:`enter` / :func:`leave` (what ``patched()`` uses) turn
it on for the calling thread only; :func:`enable_global` / :func:`disable_global` (what
``patch()`` / ``unpatch()`` use) turn code routing on for every thread. A thread started
inside ``patched()`` is not patched. The installation itself is shared and reference
counted, so a thread leaving its ``patched()`` never unpatches another one.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import math
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = [
    "MODEL_INITIALIZERS",
    "REGISTRY",
    "InitPath",
    "ModelInitializer",
    "disable_global",
    "enable_global",
    "enter",
    "installed_functions",
    "is_active",
    "leave",
    "model_initializer",
    "parameters_on_meta",
    "thread_generator",
    "using_generator",
]

DropIns = Mapping[str, Callable[..., Any]]

# --------------------------------------------------------------------------------------------
# the registry: one declarative entry per library
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitPath:
    """Init functions of one module of one library and what fastinit routes them to.

    Attributes
    ----------
    library : str
        The distribution name, for the docs and the reports.
    module : str
        The module that *defines* the functions (every other holder is reached through them).
    routes : mapping of str to str or callable
        Function name -> the ``fastinit.torch`` function of the same law (a name), or an
        adapter ``make(drop_ins) -> replacement`` for functions whose arguments differ.
    note : str
        What this entry covers, for the docs.
    """

    library: str
    module: str
    routes: Mapping[str, str | Callable[[DropIns], Callable[..., Any]]]
    note: str = ""


def _timm_trunc_normal(d: DropIns) -> Callable[..., Any]:
    # timm.layers.trunc_normal_(tensor, mean, std, a, b): absolute bounds, torch's semantics
    # (timm samples by inverse CDF and clamps: the same truncated normal).
    def trunc_normal_(
        tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
    ) -> Tensor:
        return d["trunc_normal_"](tensor, mean, std, a, b)

    return trunc_normal_


def _timm_trunc_normal_tf(d: DropIns) -> Callable[..., Any]:
    # trunc_normal_tf_: N(0, 1) truncated to [a, b] (std units), then * std + mean, i.e. the
    # normal N(mean, std^2) truncated to [mean + a*std, mean + b*std].
    def trunc_normal_tf_(
        tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
    ) -> Tensor:
        if not (std > 0 and math.isfinite(std) and math.isfinite(mean)):
            return _original("timm.layers.weight_init", "trunc_normal_tf_")(tensor, mean, std, a, b)
        return d["trunc_normal_"](tensor, mean, std, mean + a * std, mean + b * std)

    return trunc_normal_tf_


def _timm_variance_scaling(d: DropIns) -> Callable[..., Any]:
    # timm's variance_scaling_: variance = scale / fan (torch layout fans, fan_avg = mean);
    # truncated_normal on [-2, 2] std units with std = sqrt(variance) / .8796..., as Keras.
    def variance_scaling_(
        tensor: Tensor, scale: float = 1.0, mode: str = "fan_in", distribution: str = "normal"
    ) -> Tensor:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(tensor)
        denoms = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        if mode not in denoms or distribution not in ("truncated_normal", "normal", "uniform"):
            return _original("timm.layers.weight_init", "variance_scaling_")(
                tensor, scale, mode, distribution
            )
        variance = scale / denoms[mode]
        if distribution == "truncated_normal":
            std = math.sqrt(variance) / 0.87962566103423978
            return d["trunc_normal_"](tensor, 0.0, std, -2.0 * std, 2.0 * std)
        if distribution == "normal":
            return d["normal_"](tensor, 0.0, math.sqrt(variance))
        bound = math.sqrt(3 * variance)
        return d["uniform_"](tensor, -bound, bound)

    return variance_scaling_


def _timm_lecun_normal(d: DropIns) -> Callable[..., Any]:
    def lecun_normal_(tensor: Tensor) -> None:
        _timm_variance_scaling(d)(tensor, 1.0, "fan_in", "truncated_normal")

    return lecun_normal_


_TORCH_INIT_NAMES = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)

#: Every third-party init path fastinit routes. transformers and torchtitan need no entry of
#: their own: transformers' ``TORCH_INIT_FUNCTIONS`` and the wrappers of
#: ``transformers.initialization`` (which keep the ``_is_hf_initialized`` check), and
#: torchtitan's ``functools.partial(nn.init.trunc_normal_, ...)`` objects, all hold the very
#: function objects of ``torch.nn.init``, whose code is routed.
REGISTRY: tuple[InitPath, ...] = (
    InitPath(
        "torch",
        "torch.nn.init",
        {name: name for name in _TORCH_INIT_NAMES},
        "every holder of torch.nn.init's functions: modules' reset_parameters, "
        "transformers' TORCH_INIT_FUNCTIONS, torchtitan's partials and closures",
    ),
    InitPath(
        "timm",
        "timm.layers.weight_init",
        {
            "trunc_normal_": _timm_trunc_normal,
            "trunc_normal_tf_": _timm_trunc_normal_tf,
            "variance_scaling_": _timm_variance_scaling,
            "lecun_normal_": _timm_lecun_normal,
        },
        "timm's own init helpers (ViT, ConvNeXt, EfficientNet, ...), wherever imported",
    ),
)

# --------------------------------------------------------------------------------------------
# model initializers, for materialize_
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInitializer:
    """How to run a library's own whole-model initializer.

    Attributes
    ----------
    library : str
    matches : callable
        ``matches(model) -> bool``; only called when the library is imported.
    run : callable
        ``run(model, device)`` initializes every tensor of ``model`` in place.
    module : str
        A module of the library that must already be imported for the entry to apply.
    """

    library: str
    module: str
    matches: Callable[[torch.nn.Module], bool]
    run: Callable[[torch.nn.Module, torch.device], None]


def _is_hf(model: torch.nn.Module) -> bool:
    base = getattr(sys.modules.get("transformers.modeling_utils"), "PreTrainedModel", None)
    return base is not None and isinstance(model, base)


def _run_hf(model: torch.nn.Module, device: torch.device) -> None:
    # transformers' own path: initialize_weights() over the model (each module's
    # _init_weights, honouring _is_hf_initialized), then the ties.
    for mod in model.modules():
        if "_is_hf_initialized" in mod.__dict__:
            del mod.__dict__["_is_hf_initialized"]
    model.init_weights()  # type: ignore[operator]


def _titan_entry(model: torch.nn.Module) -> Callable[..., Any] | None:
    for name in ("init_states", "init_weights"):
        method = getattr(model, name, None)
        if callable(method):
            try:
                params = inspect.signature(method).parameters
            except (TypeError, ValueError):
                continue
            if "buffer_device" in params:
                return method
    return None


def _is_titan(model: torch.nn.Module) -> bool:
    return type(model).__module__.startswith("torchtitan.") and _titan_entry(model) is not None


def _run_titan(model: torch.nn.Module, device: torch.device) -> None:
    entry = _titan_entry(model)
    assert entry is not None
    entry(buffer_device=device)


def _is_timm(model: torch.nn.Module) -> bool:
    return type(model).__module__.startswith("timm.") and (
        callable(getattr(model, "init_weights", None)) or _timm_module_rule(model) is not None
    )


def _timm_module_rule(model: torch.nn.Module) -> Callable[..., Any] | None:
    # timm models without an init_weights method apply a module-level rule in __init__.
    convnext = sys.modules.get("timm.models.convnext")
    if convnext is not None and isinstance(model, convnext.ConvNeXt):
        return functools.partial(convnext._init_weights, head_init_scale=1.0)
    return None


def _run_timm(model: torch.nn.Module, device: torch.device) -> None:
    method = getattr(model, "init_weights", None)
    if callable(method):
        method()
        return
    rule = _timm_module_rule(model)
    assert rule is not None
    from timm.models import named_apply  # the library's own walker

    named_apply(rule, model)


#: The whole-model initializers materialize_ prefers, first match wins.
MODEL_INITIALIZERS: tuple[ModelInitializer, ...] = (
    ModelInitializer("transformers", "transformers.modeling_utils", _is_hf, _run_hf),
    ModelInitializer("torchtitan", "torchtitan", _is_titan, _run_titan),
    ModelInitializer("timm", "timm", _is_timm, _run_timm),
)


def model_initializer(model: torch.nn.Module) -> ModelInitializer | None:
    """The entry of :data:`MODEL_INITIALIZERS` for ``model``, or None."""
    for entry in MODEL_INITIALIZERS:
        if entry.module in sys.modules and entry.matches(model):
            return entry
    return None


# --------------------------------------------------------------------------------------------
# per-thread state
# --------------------------------------------------------------------------------------------


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.depth = 0  # nesting of enter()
        self.busy = False  # inside a routed call: nested calls take the original path
        self.modes: list[TorchFunctionMode] = []
        self.generators: dict[str, torch.Generator] | None = None
        self.written: set[int] | None = None  # storages written in place (recording_writes)


_state = _ThreadState()
_lock = threading.RLock()
_global = False
_users = 0  # threads inside enter() + 1 while enable_global() is in force
_drop_ins: DropIns = {}
# (function object, its original code)
_installed: dict[tuple[str, str], tuple[types.FunctionType, types.CodeType]] = {}
# (module, name) -> (the function the clone was made of, the clone); made again when the
# module's attribute is another function object by the next install
_clones: dict[tuple[str, str], tuple[types.FunctionType, types.FunctionType]] = {}
_replacements: dict[tuple[str, str], Callable[..., Any]] = {}
_route_keys: list[tuple[str, str]] = []
# The name the trampolines call _route by (tests look for it in a function's co_names).
_ROUTE_NAME = "_fastinit_route_"


def is_active() -> bool:
    """Whether calls on this thread are routed to fastinit now."""
    return _global or _state.depth > 0


def installed_functions() -> list[tuple[str, str]]:
    """(module, name) of every function whose code is routed now (for tests and docs)."""
    with _lock:
        return sorted(_installed)


def thread_generator(device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator :func:`using_generator` set for this thread and ``device``, or None."""
    gens = _state.generators
    if gens is None:
        return None
    return gens.get(torch.device(device).type)


class using_generator:
    """Context manager: random torch and fastinit calls on this thread that are given no
    generator draw from ``generators`` (device type -> generator) instead of torch's global
    default generator. Only in effect where the :class:`_InitMode` is active (inside
    :func:`enter`) for torch's own calls; fastinit's seeds always follow it."""

    def __init__(self, generators: Mapping[str, torch.Generator]) -> None:
        self._new = dict(generators)
        self._old: dict[str, torch.Generator] | None = None

    def __enter__(self) -> None:
        self._old = _state.generators
        _state.generators = self._new

    def __exit__(self, *exc: object) -> None:
        _state.generators = self._old


class recording_writes:
    """Context manager: collect, in ``storages`` (a new set if None; it is yielded), the
    storage addresses (``untyped_storage().data_ptr()``) of the tensors written in place on
    this thread: torch's in-place methods seen by the :class:`_InitMode` and fastinit's native
    fills. A write through ``t.data`` bumps the version counter of ``t.data``, not that of
    ``t``; the storage tells both."""

    def __init__(self, storages: set[int] | None = None) -> None:
        self.storages: set[int] = set() if storages is None else storages
        self._old: set[int] | None = None

    def __enter__(self) -> set[int]:
        self._old = _state.written
        _state.written = self.storages
        return self.storages

    def __exit__(self, *exc: object) -> None:
        _state.written = self._old


def note_write(t: Any) -> None:
    """Record ``t``'s storage as written, where :class:`recording_writes` is active."""
    rec = _state.written
    if rec is None or not isinstance(t, Tensor):
        return
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # no plain storage (subclasses, functional)
        return
    if ptr:
        rec.add(ptr)


# In-place methods that write no values.
_NOT_WRITES = frozenset({"requires_grad_", "share_memory_", "detach_", "retain_grad"})


def _writes_in_place(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name.startswith("__"):
        return name in ("__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__")
    return name.endswith("_") and name not in _NOT_WRITES


# --------------------------------------------------------------------------------------------
# code routing
# --------------------------------------------------------------------------------------------


def _original(module: str, name: str) -> Callable[..., Any]:
    """The original behaviour of a registered function (its clone while routed)."""
    entry = _clones.get((module, name))
    if entry is not None:
        return entry[1]
    return getattr(sys.modules[module], name)  # type: ignore[no-any-return,unused-ignore]


def _route(index: int, *args: Any, **kwargs: Any) -> Any:
    key = _route_keys[index]
    st = _state
    if (_global or st.depth > 0) and not st.busy:
        replacement = _replacements.get(key)
        if replacement is not None:
            st.busy = True
            try:
                return replacement(*args, **kwargs)
            finally:
                st.busy = False
    return _clones[key][1](*args, **kwargs)


_fastinit_route_ = _route  # what the trampolines call (_ROUTE_NAME)


def _trampoline(fn: types.FunctionType, index: int) -> types.CodeType:
    """Code with ``fn``'s signature that calls ``_route(index, ...)`` with every argument."""
    code = fn.__code__
    if code.co_freevars:
        raise TypeError(f"{fn.__qualname__} is a closure; fastinit cannot route it")
    sig = inspect.signature(fn)
    params, call = [], []
    star = False
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            params.append(p.name)
            call.append(p.name)
        elif p.kind is p.POSITIONAL_OR_KEYWORD:
            params.append(p.name)
            call.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
            call.append(f"*{p.name}")
            star = True
        elif p.kind is p.KEYWORD_ONLY:
            if not star:
                params.append("*")
                star = True
            params.append(p.name)
            call.append(f"{p.name}={p.name}")
        else:
            params.append(f"**{p.name}")
            call.append(f"**{p.name}")
    if any(p.kind is p.POSITIONAL_ONLY for p in sig.parameters.values()):
        last = max(i for i, p in enumerate(sig.parameters.values()) if p.kind is p.POSITIONAL_ONLY)
        params.insert(last + 1, "/")
    # sys.modules, not a global of the library's module: see the module docstring.
    src = (
        f"def {code.co_name}({', '.join(params)}):\n"
        f"    return __import__('sys').modules[{__name__!r}].{_ROUTE_NAME}"
        f"({index}, {', '.join(call)})\n"
    )
    scope: dict[str, Any] = {}
    exec(compile(src, code.co_filename, "exec"), scope)
    new: types.CodeType = scope[code.co_name].__code__.replace(co_firstlineno=code.co_firstlineno)
    if sys.version_info >= (3, 11):  # co_qualname exists from 3.11
        new = new.replace(co_qualname=code.co_qualname)
    return new


def _install_module(path: InitPath, module: types.ModuleType) -> None:
    for name, route in path.routes.items():
        key = (path.module, name)
        if key in _installed:
            continue
        fn = vars(module).get(name)
        if not isinstance(fn, types.FunctionType):
            continue  # a version of the library without it
        if str(getattr(fn, "__module__", "") or "").startswith("fastinit"):
            continue  # fastinit's own drop-in bound there (e.g. by ``_patch.routed()``)
        cached = _clones.get(key)
        if cached is None or cached[0] is not fn:
            clone = types.FunctionType(
                fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
            )
            clone.__kwdefaults__ = fn.__kwdefaults__
            clone.__qualname__ = fn.__qualname__
            _clones[key] = (fn, clone)
        replacement = _drop_ins[route] if isinstance(route, str) else route(_drop_ins)
        if key not in _route_keys:
            _route_keys.append(key)
        index = _route_keys.index(key)
        code = fn.__code__
        fn.__code__ = _trampoline(fn, index)
        _installed[key] = (fn, code)
        _replacements[key] = replacement


def _install_loaded() -> None:
    for path in REGISTRY:
        module = sys.modules.get(path.module)
        if isinstance(module, types.ModuleType):
            _install_module(path, module)


def _uninstall() -> None:
    for fn, code in _installed.values():
        fn.__code__ = code
    _installed.clear()
    _replacements.clear()
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


class _Loader(importlib.abc.Loader):
    """Wraps a registry module's loader: routes its functions once it has executed."""

    def __init__(self, inner: importlib.abc.Loader, path: InitPath) -> None:
        self.inner = inner
        self.path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.loader = self.inner  # type: ignore[union-attr]
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.inner
        self.inner.exec_module(module)
        with _lock:
            if _users > 0:
                _install_module(self.path, module)


class _Finder(importlib.abc.MetaPathFinder):
    """While anything is installed: registry modules imported later get routed too."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = next((p for p in REGISTRY if p.module == fullname), None)
        if entry is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, entry)  # type: ignore[arg-type,unused-ignore]
                return spec
        return None


_finder = _Finder()


def _acquire(drop_ins: DropIns) -> None:
    global _users, _drop_ins
    with _lock:
        if _users == 0:
            _drop_ins = dict(drop_ins)
            _install_loaded()
            sys.meta_path.insert(0, _finder)
        _users += 1


def _release() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users == 0:
            _uninstall()


# --------------------------------------------------------------------------------------------
# the tensor-method mode
# --------------------------------------------------------------------------------------------

_RANDOM_METHODS = frozenset(
    {
        Tensor.normal_,
        Tensor.uniform_,
        Tensor.bernoulli_,
        Tensor.random_,
        Tensor.exponential_,
        Tensor.geometric_,
        Tensor.log_normal_,
        Tensor.cauchy_,
    }
)
_RANDOM_FACTORIES = frozenset(
    {
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.rand_like,
        torch.randn_like,
        torch.randint_like,
        torch.poisson,
    }
)


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _routable(t: Any) -> bool:
    # Only where fastinit's drop-in would fill natively and torch would not raise: plain
    # tensors (no autograd error to reproduce), float dtypes on the CPU.
    return (
        type(t) in (Tensor, torch.nn.Parameter)
        and t.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
        and t.device.type == "cpu"
        and not (t.requires_grad and torch.is_grad_enabled())
        and not t.is_neg()
    )


def _method_route(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The routed result of a tensor method, or NotImplemented to let torch run it."""
    if not args or not _routable(args[0]):
        return NotImplemented
    t = args[0]
    d = _drop_ins
    if func is Tensor.normal_:
        bound = _bind(args[1:], kwargs, ("mean", "std"), (0.0, 1.0))
        if bound is None:
            return NotImplemented
        (mean, std), gen = bound
        if not (std >= 0 and math.isfinite(mean) and math.isfinite(std)):
            return NotImplemented
        return d["normal_"](t, mean, std, gen)
    if func is Tensor.uniform_:
        bound = _bind(args[1:], kwargs, ("from", "to"), (0.0, 1.0))
        if bound is None:
            return NotImplemented
        (low, high), gen = bound
        if not (low <= high and math.isfinite(low) and math.isfinite(high)):
            return NotImplemented
        return d["uniform_"](t, low, high, gen)
    if func is Tensor.fill_:
        if len(args) != 2 or kwargs:
            return NotImplemented
        value = _real(args[1])
        if value is None:
            return NotImplemented
        return d["constant_"](t, value)
    if func is Tensor.zero_:
        if len(args) != 1 or kwargs:
            return NotImplemented
        return d["zeros_"](t)
    return NotImplemented


def _bind(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    names: tuple[str, str],
    defaults: tuple[float, float],
) -> tuple[tuple[float, float], torch.Generator | None] | None:
    if len(args) > 2:
        return None
    values = list(defaults)
    for i, a in enumerate(args):
        values[i] = a
    extra = dict(kwargs)
    gen = extra.pop("generator", None)
    for i, n in enumerate(names):
        if n in extra:
            if i < len(args):
                return None
            values[i] = extra.pop(n)
    if extra:
        return None
    reals = [_real(v) for v in values]
    if reals[0] is None or reals[1] is None:
        return None
    return (reals[0], reals[1]), gen


class _InitMode(TorchFunctionMode):
    """Routes init-style tensor methods to fastinit on this thread; see the module doc."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = {} if kwargs is None else kwargs
        st = _state
        if st.written is not None and args and _writes_in_place(func):
            note_write(args[0])
        if st.depth > 0 and not st.busy:
            if func in _METHODS:
                st.busy = True
                try:
                    out = _method_route(func, args, kwargs)
                finally:
                    st.busy = False
                if out is not NotImplemented:
                    return out
            gens = st.generators
            if gens is not None and kwargs.get("generator") is None:
                if func in _RANDOM_METHODS and args and isinstance(args[0], Tensor):
                    gen = gens.get(args[0].device.type)
                    if gen is not None:
                        kwargs = {**kwargs, "generator": gen}
                elif func in _RANDOM_FACTORIES:
                    gen = _factory_generator(gens, args, kwargs)
                    if gen is not None:
                        kwargs = {**kwargs, "generator": gen}
        return func(*args, **kwargs)


_METHODS = frozenset({Tensor.normal_, Tensor.uniform_, Tensor.fill_, Tensor.zero_})


def _factory_generator(
    gens: Mapping[str, torch.Generator], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> torch.Generator | None:
    like = next((a for a in args if isinstance(a, Tensor)), None)
    if like is not None:
        device = like.device if kwargs.get("device") is None else torch.device(kwargs["device"])
    else:
        given = kwargs.get("device")
        device = torch.device(given) if given is not None else torch.get_default_device()
    return gens.get(device.type)


# --------------------------------------------------------------------------------------------
# entering and leaving
# --------------------------------------------------------------------------------------------


def enter(drop_ins: DropIns) -> None:
    """Route this thread's init calls to ``drop_ins`` until the matching :func:`leave`."""
    _acquire(drop_ins)
    st = _state
    st.depth += 1
    if st.depth == 1:
        mode = _InitMode()
        mode.__enter__()
        st.modes.append(mode)


def leave() -> None:
    """Undo the matching :func:`enter` on this thread."""
    st = _state
    if st.depth <= 0:
        raise RuntimeError("fastinit: leave() without enter() on this thread")
    st.depth -= 1
    try:
        if st.depth == 0 and st.modes:
            st.modes.pop().__exit__(None, None, None)
    finally:
        _release()


def enable_global(drop_ins: DropIns) -> bool:
    """Route every thread's calls of the registry functions; False if already enabled."""
    global _global
    with _lock:
        if _global:
            return False
        _acquire(drop_ins)
        _global = True
        return True


def disable_global() -> bool:
    """Undo :func:`enable_global`; False if it was not in force."""
    global _global
    with _lock:
        if not _global:
            return False
        _global = False
        _release()
        return True


@dataclass
class _Scope:
    """Helper for tests: every object routing touches, to compare before and after."""

    codes: dict[tuple[str, str], types.CodeType] = field(default_factory=dict)
    names: dict[str, bool] = field(default_factory=dict)
    meta_path: list[Any] = field(default_factory=list)


def touched_state() -> _Scope:
    """A snapshot of everything :func:`enter` may change (for tests)."""
    scope = _Scope(meta_path=list(sys.meta_path))
    for path in REGISTRY:
        module = sys.modules.get(path.module)
        if module is None:
            continue
        scope.names[path.module] = _ROUTE_NAME in vars(module)
        for name in path.routes:
            fn = vars(module).get(name)
            if isinstance(fn, types.FunctionType):
                scope.codes[(path.module, name)] = fn.__code__
    return scope


def _iter_registry_functions() -> Iterator[tuple[InitPath, str]]:
    for path in REGISTRY:
        for name in path.routes:
            yield path, name


# --------------------------------------------------------------------------------------------
# empty_init: parameters on meta, buffers real (accelerate's include_buffers=False)
# --------------------------------------------------------------------------------------------


class _EmptyState(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        # id(original Parameter) -> (original, its meta replacement) for this thread's outermost
        # block: a Parameter registered in two modules gets one replacement, so the tie holds
        # (the original is kept so that its id is not reused while the block runs).
        self.moved: dict[int, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}


_empty_state = _EmptyState()
_empty_users = 0
# what ``nn.Module.register_parameter`` was when the outermost block entered (it may be an
# outer wrapper, e.g. accelerate's ``init_empty_weights``): called through, and restored on
# the last exit
_register_parameter: Callable[..., Any] = torch.nn.Module.register_parameter


def _register_parameter_on_meta(
    self: torch.nn.Module, name: str, param: torch.nn.Parameter | None
) -> None:
    _register_parameter(self, name, param)
    if param is None or _empty_state.depth == 0 or param.is_meta or param.dim() < 2:
        return
    p = self._parameters[name]
    assert p is not None
    moved = _empty_state.moved.get(id(p))
    if moved is not None and moved[0] is p:
        self._parameters[name] = moved[1]  # registered before: the same meta Parameter
        return
    attrs = dict(p.__dict__)
    if type(p) is torch.nn.Parameter:
        new = torch.nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
    else:  # a Parameter subclass: rebuilt as accelerate does
        new = type(p)(p.detach().to("meta"), **{**attrs, "requires_grad": p.requires_grad})
    new.__dict__.update(attrs)
    _empty_state.moved[id(p)] = (p, new)
    self._parameters[name] = new


class parameters_on_meta:
    """Context manager: parameters of two or more dimensions registered on this thread go to
    the meta device (see :func:`fastinit.torch.empty_init`)."""

    def __enter__(self) -> parameters_on_meta:
        global _empty_users, _register_parameter
        with _lock:
            if _empty_users == 0:
                current = torch.nn.Module.register_parameter
                if current is not _register_parameter_on_meta:
                    _register_parameter = current
                torch.nn.Module.register_parameter = _register_parameter_on_meta  # type: ignore[method-assign]
            _empty_users += 1
        _empty_state.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _empty_users
        _empty_state.depth -= 1
        if _empty_state.depth == 0:
            _empty_state.moved.clear()
        with _lock:
            _empty_users -= 1
            # restored only if still ours: whoever replaced it inside the block owns it now
            if (
                _empty_users == 0
                and torch.nn.Module.register_parameter is _register_parameter_on_meta
            ):
                torch.nn.Module.register_parameter = _register_parameter  # type: ignore[method-assign]
