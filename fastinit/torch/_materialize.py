"""Model-level initialization: :func:`materialize_` (meta -> real, seeded per qualified name)
and :func:`apply_` (rules to modules and parameters)."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._stream import wrap_u64
from . import _dtensor, _integrations, _nn_init, _patch
from ._target import ORIGINALS, draw_seed, warn_outside

__all__ = ["apply_", "empty_init", "materialize_", "materialize_sharded_"]


def _derive_seed(base: int, name: str) -> int:
    """The 64-bit seed of the module or parameter ``name`` under base seed ``base``.

    ``blake2b(f"{base}/{name}", digest_size=8)`` read little-endian: the values a module gets
    depend on (base seed, its qualified name) only, not on the order modules are visited.
    """
    digest = hashlib.blake2b(f"{wrap_u64(base)}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _base_seed(seed: int | None) -> int:
    if seed is None:
        return draw_seed(None)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    return wrap_u64(seed)


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[Callable[[int], None]]:
    """Fork torch's RNG state for ``device`` (and the CPU); yield a function that seeds it.

    Native fills draw their seeds from the CPU default generator; torch's own kernels (the
    fallback for tensors fastinit does not fill) use the device's. Both are seeded, and both
    are restored on exit, so the caller's RNG state is left as it was.
    """
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[] if index is None else [index]):

        def seed(value: int) -> None:
            torch.default_generator.manual_seed(value)
            if index is not None:
                torch.cuda.default_generators[index].manual_seed(value)

        yield seed


def _post_order(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) children first, each module once, like construction order."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def visit(mod: nn.Module, name: str) -> None:
        if id(mod) in seen:
            return
        seen.add(id(mod))
        for child_name, child in mod._modules.items():
            if child is not None:
                visit(child, f"{name}.{child_name}" if name else child_name)
        out.append((name, mod))

    visit(module, "")
    return out


def _reset_keeping(reset: Callable[[], Any], kept: list[Tensor]) -> None:
    """Run a module's ``reset()`` without grad, then put the ``kept`` tensors (real before
    materialize_, so the caller's) back as they were, even when ``reset()`` raises."""
    saved = [(t, t.detach().clone()) for t in kept]
    with torch.no_grad():
        try:
            reset()
        finally:
            for t, copy in saved:
                t.copy_(copy)


def _reset_method(module: nn.Module) -> Callable[[], Any] | None:
    for attr in ("reset_parameters", "_reset_parameters"):
        method = getattr(module, attr, None)
        if callable(method):
            return method
    return None


_ONES_NAMES = frozenset({"weight", "scale", "gamma"})


def _default_rule(name: str, tensor: Tensor, is_buffer: bool) -> str:
    """Name of the fallback rule for a tensor whose module has no reset method."""
    if is_buffer or not tensor.is_floating_point():
        return "zeros_"
    if tensor.dim() >= 2:
        return "kaiming_uniform_"
    return "ones_" if name in _ONES_NAMES else "zeros_"


def _apply_default_rule(name: str, tensor: Tensor, is_buffer: bool) -> str:
    rule = _default_rule(name, tensor, is_buffer)
    if rule == "kaiming_uniform_":
        if tensor.numel() > 0:
            _nn_init.kaiming_uniform_(tensor, a=math.sqrt(5))
        return "kaiming_uniform_(a=sqrt(5))"
    if rule == "ones_":
        _nn_init.ones_(tensor)
    else:
        _nn_init.zeros_(tensor)
    return rule


def _direct_tensors(module: nn.Module) -> list[tuple[str, Tensor, bool]]:
    out: list[tuple[str, Tensor, bool]] = [
        (k, p, False) for k, p in module._parameters.items() if p is not None
    ]
    out += [(k, b, True) for k, b in module._buffers.items() if b is not None]
    return out


def _require_tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "progress=True needs the optional dependency tqdm: pip install tqdm "
            "(or pip install 'pyfastinit[progress]')"
        ) from exc
    return tqdm


