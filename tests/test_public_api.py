"""The public API: every name importable from ``fastinit`` and ``fastinit.torch``.

The lists are frozen: removing or renaming a public name is an API break and must fail here
(adding one means adding it here, deliberately).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastinit

FASTINIT = [
    "Generator",
    "TRUNCATED_NORMAL_STDDEV_FACTOR",
    "__version__",
    "calculate_gain",
    "compute_fans",
    "config",
    "constant_",
    "default_generator",
    "delta_orthogonal_",
    "dirac_",
    "eye_",
    "get_num_threads",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "manual_seed",
    "normal_",
    "ones_",
    "orthogonal_",
    "philox4x32",
    "set_num_threads",
    "show_config",
    "sparse_",
    "trunc_normal_",
    "truncated_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

FASTINIT_TORCH = [
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

#: Public names of ``fastinit.torch`` outside ``__all__`` (type aliases of ``apply_``).
FASTINIT_TORCH_EXTRA = ["RuleKey", "Scheme"]


def test_fastinit_exports() -> None:
    assert sorted(fastinit.__all__) == FASTINIT
    for name in FASTINIT:
        assert getattr(fastinit, name) is not None, name


def test_fastinit_torch_exports() -> None:
    ftorch = pytest.importorskip("fastinit.torch")
    assert sorted(ftorch.__all__) == FASTINIT_TORCH
    for name in FASTINIT_TORCH + FASTINIT_TORCH_EXTRA:
        assert getattr(ftorch, name) is not None, name


def test_fastinit_torch_covers_torch_nn_init() -> None:
    nn_init = pytest.importorskip("torch.nn.init")
    ftorch = pytest.importorskip("fastinit.torch")
    missing = [n for n in nn_init.__all__ if not callable(getattr(ftorch, n, None))]
    assert not missing


def test_import_fastinit_does_not_import_torch() -> None:
    code = "import sys, fastinit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
