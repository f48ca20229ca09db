"""fastinit: fast, reproducible, in-place weight initialization.

Every value depends only on (seed, stream, logical position, distribution, dtype class), so
the same call gives the same bits for any thread count, SIMD path, shard layout or strides.
"""

from __future__ import annotations

import atexit as _atexit

from . import _core
from ._config import __version__, config, show_config
from ._fills import (
    constant_,
    get_num_threads,
    normal_,
    ones_,
    philox4x32,
    set_num_threads,
    trunc_normal_,
    truncated_normal_,
    uniform_,
    zeros_,
)
from ._orthogonal import delta_orthogonal_, orthogonal_
from ._schemes import *  # noqa: F403
from ._schemes import __all__ as _schemes_all
from ._stream import Generator, default_generator, manual_seed

__all__ = [
    "Generator",
    "__version__",
    "config",
    "constant_",
    "default_generator",
    "delta_orthogonal_",
    "get_num_threads",
    "manual_seed",
    "normal_",
    "ones_",
    "orthogonal_",
    "philox4x32",
    "set_num_threads",
    "show_config",
    "trunc_normal_",
    "truncated_normal_",
    "uniform_",
    "zeros_",
    *_schemes_all,
]

# At interpreter exit no fastinit kernel starts and running ones (in daemon threads) stop at
# their next slice, before the process is torn down under them (see gil.hpp).
_atexit.register(_core.stop_kernels_at_exit)
del _atexit, _core