@contextlib.contextmanager
def empty_init() -> Iterator[None]:
    """Build a model fast: its weights on the meta device, everything small real.

    accelerate's ``init_empty_weights(include_buffers=False)`` convention, for
    :func:`materialize_`: on this thread, every parameter of two or more dimensions
    registered inside the block goes to the meta device (nothing is written to it), while
    buffers (RoPE frequencies, position ids, masks) and parameters of fewer than two
    dimensions (biases, norm and layer scales, which some models compute in ``__init__``
    only, as timm's ``gamma = init_value * ones(dim)``) are real, initialized through
    fastinit (the block is also :func:`fastinit.torch.patched`). Then :func:`materialize_`
    allocates the weights and runs the model's own initializer on them, keeping the real
    tensors.

    Thread scope: per thread; other threads build normally.

    Examples
    --------
    >>> with fastinit.torch.empty_init():
    ...     model = AutoModelForCausalLM.from_config(cfg)
    >>> fastinit.torch.materialize_(model, seed=0)
    """
    with _integrations.parameters_on_meta(), _patch.patched():
        yield


def materialize_(
    module: nn.Module,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> nn.Module:
    """Allocate and initialize, in place, every meta-device parameter and buffer of ``module``.

    Everything runs under :func:`patched`, so every rule below initializes through fastinit.

    1. **The model's own initializer**, when it has one (``fastinit.torch._integrations.
       MODEL_INITIALIZERS``): transformers ``PreTrainedModel.init_weights()`` (each module's
       ``_init_weights``, ``_is_hf_initialized`` honoured, then the ties), torchtitan
       ``init_states(buffer_device=device)`` (or ``init_weights(buffer_device=)``), timm
       ``init_weights()`` (ConvNeXt: its module rule with ``head_init_scale=1``). It runs
       over the whole model; the tensors that were not on the meta device keep their values.
    2. Then, children first, every module with meta tensors that step 1 did not write runs its
       own ``reset_parameters`` (or ``_reset_parameters``, as ``nn.MultiheadAttention``). A
       module without one gets the fallback rule: floating parameters with 2+ dimensions
       ``kaiming_uniform_(a=sqrt(5))`` (U(±1/sqrt(fan_in)), as ``nn.Linear``); 0-/1-D ones
       named ``weight``, ``scale`` or ``gamma`` ones, others zeros; non-floating parameters
       zeros, with a ``UserWarning`` naming them.
    3. A meta **buffer** that nothing wrote raises ``ValueError`` naming it: buffers computed
       in ``__init__`` (RoPE frequencies) cannot be recovered from the meta device. Build
       with :func:`empty_init` (parameters on meta, buffers real) to keep them.

    Atomic: if anything raises, every module gets back the very tensors it had (the meta ones
    included), so a retry starts from the same state.

    Tied parameters stay tied (one allocation). Tensors that are not on the meta device keep
    their values: they are moved to ``device`` (cast to ``dtype`` if floating and ``dtype`` is
    given), or left as the very same object when already there, and no initializer overwrites
    them. A model with no meta tensor is only moved/cast, never re-initialized.

    Seeds: ``seed`` (an int; None draws one from torch's default generator, so
    ``torch.manual_seed`` governs it) is the base. Step 1 runs with a generator seeded to
    ``blake2b(f"{seed}/")``, and step 2 resets module ``q`` with one seeded to
    ``blake2b(f"{seed}/{q}")``: fastinit's seeds and the random torch calls that get no
    ``generator=`` (``Tensor.normal_``, ``torch.randperm``, ...; see
    ``fastinit.torch._integrations``) draw from it instead of torch's global generator. So the
    values depend on (seed, names) only, torch's global RNG state is neither read nor
    changed, and concurrent calls on several threads give the serial result.

    Parameters
    ----------
    module : torch.nn.Module
        A model built on the meta device (``with torch.device("meta"): model = Model()``) or
        under :func:`empty_init`.
    device : torch.device or str, optional
        Where to allocate.
    dtype : torch.dtype, optional
        Cast floating tensors to this dtype (allocated directly in it).
    seed : int, optional
        Base seed (see above).
    progress : bool, optional
        Show a tqdm progress bar (elements initialized). Needs the optional ``tqdm``.

    Returns
    -------
    torch.nn.Module
        ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    if any(_dtensor.is_dtensor(t) for t in (*module.parameters(), *module.buffers())):
        # FSDP2 / tensor-parallel models: every rank fills its own shards (fastinit.torch._dtensor).
        if dtype is not None:
            raise TypeError(
                "materialize_: dtype= is not supported for a model with DTensor parameters; "
                "choose the dtype before sharding (or use FSDP2's MixedPrecisionPolicy)"
            )
        return materialize_sharded_(module, device, seed)
    device = torch.device(device)
    tqdm = _require_tqdm() if progress else None
    base = _base_seed(seed)
    order = _post_order(module)
    # Every module's slots as they are now: restored if anything below fails (atomicity).
    saved = [
        (mod, dict(mod._parameters), dict(mod._buffers), mod.__dict__.get("_is_hf_initialized"))
        for _, mod in order
    ]
    try:
        _materialize_walk(module, order, device, dtype, base, tqdm)
    except BaseException:
        for mod, params, buffers, flag in saved:
            mod._parameters.clear()
            mod._parameters.update(params)
            mod._buffers.clear()
            mod._buffers.update(buffers)
            if flag is None:
                mod.__dict__.pop("_is_hf_initialized", None)
            else:
                mod.__dict__["_is_hf_initialized"] = flag
        raise
    return module


class _Fresh:
    """A tensor materialize_ allocated for a meta one, and how to tell it was written."""

    __slots__ = ("is_buffer", "key", "mod", "qualname", "storage", "tensor", "version", "writes")

    def __init__(
        self,
        mod: nn.Module,
        qualname: str,
        key: str,
        t: Tensor,
        is_buffer: bool,
        writes: set[int],
    ):
        self.mod, self.qualname, self.key = mod, qualname, key
        self.tensor, self.is_buffer, self.version = t, is_buffer, t._version
        # Storages written in place while materialize_ runs the initializers: a write through
        # t.data bumps t.data's version counter, not t's.
        self.storage, self.writes = t.untyped_storage().data_ptr(), writes

    @property
    def name(self) -> str:
        return f"{self.qualname}.{self.key}" if self.qualname else self.key

    def written(self) -> bool:
        """Whether the tensor holds its values: replaced, written in place, or empty (an
        empty tensor has no values to lose)."""
        slot = (self.mod._buffers if self.is_buffer else self.mod._parameters).get(self.key)
        return (
            self.tensor.numel() == 0
            or slot is not self.tensor
            or self.tensor._version != self.version
            or (self.storage != 0 and self.storage in self.writes)
        )


def _generators(device: torch.device, seed: int) -> dict[str, torch.Generator]:
    gens = {"cpu": torch.Generator("cpu").manual_seed(seed)}
    if device.type != "cpu":
        gens[device.type] = torch.Generator(device).manual_seed(seed)
    return gens


def _materialize_walk(
    module: nn.Module,
    order: list[tuple[str, nn.Module]],
    device: torch.device,
    dtype: torch.dtype | None,
    base: int,
    tqdm: Any,
) -> None:
    """materialize_'s work; the caller restores the modules' slots if it raises."""
    # id(old tensor) -> (old tensor, its replacement); the old one is kept alive so that its
    # id cannot be reused by another object while the walk lasts. Tied tensors map once.
    replaced: dict[int, tuple[Tensor, Tensor]] = {}
    fresh: list[_Fresh] = []
    # (module, key, is buffer, tensor that was not meta)
    kept: list[tuple[nn.Module, str, bool, Tensor]] = []
    writes: set[int] = set()  # filled under recording_writes below

    def allocate(t: Tensor, is_buffer: bool) -> tuple[Tensor, bool]:
        hit = replaced.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1], False
        target = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        if t.is_meta:
            data = torch.empty_like(t, device=device, dtype=target)
        elif t.device == device and t.dtype == target:
            replaced[id(t)] = (t, t)  # already in place: keep the very object
            return t, False
        else:
            data = t.detach().to(device=device, dtype=target)
        new = data if is_buffer else nn.Parameter(data, requires_grad=t.requires_grad)
        replaced[id(t)] = (t, new)
        return new, t.is_meta

    for qualname, mod in order:
        for key, t, is_buffer in _direct_tensors(mod):
            new, is_new = allocate(t, is_buffer)
            (mod._buffers if is_buffer else mod._parameters)[key] = new  # type: ignore[assignment]
            if is_new:
                fresh.append(_Fresh(mod, qualname, key, new, is_buffer, writes))
    if not fresh:
        return
    total = sum(f.tensor.numel() for f in fresh)
    bar = tqdm(total=total, unit="el", unit_scale=True, desc="materialize_") if tqdm else None
    entry = _integrations.model_initializer(module)
    if entry is not None:
        fresh_ids = {id(f.tensor) for f in fresh}
        seen: set[int] = set()
        for _, mod in order:
            for key, t, is_buffer in _direct_tensors(mod):
                if id(t) not in fresh_ids and id(t) not in seen:
                    seen.add(id(t))
                    kept.append((mod, key, is_buffer, t))
    uncovered: list[str] = []
    try:
        with _patch.patched(), _integrations.recording_writes(writes):
            if entry is not None:
                # The model's own initializer over the whole model, its random calls drawing
                # from a generator of this call (not torch's global one). The tensors that
                # were not meta keep their values: while it runs, their slots hold scratch
                # tensors (flagged _is_hf_initialized, so transformers skips them), and they
                # are put back afterwards, untouched, whatever happens.
                # id(kept tensor) -> (kept tensor, its scratch tensor)
                scratch: dict[int, tuple[Tensor, Tensor]] = {}
                for mod, key, is_buffer, t in kept:
                    if id(t) not in scratch:
                        s = torch.empty_like(t)
                        if not is_buffer:
                            s = nn.Parameter(s, requires_grad=t.requires_grad)
                        s._is_hf_initialized = True  # type: ignore[attr-defined]
                        scratch[id(t)] = (t, s)
                    (mod._buffers if is_buffer else mod._parameters)[key] = scratch[id(t)][1]  # type: ignore[assignment]
                try:
                    with (
                        _integrations.using_generator(_generators(device, _derive_seed(base, ""))),
                        torch.no_grad(),
                    ):
                        entry.run(module, device)
                finally:
                    for mod, key, is_buffer, t in kept:
                        (mod._buffers if is_buffer else mod._parameters)[key] = t  # type: ignore[assignment]
                    # The initializer's ties (transformers' tie_weights sets the source
                    # tensor on the target's module) may have copied a scratch tensor into
                    # other slots: each gets the kept tensor, so the tie holds on it.
                    back = {id(s): (s, t) for t, s in scratch.values()}
                    for mod in module.modules():
                        for slots in (mod._parameters, mod._buffers):
                            for key, v in slots.items():
                                hit = back.get(id(v))
                                if hit is not None and hit[0] is v:
                                    slots[key] = hit[1]  # type: ignore[assignment]
                    del scratch, back
                if bar is not None:
                    bar.update(sum(f.tensor.numel() for f in fresh if f.written()))
            # Modules whose fresh tensors no initializer wrote: their own reset, else the rule.
            for qualname, mod in order:
                mine = [f for f in fresh if f.mod is mod and not f.written()]
                if not mine:
                    continue
                with _integrations.using_generator(
                    _generators(device, _derive_seed(base, qualname))
                ):
                    reset = _reset_method(mod)
                    if reset is not None:
                        own = {id(f.tensor) for f in mine}
                        _reset_keeping(
                            reset, [t for _k, t, _ in _direct_tensors(mod) if id(t) not in own]
                        )
                    else:
                        for f in mine:
                            if f.is_buffer:
                                continue
                            if not f.tensor.is_floating_point():
                                uncovered.append(f.name)
                            _apply_default_rule(f.key, f.tensor, f.is_buffer)
                missing = [f.name for f in mine if f.is_buffer and not f.written()]
                if missing:
                    how = (f"{entry.library}'s initializer and " if entry is not None else "") + (
                        f"{type(mod).__name__}.reset_parameters "
                        + ("leave" if entry is not None else "leaves")
                        + " them unset"
                        if reset is not None
                        else f"{type(mod).__name__} has no reset_parameters"
                    )
                    raise ValueError(
                        f"materialize_: buffer(s) {', '.join(missing)} were on the meta device "
                        f"and nothing computes them ({how}); their values are lost. Build the "
                        "model under fastinit.torch.empty_init() (parameters on meta, buffers "
                        "real, as accelerate's init_empty_weights(include_buffers=False)), or "
                        "give the module a reset_parameters() that fills them"
                    )
                if bar is not None:
                    bar.update(sum(f.tensor.numel() for f in mine))
    finally:
        if bar is not None:
            bar.close()
    if uncovered:
        warn_outside(
            "materialize_: no reset_parameters covers the non-floating parameter(s) "
            + ", ".join(uncovered)
            + "; they were zero-filled"
        )


# A scheme in apply_'s rules.
Scheme = str | Callable[..., Any] | tuple[str | Callable[..., Any], Mapping[str, Any]]
RuleKey = str | type | tuple[type, ...] | tuple[type, str]


def _resolve_scheme(scheme: Scheme) -> tuple[str | Callable[..., Any], dict[str, Any], str]:
    """(callable or 'default', kwargs, description)."""
    kwargs: dict[str, Any] = {}
    if isinstance(scheme, tuple):
        if len(scheme) != 2 or not isinstance(scheme[1], Mapping):
            raise TypeError(f"a scheme tuple must be (scheme, kwargs dict), got {scheme!r}")
        kwargs = dict(scheme[1])
        scheme = scheme[0]
    if scheme == "default":
        if kwargs:
            raise TypeError("the 'default' scheme takes no keyword arguments")
        return "default", {}, "default"
    if isinstance(scheme, str):
        if scheme not in ORIGINALS or not scheme.endswith("_") or scheme == "calculate_gain":
            valid = sorted(n for n in ORIGINALS if n.endswith("_"))
            raise ValueError(
                f"unknown scheme {scheme!r}; use 'default', one of {valid} or a callable"
            )
        fn = getattr(_nn_init, scheme)
        name = scheme
    elif callable(scheme):
        fn, name = scheme, getattr(scheme, "__name__", repr(scheme))
    else:
        raise TypeError(
            f"a scheme must be 'default', a name, a callable or a tuple, got {scheme!r}"
        )
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return fn, kwargs, f"{name}({args})"


def _accepts_generator(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _rule_matches(
    key: RuleKey, qualname: str, local: str, owner: nn.Module, chain: list[nn.Module]
) -> bool:
    if isinstance(key, str):
        return fnmatch.fnmatchcase(qualname, key)
    if _is_type_key(key):
        return any(isinstance(m, key) for m in chain)  # type: ignore[arg-type]
    if (
        isinstance(key, tuple)
        and len(key) == 2
        and _is_type_key(key[0])
        and isinstance(key[1], str)
    ):
        return isinstance(owner, key[0]) and fnmatch.fnmatchcase(local, key[1])
    raise TypeError(
        "rule keys must be a name pattern (str), a module type (or a tuple of types), or "
        f"(type, pattern); got {key!r}"
    )


def _is_type_key(key: Any) -> bool:
    if isinstance(key, type):
        return True
    return isinstance(key, tuple) and len(key) > 0 and all(isinstance(k, type) for k in key)


def apply_(
    module: nn.Module,
    rules: Mapping[RuleKey, Scheme],
    seed: int | None = None,
) -> dict[str, str]:
    """Re-initialize the parameters of ``module`` that ``rules`` select, and nothing else.

    The transfer-learning case: a new head on a pretrained trunk, re-initialized in place.

    Rules map a key to a scheme; each parameter takes the *first* rule (in ``rules`` order)
    that matches it, and parameters no rule matches are not touched.

    Keys:

    - ``str``: an ``fnmatch`` pattern on the parameter's qualified name
      (``"head.*.weight"``, ``"*.bias"``);
    - a module type (or a tuple of types via ``isinstance``): every parameter of every module
      of that type, its descendants' included;
    - ``(type, pattern)``: parameters of modules of that type whose own name matches the
      pattern (``(nn.Linear, "weight")``).

    Schemes:

    - ``"default"``: the owning module's own rule -- its ``reset_parameters`` (or
      ``_reset_parameters``; for a module-type key, the whole matched module re-initialized
      as :func:`materialize_` does: children first, then itself), else :func:`materialize_`'s
      fallback rule. Parameters and buffers that the reset writes but that were not selected
      are restored, so nothing else changes (buffers of a reset module, such as BatchNorm's
      running statistics, are re-initialized with it and reported);
    - a ``fastinit.torch`` function name (``"xavier_normal_"``) or ``(name, kwargs)``;
    - a callable ``f(tensor, **kwargs)`` or ``(callable, kwargs)``.

    Every rule is checked before anything is written: unknown schemes, rules that match no
    parameter, and named schemes that reject a parameter (e.g. ``xavier_normal_`` on a bias:
    torch's ValueError) raise and leave the module unchanged.

    Seeds: as :func:`materialize_`: ``seed`` is the base (None draws one from torch's default
    generator); parameter ``q`` gets ``generator=torch.Generator().manual_seed(
    blake2b(f"{seed}/{q}"))`` when its scheme takes a generator, and a ``"default"`` reset of
    module ``m`` runs with torch's default generator seeded from ``blake2b(f"{seed}/{m}")``
    inside ``torch.random.fork_rng``.

    Parameters
    ----------
    module : torch.nn.Module
    rules : mapping
        Rule key -> scheme, see above.
    seed : int, optional
        Base seed.

    Returns
    -------
    dict of str to str
        Qualified name of every tensor initialized -> the scheme that initialized it.

    Examples
    --------
    >>> report = fastinit.torch.apply_(
    ...     model, {"head.*.weight": ("xavier_normal_", {}), nn.LayerNorm: "default"}, seed=0
    ... )
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(rules, Mapping):
        raise TypeError(f"rules must be a mapping, got {type(rules).__name__}")
    resolved = [(key, *_resolve_scheme(scheme)) for key, scheme in rules.items()]

    # Every parameter with its owner and the chain of modules above it.
    params: list[tuple[str, str, Tensor, nn.Module, list[nn.Module], str]] = []
    seen: set[int] = set()

    def walk(mod: nn.Module, prefix: str, chain: list[nn.Module], modname: str) -> None:
        chain = [*chain, mod]
        for key, p in mod._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            params.append((f"{prefix}{key}", key, p, mod, chain, modname))
        for child_name, child in mod._modules.items():
            if child is not None:
                walk(child, f"{prefix}{child_name}.", chain, f"{prefix}{child_name}")

    walk(module, "", [], "")

    assignment: dict[int, list[tuple[str, Tensor]]] = {i: [] for i in range(len(resolved))}
    owner_of_rule: dict[int, dict[int, tuple[str, nn.Module]]] = {
        i: {} for i in range(len(resolved))
    }
    for qualname, local, p, owner, chain, modname in params:
        for i, (key, _fn, _kw, _desc) in enumerate(resolved):
            if _rule_matches(key, qualname, local, owner, chain):
                assignment[i].append((qualname, p))
                if resolved[i][1] == "default":
                    # For a type key the reset unit is the outermost matching module.
                    unit_name, unit = modname, owner
                    if _is_type_key(key):
                        prefix_parts = qualname.split(".")[:-1]
                        for depth, m in enumerate(chain):
                            if isinstance(m, key):  # type: ignore[arg-type]
                                unit, unit_name = m, ".".join(prefix_parts[:depth])
                                break
                    owner_of_rule[i][id(unit)] = (unit_name, unit)
                break
    unmatched = [repr(resolved[i][0]) for i, hits in assignment.items() if not hits]
    if unmatched:
        raise ValueError(f"apply_: rule(s) {', '.join(unmatched)} matched no parameter")

    # Dry run of named schemes on meta copies: torch's argument/shape errors before any write.
    for i, (_key, fn, kwargs, _desc) in enumerate(resolved):
        if isinstance(fn, str) or getattr(fn, "__module__", None) != _nn_init.__name__:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _qualname, p in assignment[i]:
                fn(torch.empty_like(p, device="meta"), **kwargs)

    base = _base_seed(seed)
    report: dict[str, str] = {}
    with torch.no_grad():
        for i, (_key, fn, kwargs, desc) in enumerate(resolved):
            if isinstance(fn, str):  # "default"
                whole = _is_type_key(_key)
                for unit_name, unit in owner_of_rule[i].values():
                    mine = {id(p) for _, p in assignment[i]}
                    _reset_unit(unit, unit_name, base, mine, report, whole)
                continue
            wants_generator = "generator" not in kwargs and _accepts_generator(fn)
            for qualname, p in assignment[i]:
                extra: dict[str, Any] = {}
                if wants_generator:
                    gen = torch.Generator(device=p.device if p.device.type != "meta" else "cpu")
                    extra["generator"] = gen.manual_seed(_derive_seed(base, qualname))
                fn(p, **kwargs, **extra)
                report[qualname] = desc
    return report


def _reset_unit(
    unit: nn.Module,
    unit_name: str,
    base: int,
    selected: set[int],
    report: dict[str, str],
    whole: bool,
) -> None:
    """Re-initialize ``unit`` by its own rules, restoring every tensor it should not change.

    ``whole``: the unit was selected by a module-type key, so its subtree is reset children
    first and the buffers of the modules that have a reset method are re-initialized too.
    Otherwise only ``unit`` itself is reset and only its ``selected`` parameters change.
    """
    subtree = _post_order(unit)
    order = subtree if whole else [("", unit)]
    resettable = {id(m) for _, m in order if _reset_method(m) is not None}
    snapshot: list[tuple[Tensor, Tensor]] = []
    seen: set[int] = set()
    for _, mod in subtree:
        for _key, t, is_buffer in _direct_tensors(mod):
            if id(t) in seen:
                continue
            seen.add(id(t))
            changes = (not is_buffer and id(t) in selected) or (
                is_buffer and whole and id(mod) in resettable
            )
            if not changes:
                snapshot.append((t, t.detach().clone()))
    device = next((t.device for _, t, _ in _direct_tensors(unit)), torch.device("cpu"))
    if device.type == "meta":
        device = torch.device("cpu")
    with _forked_rng(device) as seed_rng, _patch.patched():
        for subname, mod in order:
            qual_mod = ".".join(n for n in (unit_name, subname) if n)
            seed_rng(_derive_seed(base, qual_mod))
            reset = _reset_method(mod)
            for key, t, is_buffer in _direct_tensors(mod):
                qual = f"{qual_mod}.{key}" if qual_mod else key
                if reset is not None:
                    if (not is_buffer and id(t) in selected) or (is_buffer and whole):
                        report[qual] = f"default: {type(mod).__name__}.{reset.__name__}"
                elif not is_buffer and id(t) in selected:
                    report[qual] = f"default: {_apply_default_rule(key, t, is_buffer)}"
            if reset is not None:
                reset()
        for t, saved in snapshot:
            t.copy_(saved)


# --------------------------------------------------------------------------------------------
# FSDP2 / DTensor models
# --------------------------------------------------------------------------------------------


def _local_or_self(t: Tensor) -> Tensor:
    return t._local_tensor if _dtensor.is_dtensor(t) and hasattr(t, "_local_tensor") else t


def _sharded_base_seed(seed: int | None, module: nn.Module) -> int:
    """The base seed of :func:`materialize_sharded_`: ``seed``, or one drawn from torch's
    default generator and broadcast from global rank 0 (one collective)."""
    base = _base_seed(seed)
    if seed is not None or not _dtensor.seed_sync_enabled():
        return base
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return base
    device_type = "cpu"
    parameters: list[Any] = list(module.parameters())
    for t in parameters:
        if _dtensor.is_dtensor(t):
            device_type = str(t.device_mesh.device_type)
            break
    signed = base - (1 << 64) if base >= 1 << 63 else base
    buf = torch.tensor([signed], dtype=torch.int64, device=_dtensor.collective_device(device_type))
    dist.broadcast(buf, src=0)
    return wrap_u64(int(buf.item()))


def materialize_sharded_(
    module: nn.Module,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> nn.Module:
    """Allocate and initialize a meta-device model whose parameters are DTensors (FSDP2
    ``fully_shard``, tensor parallel), each rank filling only its own shards.

    The values are those of ``fastinit.torch.materialize_`` on the unsharded model with the
    same ``seed``: gathered (``full_tensor()``), every parameter is bit-identical for any
    world size, mesh and placements.

    Steps: ``module.to_empty(device=device)`` (FSDP2's own hook re-registers its sharded
    parameters, padded as it needs them; values of tensors that were not on the meta device
    are kept), then modules are visited children first and a module with meta tensors of its
    own runs its ``reset_parameters`` (or ``_reset_parameters``) with torch's default
    generator seeded to ``blake2b(f"{seed}/{qualified name}")`` and ``torch.nn.init`` routed
    by :func:`routed`; modules without one get ``fastinit.torch.materialize_``'s fallback
    rule. Tied tensors are initialized once.

    Parameters
    ----------
    module : torch.nn.Module
        Built on the meta device, then sharded (``fully_shard``, ``parallelize_module``).
    device : torch.device or str, optional
        Where the local shards go.
    seed : int, optional
        The base seed. None: drawn from torch's default generator and broadcast from global
        rank 0 over the default process group (every rank must call this function); an int:
        no communication at all.

    Returns
    -------
    torch.nn.Module
        ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    device = torch.device(device)
    base = _sharded_base_seed(seed, module)
    order = _post_order(module)

    def is_meta(t: Tensor) -> bool:
        return bool(_local_or_self(t).is_meta)

    meta_keys = {
        (id(mod), key) for _, mod in order for key, t, _ in _direct_tensors(mod) if is_meta(t)
    }
    if not meta_keys:
        return module
    kept = [
        (mod, key, is_buffer, t.detach().clone())
        for _, mod in order
        for key, t, is_buffer in _direct_tensors(mod)
        if (id(mod), key) not in meta_keys
    ]
    module.to_empty(device=device)
    with torch.no_grad():
        for mod, key, is_buffer, saved in kept:
            store = mod._buffers if is_buffer else mod._parameters
            target = store[key]
            if target is not None:
                target.copy_(saved)

    done: set[int] = set()
    uncovered: list[str] = []
    with torch.random.fork_rng(devices=[]), _patch.routed(), _dtensor.seed_sync(False):
        for qualname, mod in order:
            own = _direct_tensors(mod)
            names = {k for k, t, _ in own if (id(mod), k) in meta_keys and id(t) not in done}
            done.update(id(t) for k, t, _ in own if k in names)
            if not names:
                continue
            torch.default_generator.manual_seed(_derive_seed(base, qualname))
            reset = _reset_method(mod)
            if reset is not None:
                _reset_keeping(reset, [t for k, t, _ in own if k not in names])
                continue
            for key, t, is_buffer in own:
                if key not in names:
                    continue
                rule = _default_rule(key, t, is_buffer)
                if is_buffer or not t.is_floating_point():
                    uncovered.append(f"{qualname}.{key}" if qualname else key)
                impl = getattr(_nn_init, rule)
                with torch.no_grad():
                    if rule == "kaiming_uniform_":
                        if t.numel() > 0:
                            impl(t, a=math.sqrt(5))
                    else:
                        impl(t)
    if uncovered:
        warn_outside(
            "materialize_sharded_: no reset_parameters covers "
            + ", ".join(uncovered)
            + "; they were zero-filled (buffers computed in __init__ cannot be recovered "
            "from the meta device: recompute them after materialization)",
        )
    return module
