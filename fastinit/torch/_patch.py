"""Routing init calls through fastinit: :func:`patch`, :func:`unpatch`, :func:`patched` (by
code routing and a per-thread mode, see ``_integrations``), and :func:`routed` (DTensors
only, by rebinding)."""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from . import _integrations, _nn_init
from ._target import ORIGINALS

__all__ = ["is_patched", "patch", "patched", "routed", "unpatch"]


_patch_lock = threading.RLock()
# (namespace dict, name, original) for every binding patch() replaced; None when not patched.
_patch_record: list[tuple[dict[str, Any], str, Any]] | None = None
_patch_modules_before: set[str] = set()


def _replacements() -> dict[int, tuple[Any, Any]]:
    return {id(ORIGINALS[name]): (ORIGINALS[name], getattr(_nn_init, name)) for name in ORIGINALS}


def _own(module: Any) -> bool:
    # fastinit.torch's own namespaces hold the replacements; rebinding them would route a
    # function to itself.
    return getattr(module, "__name__", "").startswith(__package__ or "fastinit.torch")


def _rebind(
    table: dict[int, tuple[Any, Any]],
) -> list[tuple[dict[str, Any], str, Any, Any]]:
    """Replace, in every loaded module but fastinit.torch's own, each binding to a function
    ``old`` of ``table`` (keyed by ``id(old)``, value ``(old, new)``) with ``new``.

    Returns the ``(namespace, name, old, new)`` of each binding replaced, for :func:`_restore`.
    The caller holds ``_patch_lock``.
    """
    record: list[tuple[dict[str, Any], str, Any, Any]] = []
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType) or _own(module):
            continue
        namespace = vars(module)
        for name, value in list(namespace.items()):
            pair = table.get(id(value))
            if pair is not None and pair[0] is value:
                record.append((namespace, name, value, pair[1]))
                namespace[name] = pair[1]
    return record


def _restore(record: list[tuple[dict[str, Any], str, Any, Any]]) -> None:
    """Undo :func:`_rebind`, leaving alone bindings changed since."""
    for namespace, name, old, new in reversed(record):
        if namespace.get(name) is new:
            namespace[name] = old


def _drop_ins() -> dict[str, Callable[..., Any]]:
    return {name: getattr(_nn_init, name) for name in ORIGINALS if name.endswith("_")}


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
def routed() -> Iterator[None]:
    """Inside the block, ``torch.nn.init``'s functions (the module's attributes and every
    name a loaded module bound with ``from torch.nn.init import ...``) go to
    ``fastinit.torch`` (whose functions send DTensors down their sharded path). Restores the
    bindings it changed on exit, whether or not :func:`patch` is in effect.

    Module ``reset_parameters`` methods then initialize DTensor parameters through fastinit.
    Only calls through ``torch.nn.init`` are seen: a ``reset_parameters`` that calls a tensor
    method (``self.weight.normal_()``) gets torch's own DTensor random numbers.
    """
    with _patch_lock:
        record = _rebind(_replacements())
    try:
        yield
    finally:
        with _patch_lock:
            _restore(record)
