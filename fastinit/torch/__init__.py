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
seeded with ``s``. One call consumes one draw, whatever the tensor's size. The draw comes after
the kernels' checks: a call they refuse (overlapping elements, a truncation interval with no
float32 probability mass, a non-finite mean) draws nothing and goes to torch's own function,
which then gives torch's values and leaves the generator where torch leaves it (a DTensor's
seed, common to the mesh, is drawn first: there the generator is one draw on).

The values of a native fill depend on the tensor's logical positions only, so a
``channels_last`` or transposed tensor gets the values of its contiguous counterpart.

DTensors (tensor parallel, FSDP2) go to ``fastinit.torch._dtensor``: each rank fills its own
shards with the values the unsharded tensor has there (see docs/sharded.md).
"""

from __future__ import annotations

from ._lsuv import LSUVLayer, LSUVReport, lsuv_
from ._materialize import RuleKey as RuleKey
from ._materialize import Scheme as Scheme
from ._materialize import apply_, empty_init, materialize_
from ._nn_init import (
    calculate_gain,
    constant,
    constant_,
    dirac,
    dirac_,
    eye,
    eye_,
    kaiming_normal,
    kaiming_normal_,
    kaiming_uniform,
    kaiming_uniform_,
    normal,
    normal_,
    ones_,
    orthogonal,
    orthogonal_,
    sparse,
    sparse_,
    trunc_normal_,
    uniform,
    uniform_,
    xavier_normal,
    xavier_normal_,
    xavier_uniform,
    xavier_uniform_,
    zeros_,
)
from ._patch import is_patched, patch, patched, unpatch
from ._residual import depth_scaled, depth_scaled_std
from ._signal import LayerSignal, SignalReport, plot_signal, signal_report

__all__ = [
    "LSUVLayer",
    "LSUVReport",
    "LayerSignal",
    "SignalReport",
    "apply_",
    "calculate_gain",
    "constant",
    "constant_",
    "depth_scaled",
    "depth_scaled_std",
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
    "lsuv_",
    "materialize_",
    "normal",
    "normal_",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "patch",
    "patched",
    "plot_signal",
    "signal_report",
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
