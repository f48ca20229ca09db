"""Type stubs for the native module ``fastinit._blas`` (private: use fastinit.orthogonal_).

Load it through ``fastinit._orthogonal.load_blas()``, which also preloads scipy-openblas32.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

def orthogonal(
    target: Any,
    gain: float,
    key: int | Callable[[], int],
    stream: int,
    column_axis: int | None = None,
    threads: int = 1,
    sign_correction: bool = True,
    block: int = 0,
    slice_cols: int = 0,
) -> None: ...
def delta_orthogonal(
    target: Any,
    gain: float,
    key: int | Callable[[], int],
    stream: int,
    column_axis: int | None = None,
    threads: int = 1,
) -> None: ...
def reflector(
    j: int, M: int, N: int, key: int, stream: int, float64: bool = False
) -> tuple[npt.NDArray[np.float32] | npt.NDArray[np.float64], float, float]: ...
def info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _native_state() -> dict[str, Any]: ...
