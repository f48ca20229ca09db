"""Routing ``torch.nn.init`` through fastinit: :func:`patch`, :func:`unpatch`,
:func:`patched`, and :func:`routed` (DTensors only), on one rebinding mechanism."""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

from . import _nn_init
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


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _patch_record is not None


def patch() -> None:
    """Route ``torch.nn.init`` to ``fastinit.torch`` until :func:`unpatch`.

    Replaces every function of ``torch.nn.init.__all__`` on the ``torch.nn.init`` module and
    in every loaded module that bound one by name (``from torch.nn.init import
    xavier_uniform_``, as ``torch.nn.modules.activation`` and ``torch.nn.modules.transformer``
    do). Modules' ``reset_parameters`` then initialize through fastinit. Calling it while
    already patched does nothing. Thread-safe.
    """
    global _patch_record, _patch_modules_before
    with _patch_lock:
        if _patch_record is not None:
            return
        swap = _replacements()
        record: list[tuple[dict[str, Any], str, Any]] = []
        for namespace, name, value, _ in _rebind(swap):
            record.append((namespace, name, value))
        _patch_record = record
        _patch_modules_before = set(sys.modules)


def unpatch() -> None:
    """Undo :func:`patch`: every binding it replaced gets torch's original function back.

    torch's own modules imported while patched are restored too. Bindings that someone
    changed after :func:`patch` are left alone. Calling it while not patched does nothing.
    """
    global _patch_record
    with _patch_lock:
        if _patch_record is None:
            return
        swap = _replacements()
        back = {id(new): orig for orig, new in swap.values()}
        for namespace, name, original in _patch_record:
            current = namespace.get(name)
            if current is not None and back.get(id(current)) is original:
                namespace[name] = original
        for modname in set(sys.modules) - _patch_modules_before:
            module = sys.modules.get(modname)
            if not (modname == "torch" or modname.startswith("torch.")):
                continue
            if not isinstance(module, types.ModuleType):
                continue
            namespace = vars(module)
            for name, value in list(namespace.items()):
                original = back.get(id(value))
                if original is not None:
                    namespace[name] = original
        _patch_record = None


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Context manager: :func:`patch` on entry, and on exit restore the state found on entry.

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> with fastinit.torch.patched():
    ...     layer = torch.nn.Linear(4096, 4096)  # reset_parameters runs through fastinit
    """
    with _patch_lock:
        was_patched = is_patched()
        patch()
    try:
        yield
    finally:
        if not was_patched:
            unpatch()


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
