"""Type stubs for the native module ``fastinit._core`` (private: use the fastinit package)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_compiled_isa_list: str
DLPACK_HOST_DEVICES: tuple[int, ...]
DLPACK_CUDA: int

def philox4x32(counter: Sequence[int], key: Sequence[int]) -> tuple[int, int, int, int]: ...
def fill(
    target: Any,
    dist: str,
    params: Sequence[float],
    key: int,
    stream: int,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> None: ...
def constant(
    target: Any,
    value: float,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> None: ...
def scatter_constant(
    target: Any,
    value: float,
    indices: npt.ArrayLike,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> None: ...
def random_words(n: int, key: int, stream: int, offset: int = 0) -> npt.NDArray[np.uint32]: ...
def round_to_dtype(x: float, dtype: str) -> float: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def get_isa() -> str: ...
def set_isa(name: str) -> None: ...
def compiled_isas() -> list[str]: ...
def supported_isas() -> list[str]: ...
def _native_state() -> dict[str, Any]: ...
