"""``fastinit.torch``: a drop-in for ``torch.nn.init``, patching, and model materialization.

Every name of the installed ``torch.nn.init.__all__`` is here with torch's exact signature,
argument checks, exception types and messages, and warnings. Floating-point tensors
(float32, float64, float16, bfloat16) on the CPU -- and on CUDA when fastinit was built with
its CUDA module -- are filled by fastinit's native kernels; anything else (integer or complex
tensors, meta tensors, other devices, tensor subclasses, code being traced by
``torch.compile``) goes to torch's own implementation, so a call never fails where torch's
would have worked.

Seeds: each call draws one 64-bit seed from ``generator`` or, when it is None, from torch's
default CPU generator (``torch.randint(-2**63, 2**63 - 1, (), generator=...)``), and fills the
tensor with ``seed=<that int>`` (key = the seed, stream 0). So ``torch.manual_seed(s)`` makes a
program reproducible exactly as it was with ``torch.nn.init`` (with other values), and
``generator=torch.Generator().manual_seed(s)`` gives the same values as the default generator
seeded with ``s``. One call consumes one draw, whatever the tensor's size.

The values of a native fill depend on the tensor's logical positions only, so a
``channels_last`` or transposed tensor gets the values of its contiguous counterpart.

DTensors (tensor parallel, FSDP2) go to ``fastinit._dtensor``: each rank fills its own
shards with the values the unsharded tensor has there (see docs/sharded.md).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import inspect
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import torch
import torch.nn.init as _torch_init
from torch import Tensor, nn

import fastinit as _fastinit

from . import _dtensor, _fills, _integrations, _schemes

__all__ = [
    "apply_",
    "calculate_gain",
    "constant",
    "constant_",
    "dirac",
    "dirac_",
    "empty_init",
    "eye",
    "eye_",
    "is_patched",
    "kaiming_normal",
    "kaiming_normal_",
    "kaiming_uniform",
    "kaiming_uniform_",
    "materialize_",
    "normal",
    "normal_",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "patch",
    "patched",
    "sparse",
    "sparse_",
    "trunc_normal_",
    "uniform",
    "uniform_",
    "unpatch",
    "xavier_normal",
    "xavier_normal_",
    "xavier_uniform",
    "xavier_uniform_",
    "zeros_",
]

_NonlinearityType = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
_FanMode = Literal["fan_in", "fan_out"]
_T = TypeVar("_T")

#: torch.nn.init's own functions, captured when fastinit.torch was first imported.
_ORIGINALS: dict[str, Callable[..., Any]] = {
    name: getattr(_torch_init, name) for name in _torch_init.__all__
}
_NATIVE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_U64 = (1 << 64) - 1

# --------------------------------------------------------------------------------------------
# dispatch helpers
# --------------------------------------------------------------------------------------------


@functools.cache
def _cuda_native() -> bool:
    """Whether fastinit's CUDA module is built and sees a GPU (asked once)."""
    from ._config import config

    return bool(config()["cuda"].get("available", False))


def _is_native(tensor: Tensor) -> bool:
    """True when fastinit's kernels fill ``tensor``; False sends it to torch's implementation."""
    if tensor.dtype not in _NATIVE_DTYPES:
        return False
    if type(tensor) is not Tensor and type(tensor) is not nn.Parameter:
        return False
    device = tensor.device.type
    if device != "cpu" and not (device == "cuda" and _cuda_native()):
        return False
    if tensor.is_neg() or torch.compiler.is_compiling():
        return False
    return True


def _draw_seed(generator: torch.Generator | None) -> int:
    """One 64-bit seed from ``generator``, or from torch's default CPU generator when None.

    Inside :func:`materialize_` "None" means the generator it set for this thread.
    """
    if generator is None:
        generator = _integrations.thread_generator("cpu")
    if generator is None:
        value = torch.randint(-(1 << 63), (1 << 63) - 1, (), dtype=torch.int64, device="cpu")
    else:
        value = torch.randint(
            -(1 << 63),
            (1 << 63) - 1,
            (),
            dtype=torch.int64,
            device=generator.device,
            generator=generator,
        )
    return int(value.item()) & _U64


def _written(tensor: Tensor) -> Tensor:
    # A native fill writes through DLPack, behind autograd's back: bump the version counter
    # as an in-place torch op would, so a stale saved tensor is still detected.
    with contextlib.suppress(RuntimeError):
        torch.autograd.graph.increment_version(tensor)
    return tensor


