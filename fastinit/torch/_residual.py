"""Depth-scaled initialization of residual output projections (GPT-2, torchtitan).

In a pre-norm residual network ``x_{l+1} = x_l + f_l(x_l)`` the variances of the branch
outputs add up, so the residual stream's std grows like ``sqrt(number of branches)``.
GPT-2 ("we scale the weights of residual layers at initialization by a factor of
1/sqrt(N) where N is the number of residual layers") and torchtitan's Llama
(``init_std = 0.02 / (2 * n_layers) ** 0.5`` for ``wo`` and ``w2``) initialize the *last*
projection of every branch -- attention's output projection and the MLP's down projection --
with ``std / sqrt(2 * n_layers)``: two residual branches per transformer block.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["depth_scaled", "depth_scaled_std"]

_SCHEMES = ("normal_", "trunc_normal_")


def depth_scaled_std(std: float, n_layers: int) -> float:
    """``std / sqrt(2 * n_layers)``: the std of a residual output projection.

    Parameters
    ----------
    std : float
        The base std (0.02 in GPT-2 and torchtitan); non-negative and finite.
    n_layers : int
        Number of transformer blocks (each adds two residual branches). For torchtitan's
        ``depth_init`` variant pass ``layer_id + 1``.

    Returns
    -------
    float

    Examples
    --------
    >>> fastinit.torch.depth_scaled_std(0.02, 12)  # GPT-2 small: 0.02 / sqrt(24)
    0.004082482904638631
    """
    if isinstance(std, bool) or not isinstance(std, (int, float)):
        raise TypeError(f"std must be a float, got {type(std).__name__}")
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be non-negative and finite, got {std}")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int):
        raise TypeError(f"n_layers must be an int, got {type(n_layers).__name__}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    return float(std) / math.sqrt(2 * n_layers)


def depth_scaled(
    n_layers: int, std: float = 0.02, scheme: str = "normal_", **kwargs: Any
) -> tuple[str, dict[str, Any]]:
    """An :func:`fastinit.torch.apply_` scheme for residual output projections.

    Returns ``(scheme, {"mean": 0.0, "std": std / sqrt(2 * n_layers), **kwargs})``, a
    scheme tuple that ``apply_`` (and anyone calling ``fastinit.torch.<scheme>``) accepts.

    Parameters
    ----------
    n_layers : int
        Number of transformer blocks.
    std : float
        Base std (default 0.02, as GPT-2 and torchtitan).
    scheme : {"normal_", "trunc_normal_"}
        The ``fastinit.torch`` fill: GPT-2 uses ``normal_``, torchtitan ``trunc_normal_``
        (whose bounds ``a``, ``b`` are absolute, default +-2, as in torch).
    **kwargs
        More keyword arguments of the scheme (``a``, ``b`` for ``trunc_normal_``).

    Returns
    -------
    tuple of (str, dict)

    Examples
    --------
    >>> fastinit.torch.apply_(
    ...     model,
    ...     {
    ...         "*.o_proj.weight": fastinit.torch.depth_scaled(n_layers=16),
    ...         "*.down_proj.weight": fastinit.torch.depth_scaled(n_layers=16),
    ...         "*proj.weight": ("normal_", {"std": 0.02}),
    ...     },
    ...     seed=0,
    ... )
    """
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme must be one of {_SCHEMES}, got {scheme!r}")
    if "mean" in kwargs:
        raise TypeError("depth_scaled sets the mean itself (0.0)")
    return scheme, {"mean": 0.0, "std": depth_scaled_std(std, n_layers), **kwargs}
