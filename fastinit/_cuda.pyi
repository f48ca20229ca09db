"""Type stubs for the native module ``fastinit._cuda`` (private: loaded by
``fastinit._buffer`` when a CUDA buffer arrives)."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy.typing as npt

def fill(
    target: Any,
    dist: str,
    params: Sequence[float],
    key: int | Callable[[], int],
    stream: int,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    *,
    cuda_stream: int = 0,
) -> None: ...
def constant(
    target: Any,
    value: float,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    *,
    cuda_stream: int = 0,
) -> None: ...
def scatter_constant(
    target: Any,
    value: float,
    indices: npt.ArrayLike,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    *,
    cuda_stream: int = 0,
) -> None: ...
def _native_state() -> dict[str, Any]: ...
def device_count() -> int: ...
def check_device(device: int) -> None: ...
def device_info(device: int) -> dict[str, Any]: ...
def unavailable_reason() -> str: ...
def _unavailable_message(no_device_error: bool, driver: int, runtime: int, detail: str) -> str: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
def architectures() -> str: ...
def _emulate_fill(
    target: Any,
    dist: str,
    params: Sequence[float],
    key: int | Callable[[], int],
    stream: int,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> None: ...
def _emulate_constant(target: Any, value: float) -> None: ...