def _uniform(tensor: Tensor, a: float, b: float, generator: torch.Generator | None) -> Tensor:
    if not _is_native(tensor):
        with torch.no_grad():
            return tensor.uniform_(a, b, generator=generator)
    _fills.uniform_(tensor.detach(), a, b, seed=_draw_seed(generator))
    return _written(tensor)


def _normal(tensor: Tensor, mean: float, std: float, generator: torch.Generator | None) -> Tensor:
    if not _is_native(tensor):
        with torch.no_grad():
            return tensor.normal_(mean, std, generator=generator)
    _fills.normal_(tensor.detach(), mean, std, seed=_draw_seed(generator))
    return _written(tensor)


def _fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    return _schemes.compute_fans(tuple(tensor.shape), layout="torch")


# --------------------------------------------------------------------------------------------
# the drop-in functions (same order of checks as torch.nn.init)
# --------------------------------------------------------------------------------------------


def calculate_gain(nonlinearity: _NonlinearityType, param: int | float | None = None) -> float:
    """Return the recommended gain value for the given nonlinearity (as ``torch.nn.init``).

    See :func:`fastinit.calculate_gain`.
    """
    return _schemes.calculate_gain(nonlinearity, param)


def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` with values drawn from U(a, b); drop-in for ``torch.nn.init.uniform_``.

    Parameters
    ----------
    tensor : torch.Tensor
        An n-dimensional tensor.
    a, b : float
        Lower and upper bound.
    generator : torch.Generator, optional
        Source of the 64-bit seed (default: torch's default generator).

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.uniform_(tensor, a, b, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            uniform_, (tensor,), tensor=tensor, a=a, b=b, generator=generator
        )
    return _uniform(tensor, a, b, generator)


def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` from N(mean, std²); drop-in for ``torch.nn.init.normal_``.

    Parameters
    ----------
    tensor : torch.Tensor
        An n-dimensional tensor.
    mean, std : float
        Mean and standard deviation.
    generator : torch.Generator, optional
        Source of the 64-bit seed (default: torch's default generator).

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.normal_(tensor, mean, std, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            normal_, (tensor,), tensor=tensor, mean=mean, std=std, generator=generator
        )
    return _normal(tensor, mean, std, generator)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` from N(mean, std²) truncated to [a, b] (absolute bounds, torch semantics).

    Drop-in for ``torch.nn.init.trunc_normal_``. The native path uses an exact inverse CDF, so
    the distribution is right even far from the mean; torch's warning for a mean more than 2
    std outside [a, b] is still issued, for parity.

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.trunc_normal_(tensor, mean, std, a, b, generator)
    if tensor.is_meta:
        return tensor
    if not _is_native(tensor):
        return _ORIGINALS["trunc_normal_"](tensor, mean, std, a, b, generator=generator)
    if (mean < a - 2 * std) or (mean > b + 2 * std):
        warnings.warn(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
            "The distribution of values may be incorrect.",
            stacklevel=2,
        )
    _fills.trunc_normal_(tensor.detach(), mean, std, a, b, seed=_draw_seed(generator))
    return _written(tensor)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill ``tensor`` with ``val``; drop-in for ``torch.nn.init.constant_``."""
    if _dtensor.is_dtensor(tensor):
        return _dtensor.constant_(tensor, val)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(constant_, (tensor,), tensor=tensor, val=val)
    if not _is_native(tensor):
        with torch.no_grad():
            return tensor.fill_(val)
    _fills.constant_(tensor.detach(), val)
    return _written(tensor)


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 1; drop-in for ``torch.nn.init.ones_``."""
    if _dtensor.is_dtensor(tensor):
        return _dtensor.ones_(tensor)
    if not _is_native(tensor):
        with torch.no_grad():
            return tensor.fill_(1.0)
    _fills.ones_(tensor.detach())
    return _written(tensor)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with 0; drop-in for ``torch.nn.init.zeros_``."""
    if _dtensor.is_dtensor(tensor):
        return _dtensor.zeros_(tensor)
    if not _is_native(tensor):
        with torch.no_grad():
            return tensor.zero_()
    _fills.zeros_(tensor.detach())
    return _written(tensor)


def eye_(tensor: Tensor) -> Tensor:
    """Fill the 2-D ``tensor`` with the identity matrix; drop-in for ``torch.nn.init.eye_``.

    Raises
    ------
    ValueError
        "Only tensors with 2 dimensions are supported".
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.eye_(tensor)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if not _is_native(tensor):
        return _ORIGINALS["eye_"](tensor)
    _schemes.eye_(tensor.detach())
    return _written(tensor)


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill the {3, 4, 5}-D ``tensor`` with the Dirac delta; drop-in for ``torch.nn.init.dirac_``.

    Raises
    ------
    ValueError
        torch's messages for the wrong number of dimensions or dim 0 not divisible by groups.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.dirac_(tensor, groups)
    dimensions = tensor.ndimension()
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if tensor.size(0) % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if tensor.is_meta:
        return tensor
    if not _is_native(tensor):
        return _ORIGINALS["dirac_"](tensor, groups)
    _schemes.dirac_(tensor.detach(), groups)
    return _written(tensor)


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Glorot uniform: U(-b, b), ``b = gain * sqrt(6 / (fan_in + fan_out))``.

    Drop-in for ``torch.nn.init.xavier_uniform_`` (same bound, bit for bit).
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.xavier_uniform_(tensor, gain, generator)
    fan_in, fan_out = _fan_in_and_fan_out(tensor)
    std = _schemes.xavier_std(fan_in, fan_out, gain)
    a = _schemes.uniform_bound(std)
    return _uniform(tensor, -a, a, generator)


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Glorot normal: N(0, std²), ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Drop-in for ``torch.nn.init.xavier_normal_``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.xavier_normal_(tensor, gain, generator)
    fan_in, fan_out = _fan_in_and_fan_out(tensor)
    std = _schemes.xavier_std(fan_in, fan_out, gain)
    return _normal(tensor, 0.0, std, generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    return _schemes.kaiming_fan_std(tuple(tensor.shape), a, mode, nonlinearity, layout="torch")


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He uniform: U(-b, b), ``b = gain * sqrt(3 / fan_mode)``.

    Drop-in for ``torch.nn.init.kaiming_uniform_``, including its warning for zero-element
    tensors. ``nn.Linear``/``nn.Conv*`` call it with ``a=math.sqrt(5)``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.kaiming_uniform_(tensor, a, mode, nonlinearity, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            kaiming_uniform_,
            (tensor,),
            tensor=tensor,
            a=a,
            mode=mode,
            nonlinearity=nonlinearity,
            generator=generator,
        )
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    bound = _schemes.uniform_bound(_kaiming_std(tensor, a, mode, nonlinearity))
    return _uniform(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He normal: N(0, std²), ``std = gain / sqrt(fan_mode)``.

    Drop-in for ``torch.nn.init.kaiming_normal_``, including its zero-element warning.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.kaiming_normal_(tensor, a, mode, nonlinearity, generator)
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return _normal(tensor, 0, std, generator)


def orthogonal_(
    tensor: Tensor,
    gain: float = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``tensor`` with a (semi-)orthogonal matrix; drop-in for ``torch.nn.init.orthogonal_``.

    Uses ``fastinit.orthogonal_`` (Householder reflections from the Philox stream) when the
    installed fastinit provides it; otherwise torch's QR-based algorithm, with the same
    ``generator``.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.orthogonal_(tensor, gain, generator)
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    native = getattr(_fastinit, "orthogonal_", None)
    if native is None or not _is_native(tensor):
        return _ORIGINALS["orthogonal_"](tensor, gain, generator)
    native(tensor.detach(), gain, seed=_draw_seed(generator))
    return _written(tensor)


def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill the 2-D ``tensor`` as a sparse matrix; drop-in for ``torch.nn.init.sparse_``.

    Each column gets ``ceil(sparsity * rows)`` zeros at random rows, the rest N(0, std²).
    Unlike torch (whose zero rows come from ``torch.randperm`` on the default generator even
    when ``generator`` is given), values and pattern both follow ``generator``: see
    :func:`fastinit.sparse_` for the stream derivation. ``sparsity`` outside [0, 1] raises
    ValueError.
    """
    if _dtensor.is_dtensor(tensor):
        return _dtensor.sparse_(tensor, sparsity, std, generator)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if tensor.is_meta:
        return tensor
    if not _is_native(tensor):
        return _ORIGINALS["sparse_"](tensor, sparsity, std, generator)
    _schemes.sparse_(tensor.detach(), sparsity, std, seed=_draw_seed(generator))
    return _written(tensor)


def _make_deprecate(meth: Callable[..., _T]) -> Callable[..., _T]:
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args: Any, **kwargs: Any) -> _T:
        warnings.warn(
            f"`nn.init.{old_name}` is now deprecated in favor of `nn.init.{new_name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = f"""
    {old_name}(...)

    .. warning::
        Deprecated in favor of :func:`fastinit.torch.{new_name}` (as in torch).
    """
    deprecated_init.__name__ = old_name
    deprecated_init.__qualname__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)

# --------------------------------------------------------------------------------------------
# patching torch.nn.init
# --------------------------------------------------------------------------------------------


def _drop_ins() -> dict[str, Callable[..., Any]]:
    this = sys.modules[__name__]
    return {name: getattr(this, name) for name in _ORIGINALS if name.endswith("_")}


def is_patched() -> bool:
    """Whether init calls on the calling thread go to fastinit now.

    True inside :func:`patched` on this thread, and on every thread between :func:`patch`
    and :func:`unpatch`.
    """
    return _integrations.is_active()


def patch() -> None:
    """Route ``torch.nn.init`` (and the registry's third-party init functions) to fastinit,
    on every thread, until :func:`unpatch`.

    No binding is replaced: the functions keep their identity and get routing code (see
    ``fastinit._integrations``), so every holder of them -- ``from torch.nn.init import
    xavier_uniform_``, transformers' ``TORCH_INIT_FUNCTIONS``, torchtitan's partials, timm's
    helpers -- initializes through fastinit, and nothing keeps fastinit's functions after
    :func:`unpatch`. Tensor methods (``w.normal_()``) are routed only inside
    :func:`patched`. Calling it while already patched does nothing. Thread-safe.
    """
    _integrations.enable_global(_drop_ins())


def unpatch() -> None:
    """Undo :func:`patch`. Threads inside :func:`patched` stay patched until they leave it.

    Calling it while not patched does nothing.
    """
    _integrations.disable_global()


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Context manager: route init calls made *on this thread* to fastinit.

    Inside it, ``torch.nn.init``'s functions (however a library holds them), the registry's
    third-party init functions (timm's ``trunc_normal_``, ``trunc_normal_tf_``,
    ``lecun_normal_``, ``variance_scaling_``) and the tensor methods ``normal_``,
    ``uniform_``, ``fill_`` and ``zero_`` on tensors fastinit fills natively all run
    through fastinit, with the law the calling code asks for. Everything it touched is
    restored on exit, whatever was imported meanwhile.

    Thread scope: per thread. Other threads (and threads started inside the block) keep
    torch's behaviour; one thread leaving its ``patched()`` never affects another's.

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> with fastinit.torch.patched():
    ...     layer = torch.nn.Linear(4096, 4096)  # reset_parameters runs through fastinit
    """
    _integrations.enter(_drop_ins())
    try:
        yield
    finally:
        _integrations.leave()


@contextlib.contextmanager
def empty_init() -> Iterator[None]:
    """Build a model fast: its weights on the meta device, everything small real.

    accelerate's ``init_empty_weights(include_buffers=False)`` convention, for
    :func:`materialize_`: on this thread, every parameter of two or more dimensions
    registered inside the block goes to the meta device (nothing is written to it), while
    buffers (RoPE frequencies, position ids, masks) and parameters of fewer than two
    dimensions (biases, norm and layer scales, which some models compute in ``__init__``
    only, as timm's ``gamma = init_value * ones(dim)``) are real, initialized through
    fastinit (the block is also :func:`patched`). Then :func:`materialize_` allocates the
    weights and runs the model's own initializer on them, keeping the real tensors.

    Thread scope: per thread; other threads build normally.

    Examples
    --------
    >>> with fastinit.torch.empty_init():
    ...     model = AutoModelForCausalLM.from_config(cfg)
    >>> fastinit.torch.materialize_(model, seed=0)
    """
    with _integrations.parameters_on_meta(), patched():
        yield


# --------------------------------------------------------------------------------------------
# materialize_ and apply_
# --------------------------------------------------------------------------------------------


def _derive_seed(base: int, name: str) -> int:
    """The 64-bit seed of the module or parameter ``name`` under base seed ``base``.

    ``blake2b(f"{base}/{name}", digest_size=8)`` read little-endian: the values a module gets
    depend on (base seed, its qualified name) only, not on the order modules are visited.
    """
    digest = hashlib.blake2b(f"{base & _U64}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _base_seed(seed: int | None) -> int:
    if seed is None:
        return _draw_seed(None)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    return seed & _U64


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
            kaiming_uniform_(tensor, a=math.sqrt(5))
        return "kaiming_uniform_(a=sqrt(5))"
    if rule == "ones_":
        ones_(tensor)
    else:
        zeros_(tensor)
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
            "(or pip install 'fastinit[progress]')"
        ) from exc
    return tqdm


def materialize_(
    module: nn.Module,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> nn.Module:
    """Allocate and initialize, in place, every meta-device parameter and buffer of ``module``.

    Everything runs under :func:`patched`, so every rule below initializes through fastinit.

    1. **The model's own initializer**, when it has one (``fastinit._integrations.
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
    ``fastinit._integrations``) draw from it instead of torch's global generator. So the
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
        # FSDP2 / tensor-parallel models: every rank fills its own shards (fastinit._dtensor).
        if dtype is not None:
            raise TypeError(
                "materialize_: dtype= is not supported for a model with DTensor parameters; "
                "choose the dtype before sharding (or use FSDP2's MixedPrecisionPolicy)"
            )
        return _dtensor.materialize_sharded_(module, device, seed)
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

    __slots__ = ("is_buffer", "key", "mod", "qualname", "tensor", "version")

    def __init__(self, mod: nn.Module, qualname: str, key: str, t: Tensor, is_buffer: bool):
        self.mod, self.qualname, self.key = mod, qualname, key
        self.tensor, self.is_buffer, self.version = t, is_buffer, t._version

    @property
    def name(self) -> str:
        return f"{self.qualname}.{self.key}" if self.qualname else self.key

    def written(self) -> bool:
        slot = (self.mod._buffers if self.is_buffer else self.mod._parameters).get(self.key)
        return slot is not self.tensor or self.tensor._version != self.version


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
                fresh.append(_Fresh(mod, qualname, key, new, is_buffer))
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
        with patched():
            if entry is not None:
                # The model's own initializer over the whole model, its random calls drawing
                # from a generator of this call (not torch's global one). The tensors that
                # were not meta keep their values: while it runs, their slots hold scratch
                # tensors (flagged _is_hf_initialized, so transformers skips them), and they
                # are put back afterwards, untouched, whatever happens.
                scratch: dict[int, Tensor] = {}
                for mod, key, is_buffer, t in kept:
                    if id(t) not in scratch:
                        s = torch.empty_like(t)
                        if not is_buffer:
                            s = nn.Parameter(s, requires_grad=t.requires_grad)
                        s._is_hf_initialized = True  # type: ignore[attr-defined]
                        scratch[id(t)] = s
                    (mod._buffers if is_buffer else mod._parameters)[key] = scratch[id(t)]  # type: ignore[assignment]
                try:
                    with (
                        _integrations.using_generator(_generators(device, _derive_seed(base, ""))),
                        torch.no_grad(),
                    ):
                        entry.run(module, device)
                finally:
                    for mod, key, is_buffer, t in kept:
                        (mod._buffers if is_buffer else mod._parameters)[key] = t  # type: ignore[assignment]
                    del scratch
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
                        keep = [
                            (t, t.detach().clone())
                            for _k, t, _ in _direct_tensors(mod)
                            if id(t) not in own
                        ]
                        with torch.no_grad():
                            reset()
                            for t, copy in keep:
                                t.copy_(copy)
                    else:
                        for f in mine:
                            if f.is_buffer:
                                continue
                            if not f.tensor.is_floating_point():
                                uncovered.append(f.name)
                            _apply_default_rule(f.key, f.tensor, f.is_buffer)
                missing = [f.name for f in mine if f.is_buffer and not f.written()]
                if missing:
                    how = (
                        f"{entry.library}'s initializer and " if entry is not None else ""
                    ) + f"{type(mod).__name__} (no reset_parameters)"
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
        warnings.warn(
            "materialize_: no reset_parameters covers the non-floating parameter(s) "
            + ", ".join(uncovered)
            + "; they were zero-filled",
            UserWarning,
            stacklevel=3,
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
        if scheme not in _ORIGINALS or not scheme.endswith("_") or scheme == "calculate_gain":
            valid = sorted(n for n in _ORIGINALS if n.endswith("_"))
            raise ValueError(
                f"unknown scheme {scheme!r}; use 'default', one of {valid} or a callable"
            )
        fn = getattr(sys.modules[__name__], scheme)
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
        if isinstance(fn, str) or getattr(fn, "__module__", None) != __name__:
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
    with _forked_rng(device) as seed_rng, patched():
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
