"""Initialization schemes built on the core fills: gains, fans, variance scaling and friends.

Everything here works on any buffer the core fills accept (NumPy arrays, ``__dlpack__``
objects) and takes the same ``seed=``, ``global_shape=`` and ``global_offset=`` keywords. When a
shard is filled (``global_shape`` given), fans are computed from the *global* shape, so every
shard of a tensor gets exactly the values the whole tensor would get.

Fans are computed in one place, :func:`compute_fans`. The default layout is torch's
``(out, in, *kernel)``; Keras' ``(*kernel, in, out)`` and JAX's axis-based rules are available
through ``layout=`` and ``in_axis=`` / ``out_axis=`` / ``batch_axis=``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from . import _fills
from ._buffer import shape_of
from ._stream import DrawnKey, Generator, Key, as_u64, key_value, run_seeded

__all__ = [
    "TRUNCATED_NORMAL_STDDEV_FACTOR",
    "calculate_gain",
    "compute_fans",
    "dirac_",
    "eye_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "sparse_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
]

#: Standard deviation of a unit normal truncated to [-2, 2]. Keras and JAX divide the target
#: standard deviation by it so that a truncated-normal VarianceScaling draw has exactly the
#: requested variance ``scale / fan``.
TRUNCATED_NORMAL_STDDEV_FACTOR = 0.87962566103423978

Layout = Literal["torch", "keras", "jax"]
Axes = int | Sequence[int]

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
_VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_VS_DISTRIBUTIONS = ("truncated_normal", "normal", "untruncated_normal", "uniform")
# The zero pattern of sparse_ is drawn from the values' stream with this bit flipped.
_SPARSE_PATTERN_STREAM_BIT = 1 << 63
# Column chunk of sparse_'s pattern pass: at most about this many rank keys alive at once.
_SPARSE_CHUNK_KEYS = 1 << 21


# --------------------------------------------------------------------------------------------
# gains and fans
# --------------------------------------------------------------------------------------------


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Return the recommended gain for a nonlinearity, exactly as ``torch.nn.init`` does.

    Parameters
    ----------
    nonlinearity : str
        ``'linear'``, ``'conv1d'``, ``'conv2d'``, ``'conv3d'``, ``'conv_transpose1d'``,
        ``'conv_transpose2d'``, ``'conv_transpose3d'``, ``'sigmoid'`` (gain 1), ``'tanh'``
        (5/3), ``'relu'`` (sqrt(2)), ``'leaky_relu'`` (sqrt(2 / (1 + slope**2))) or ``'selu'``
        (3/4).
    param : float, optional
        Negative slope for ``'leaky_relu'`` (default 0.01). Must be an int or a float (not a
        bool).

    Returns
    -------
    float
        The gain (the int 1 for the linear functions and sigmoid, as torch returns).

    Raises
    ------
    ValueError
        For an unknown nonlinearity or a ``param`` that is not a number; the messages are
        torch's.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope: float = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            # bool is an int subclass, hence the explicit exclusion (as torch does)
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        try:
            return math.sqrt(2.0 / (1 + negative_slope**2))
        except OverflowError:
            # |slope| above ~1.3e154 (torch raises OverflowError here): the gain is
            # sqrt(2) / |slope| to within rounding, and 0.0 for an int beyond float range.
            try:
                return math.sqrt(2.0) / abs(float(negative_slope))
            except OverflowError:
                return 0.0
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _normalize_axes(axes: Axes, rank: int, what: str) -> tuple[int, ...]:
    items = (axes,) if isinstance(axes, int | np.integer) else tuple(axes)
    out = []
    for item in items:
        ax = operator.index(item)
        if not -rank <= ax < rank:
            raise ValueError(f"{what}={ax} is out of range for a {rank}-dimensional shape")
        out.append(ax % rank)
    return tuple(out)


def compute_fans(
    shape: Sequence[int],
    *,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> tuple[int, int]:
    """Compute ``(fan_in, fan_out)`` of a weight of the given shape.

    Parameters
    ----------
    shape : sequence of int
        The (global) shape of the weight.
    layout : {'torch', 'keras', 'jax'}, optional
        ``'torch'`` (the default when no axis is given): ``(out, in, *kernel)``, at least
        2-D; ``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``, as
        ``torch.nn.init._calculate_fan_in_and_fan_out``.
        ``'keras'``: ``(*kernel, in, out)``; 0-D gives (1, 1) and 1-D gives (n, n), as
        ``keras.initializers``.
        ``'jax'`` (the default when an axis is given): the axes named by ``in_axis``
        (default -2), ``out_axis`` (default -1) and ``batch_axis`` (default none); every
        other axis is receptive field, as ``jax.nn.initializers.variance_scaling``; at
        least 2-D.
    in_axis, out_axis, batch_axis : int or sequence of int, optional
        JAX-style axis selection (implies ``layout='jax'``). Batch axes count in neither fan.

    Returns
    -------
    tuple of int
        ``(fan_in, fan_out)``.

    Raises
    ------
    ValueError
        For a torch/jax shape of fewer than 2 dimensions (torch's message for the torch
        layout), an unknown layout, axes given with another layout, or out-of-range or
        repeated axes.

    Examples
    --------
    >>> compute_fans((64, 32, 3, 3))  # torch Conv2d weight (out, in, kh, kw)
    (288, 576)
    >>> compute_fans((3, 3, 32, 64), layout="keras")  # Keras Conv2D kernel
    (288, 576)
    >>> compute_fans((8, 32, 64), in_axis=1, out_axis=2, batch_axis=0)  # JAX, batched
    (32, 64)
    """
    shape = tuple(operator.index(s) for s in shape)
    rank = len(shape)
    axes_given = in_axis is not None or out_axis is not None or batch_axis is not None
    if layout is None:
        layout = "jax" if axes_given else "torch"
    if layout not in ("torch", "keras", "jax"):
        raise ValueError(f"layout must be 'torch', 'keras' or 'jax', got {layout!r}")
    if axes_given and layout != "jax":
        raise ValueError(f"in_axis/out_axis/batch_axis select JAX's rule; got layout={layout!r}")

    if layout == "torch":
        if rank < 2:
            raise ValueError(
                "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
            )
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    if layout == "keras":
        if rank == 0:
            return 1, 1
        if rank == 1:
            return shape[0], shape[0]
        receptive = math.prod(shape[:-2])
        return shape[-2] * receptive, shape[-1] * receptive

    if rank < 2:
        raise ValueError(
            f"Can't compute input and output sizes of a {rank}-dimensional weights tensor. "
            "Must be at least 2D."
        )
    ins = _normalize_axes(-2 if in_axis is None else in_axis, rank, "in_axis")
    outs = _normalize_axes(-1 if out_axis is None else out_axis, rank, "out_axis")
    batches = _normalize_axes(() if batch_axis is None else batch_axis, rank, "batch_axis")
    named = ins + outs + batches
    if len(set(named)) != len(named):
        raise ValueError(
            f"in_axis, out_axis and batch_axis must name distinct axes, got {ins}, {outs}, "
            f"{batches}"
        )
    receptive = math.prod(s for i, s in enumerate(shape) if i not in named)
    fan_in = math.prod(shape[i] for i in ins) * receptive
    fan_out = math.prod(shape[i] for i in outs) * receptive
    return fan_in, fan_out


def _checked_empty(
    x: Any,
    seed: Any,
    global_shape: Sequence[int] | None,
    global_offset: Sequence[int] | None,
) -> Any:
    """``x``, for an initializer whose tensor (or shard) has no element: nothing is written and
    no stream is taken, but the buffer, the shard and the seed are checked as a fill checks
    them (a shard outside a global shape with a zero extent raised nothing, and its non-empty
    buffer was silently left unwritten)."""
    if seed is not None and not isinstance(seed, (Generator, DrawnKey)):
        as_u64(seed, "seed")
    # The shard check eye_ and dirac_ use: no seed, and on an empty shard nothing is written.
    _fills.constant_(x, 0.0, global_shape=global_shape, global_offset=global_offset)
    return x


def _target_shape(x: Any, global_shape: Sequence[int] | None) -> tuple[int, ...]:
    if not hasattr(x, "shape"):
        raise TypeError(
            "fastinit: expected a NumPy array or an object implementing __dlpack__ "
            f"(torch tensor, CuPy array, ...), got {type(x).__name__}"
        )
    if global_shape is not None:
        return tuple(operator.index(s) for s in global_shape)
    return shape_of(x)


def check_torch_mode(mode: str) -> str:
    """Validate a torch fan mode (case-insensitive) and return it lower-cased.

    Raises
    ------
    ValueError
        torch's message, for anything but ``'fan_in'`` / ``'fan_out'``.
    """
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    return mode


# The std/bound formulas below are torch's, written with the same floating-point operations in
# the same order, so a bound computed here equals torch's bit for bit.


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Standard deviation of Glorot initialization: ``gain * sqrt(2 / (fan_in + fan_out))``."""
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def kaiming_std(fan: int, gain: float) -> float:
    """Standard deviation of He initialization: ``gain / sqrt(fan)``."""
    return gain / math.sqrt(fan)


def uniform_bound(std: float) -> float:
    """Half-width of the zero-mean uniform distribution with standard deviation ``std``."""
    return math.sqrt(3.0) * std


def kaiming_fan_std(
    shape: Sequence[int], a: float, mode: str, nonlinearity: str, **fans: Any
) -> float:
    """std of ``kaiming_*_`` for a weight of ``shape``; checks in torch's order.

    The mode is checked first, then the fans (``compute_fans(shape, **fans)``), then the
    nonlinearity, as ``torch.nn.init.kaiming_uniform_`` does.
    """
    mode = check_torch_mode(mode)
    fan_in, fan_out = compute_fans(shape, **fans)
    fan = fan_in if mode == "fan_in" else fan_out
    return kaiming_std(fan, calculate_gain(nonlinearity, a))


# --------------------------------------------------------------------------------------------
# torch-named schemes
# --------------------------------------------------------------------------------------------


def xavier_uniform_(
    x: Any,
    gain: float = 1.0,
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """Fill ``x`` in place from U(-b, b), ``b = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot).

    Parameters
    ----------
    x : array or __dlpack__ object
        The buffer (or the shard of a global tensor) to fill.
    gain : float, optional
        Scaling factor (see :func:`calculate_gain`).
    seed : None, int or fastinit.Generator, optional
        As for every fill: None takes the default generator's next stream, an int is a pure
        seed, a Generator gives its next stream.
    global_shape, global_offset : sequence of int, optional
        ``x`` is the sub-box ``[offset, offset + x.shape)`` of a tensor of ``global_shape``;
        fans come from ``global_shape``.
    layout, in_axis, out_axis, batch_axis
        How fans are read from the shape; see :func:`compute_fans`.

    Returns
    -------
    x
        The buffer passed in (a zero-element buffer is left alone).
    """
    shape = _target_shape(x, global_shape)
    fan_in, fan_out = compute_fans(
        shape, layout=layout, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis
    )
    if math.prod(shape) == 0:
        return _checked_empty(x, seed, global_shape, global_offset)
    bound = uniform_bound(xavier_std(fan_in, fan_out, gain))
    return _fills.uniform_(
        x, -bound, bound, seed=seed, global_shape=global_shape, global_offset=global_offset
    )


def xavier_normal_(
    x: Any,
    gain: float = 1.0,
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """Fill ``x`` in place from N(0, std²), ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Parameters and return value as :func:`xavier_uniform_`.
    """
    shape = _target_shape(x, global_shape)
    fan_in, fan_out = compute_fans(
        shape, layout=layout, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis
    )
    if math.prod(shape) == 0:
        return _checked_empty(x, seed, global_shape, global_offset)
    std = xavier_std(fan_in, fan_out, gain)
    return _fills.normal_(
        x, 0.0, std, seed=seed, global_shape=global_shape, global_offset=global_offset
    )


def kaiming_uniform_(
    x: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """Fill ``x`` in place from U(-b, b), ``b = gain * sqrt(3 / fan_mode)`` (He).

    ``nn.Linear``/``nn.Conv*`` use ``a=math.sqrt(5)``, which gives ``b = 1 / sqrt(fan_in)``.

    Parameters
    ----------
    x : array or __dlpack__ object
        The buffer to fill.
    a : float, optional
        Negative slope of the rectifier (used with ``'leaky_relu'`` only).
    mode : {'fan_in', 'fan_out'}, optional
        Which fan scales the variance (case-insensitive, as torch).
    nonlinearity : str, optional
        See :func:`calculate_gain`.
    seed, global_shape, global_offset, layout, in_axis, out_axis, batch_axis
        As :func:`xavier_uniform_`.

    Returns
    -------
    x
        The buffer passed in (a zero-element buffer is left alone, without torch's warning).
    """
    shape = _target_shape(x, global_shape)
    if math.prod(shape) == 0:
        check_torch_mode(mode)
        return _checked_empty(x, seed, global_shape, global_offset)
    std = kaiming_fan_std(
        shape,
        a,
        mode,
        nonlinearity,
        layout=layout,
        in_axis=in_axis,
        out_axis=out_axis,
        batch_axis=batch_axis,
    )
    bound = uniform_bound(std)
    return _fills.uniform_(
        x, -bound, bound, seed=seed, global_shape=global_shape, global_offset=global_offset
    )


def kaiming_normal_(
    x: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """Fill ``x`` in place from N(0, std²), ``std = gain / sqrt(fan_mode)`` (He).

    Parameters and return value as :func:`kaiming_uniform_`.
    """
    shape = _target_shape(x, global_shape)
    if math.prod(shape) == 0:
        check_torch_mode(mode)
        return _checked_empty(x, seed, global_shape, global_offset)
    std = kaiming_fan_std(
        shape,
        a,
        mode,
        nonlinearity,
        layout=layout,
        in_axis=in_axis,
        out_axis=out_axis,
        batch_axis=batch_axis,
    )
    return _fills.normal_(
        x, 0.0, std, seed=seed, global_shape=global_shape, global_offset=global_offset
    )


# --------------------------------------------------------------------------------------------
# variance scaling (Keras / JAX)
# --------------------------------------------------------------------------------------------


def variance_scaling_(
    x: Any,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """Fill ``x`` in place with variance ``scale / n`` (Keras ``VarianceScaling``, JAX).

    ``n`` is ``fan_in``, ``fan_out``, ``(fan_in + fan_out) / 2`` (``'fan_avg'``) or
    ``sqrt(fan_in * fan_out)`` (``'fan_geo_avg'``). Distributions:

    - ``'truncated_normal'``: N(0, s²) truncated to [-2s, 2s] with
      ``s = sqrt(scale / n) / 0.87962566103423978`` -- the Keras/JAX correction that makes the
      *truncated* draw have variance exactly ``scale / n``;
    - ``'normal'`` (alias ``'untruncated_normal'``): N(0, scale / n);
    - ``'uniform'``: U(-l, l) with ``l = sqrt(3 * scale / n)``.

    Parameters
    ----------
    x : array or __dlpack__ object
        The buffer to fill.
    scale : float, optional
        Positive scaling factor.
    mode : {'fan_in', 'fan_out', 'fan_avg', 'fan_geo_avg'}, optional
        The denominator ``n``.
    distribution : {'truncated_normal', 'normal', 'untruncated_normal', 'uniform'}, optional
        The distribution.
    seed, global_shape, global_offset
        As for every fill.
    layout, in_axis, out_axis, batch_axis
        How fans are read from the shape; see :func:`compute_fans` (default: torch's layout;
        pass ``layout='keras'`` or ``in_axis``/``out_axis`` for Keras/JAX kernels).

    Returns
    -------
    x
        The buffer passed in.

    Raises
    ------
    ValueError
        For a non-positive or non-finite scale, an unknown mode or distribution, a shape whose
        fans cannot be computed, or a zero fan.
    """
    try:
        scale_value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}") from None
    if not (math.isfinite(scale_value) and scale_value > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if mode not in _VS_MODES:
        raise ValueError(f"mode must be one of {list(_VS_MODES)}, got {mode!r}")
    if distribution not in _VS_DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {list(_VS_DISTRIBUTIONS)}, got {distribution!r}"
        )
    shape = _target_shape(x, global_shape)
    fan_in, fan_out = compute_fans(
        shape, layout=layout, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis
    )
    if math.prod(shape) == 0:
        return _checked_empty(x, seed, global_shape, global_offset)
    if mode == "fan_in":
        denominator: float = fan_in
    elif mode == "fan_out":
        denominator = fan_out
    elif mode == "fan_avg":
        denominator = (fan_in + fan_out) / 2
    else:
        denominator = math.sqrt(fan_in * fan_out)
    if denominator <= 0:
        raise ValueError(f"{mode} is 0 for shape {shape}; variance scaling needs a positive fan")
    variance = scale_value / denominator
    shard: dict[str, Any] = {
        "seed": seed,
        "global_shape": global_shape,
        "global_offset": global_offset,
    }
    if distribution == "truncated_normal":
        stddev = math.sqrt(variance) / TRUNCATED_NORMAL_STDDEV_FACTOR
        return _fills.truncated_normal_(x, stddev=stddev, mean=0.0, lower=-2.0, upper=2.0, **shard)
    if distribution in ("normal", "untruncated_normal"):
        return _fills.normal_(x, 0.0, math.sqrt(variance), **shard)
    limit = math.sqrt(3.0 * variance)
    return _fills.uniform_(x, -limit, limit, **shard)


def lecun_uniform_(
    x: Any,
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """LeCun uniform: ``variance_scaling_(x, 1.0, 'fan_in', 'uniform')``, U(±sqrt(3/fan_in)).

    Keywords as :func:`variance_scaling_`.
    """
    return variance_scaling_(
        x,
        1.0,
        "fan_in",
        "uniform",
        seed=seed,
        global_shape=global_shape,
        global_offset=global_offset,
        layout=layout,
        in_axis=in_axis,
        out_axis=out_axis,
        batch_axis=batch_axis,
    )


def lecun_normal_(
    x: Any,
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    layout: Layout | None = None,
    in_axis: Axes | None = None,
    out_axis: Axes | None = None,
    batch_axis: Axes | None = None,
) -> Any:
    """LeCun normal: ``variance_scaling_(x, 1.0, 'fan_in', 'truncated_normal')``.

    As in Keras and JAX this is the *truncated* normal with the variance correction: the
    values have variance exactly ``1 / fan_in`` and lie within ``±2 sqrt(1/fan_in) / 0.8796``.
    Keywords as :func:`variance_scaling_`.
    """
    return variance_scaling_(
        x,
        1.0,
        "fan_in",
        "truncated_normal",
        seed=seed,
        global_shape=global_shape,
        global_offset=global_offset,
        layout=layout,
        in_axis=in_axis,
        out_axis=out_axis,
        batch_axis=batch_axis,
    )


# --------------------------------------------------------------------------------------------
# structured: eye_, dirac_, sparse_
# --------------------------------------------------------------------------------------------


def eye_(
    x: Any,
    *,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> Any:
    """Fill the 2-D ``x`` with the identity matrix (ones at ``(i, i)``, zeros elsewhere).

    Parameters
    ----------
    x : array or __dlpack__ object
        A 2-D buffer (or a shard of a 2-D global tensor).
    global_shape, global_offset : sequence of int, optional
        Shard keywords; the diagonal is the global one.

    Returns
    -------
    x
        The buffer passed in.

    Raises
    ------
    ValueError
        ``"Only tensors with 2 dimensions are supported"`` (torch's message) otherwise.
    """
    shape = _target_shape(x, global_shape)
    if len(shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = shape
    # Validates the shard (nothing written otherwise) before anything is sized by it.
    _fills.constant_(x, 0.0, global_shape=global_shape, global_offset=global_offset)
    local = shape_of(x)
    if math.prod(local) == 0:
        return x
    o0, o1 = _local_offset(global_offset, 2)
    # Only the diagonal entries inside this shard: never an array as long as the global one.
    first = max(o0, o1)
    stop = min(o0 + local[0], o1 + local[1], rows, cols)
    if first < stop:
        diagonal = np.arange(first, stop, dtype=np.int64) * (cols + 1)
        _fills.scatter_constant_(
            x, 1.0, diagonal, global_shape=global_shape, global_offset=global_offset
        )
    return x


def _local_offset(global_offset: Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """The shard's offset (zeros without one), after the fills validated it."""
    if global_offset is None:
        return (0,) * ndim
    return tuple(operator.index(v) for v in global_offset)


def dirac_(
    x: Any,
    groups: int = 1,
    *,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> Any:
    """Fill the {3, 4, 5}-D ``x`` with the Dirac delta, preserving channels (torch semantics).

    For each group ``g`` and ``d < min(out // groups, in)`` the element
    ``[g * (out // groups) + d, d, k1 // 2, ...]`` is 1; everything else is 0.

    Parameters
    ----------
    x : array or __dlpack__ object
        A 3-, 4- or 5-D convolution weight ``(out, in, *kernel)``.
    groups : int, optional
        Number of groups of the convolution; must divide ``out``.
    global_shape, global_offset : sequence of int, optional
        Shard keywords.

    Returns
    -------
    x
        The buffer passed in.

    Raises
    ------
    ValueError
        torch's messages, for the wrong number of dimensions or ``groups`` not dividing dim 0.
    """
    shape = _target_shape(x, global_shape)
    if len(shape) not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if isinstance(groups, bool):
        raise TypeError("groups must be an int, got bool")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"groups must be an int, got {type(groups).__name__}") from None
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if shape[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    _fills.constant_(x, 0.0, global_shape=global_shape, global_offset=global_offset)
    local = shape_of(x)
    if math.prod(local) == 0:
        return x
    out_per_group = shape[0] // groups
    min_dim = min(out_per_group, shape[1])
    off = _local_offset(global_offset, len(shape))
    centre = [s // 2 for s in shape[2:]]
    inside = all(o <= c < o + n for c, o, n in zip(centre, off[2:], local[2:], strict=True))
    if min_dim == 0 or not inside:
        return x
    # The ones of the groups whose rows meet this shard, and only those inside it (at most
    # one per local row): nothing sized by the global shape.
    ds: list[np.ndarray] = []
    gs: list[np.ndarray] = []
    for g in range(off[0] // out_per_group, (off[0] + local[0] - 1) // out_per_group + 1):
        lo = max(off[0] - g * out_per_group, off[1], 0)
        hi = min(off[0] + local[0] - g * out_per_group, off[1] + local[1], min_dim)
        if lo < hi:
            ds.append(np.arange(lo, hi, dtype=np.int64))
            gs.append(np.full(hi - lo, g, dtype=np.int64))
    if ds:
        d, grp = np.concatenate(ds), np.concatenate(gs)
        k = math.prod(shape[2:])
        c0 = int(np.ravel_multi_index(tuple(centre), shape[2:]))
        flat = ((grp * out_per_group + d) * shape[1] + d) * k + c0
        _fills.scatter_constant_(
            x, 1.0, flat, global_shape=global_shape, global_offset=global_offset
        )
    return x


def sparse_pattern_stream(stream: int) -> int:
    """The stream :func:`sparse_` draws its zero pattern from, given the values' stream."""
    return stream ^ _SPARSE_PATTERN_STREAM_BIT


def _rank_keys(
    rows: int, col: int, ncols: int, row_start: int, row_stop: int, key: int, stream: int
) -> np.ndarray:
    """Rank keys of rows ``[row_start, row_stop)`` of columns ``[col, col + ncols)``.

    Shape ``(ncols, row_stop - row_start)``, uint64. Several columns only with every row (a
    column is one contiguous run of the pattern stream, a row range of it too).
    """
    assert ncols == 1 or (row_start, row_stop) == (0, rows), "a row range of one column only"
    n = row_stop - row_start
    # Rank key of element (i, j): 64 bits from words 2k (high) and 2k+1 (low) of the pattern
    # stream, k = j * rows + i (column-major: a column is one contiguous run of the stream),
    # with the low bits replaced by the row index, so keys are distinct and ties cannot depend
    # on anything but (i, j).
    words = _fills.random_words(2 * n * ncols, key, stream, offset=2 * (rows * col + row_start))
    words = words.reshape(ncols, n, 2)
    # In place after the one widening copy: a key array and the words are the only temporaries
    # of this size (the budget of sparse_'s pattern pass counts them).
    keys = words[..., 0].astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= words[..., 1]
    del words
    keys &= ~_row_mask(rows)
    keys |= np.arange(row_start, row_stop, dtype=np.uint64)
    return keys


def _row_mask(rows: int) -> np.uint64:
    return np.uint64((1 << max((rows - 1).bit_length(), 1)) - 1)


def sparse_zero_rows(
    rows: int, num_zeros: int, col_start: int, col_stop: int, key: int, stream: int
) -> np.ndarray:
    """Rows of the zeros of columns ``[col_start, col_stop)``; shape ``(ncols, num_zeros)``.

    ``stream`` is the pattern stream (:func:`sparse_pattern_stream`). The rows of each column
    come unsorted. Holds every key of the columns at once: for columns of at most
    ``_SPARSE_CHUNK_KEYS`` rows (taller ones go through :func:`sparse_column_zero_rows`).
    """
    keys = _rank_keys(rows, col_start, col_stop - col_start, 0, rows, key, stream)
    if num_zeros < rows:
        keys = np.partition(keys, num_zeros - 1, axis=1)[:, :num_zeros]
    return (keys & _row_mask(rows)).astype(np.int64)


def sparse_column_zero_rows(
    rows: int,
    num_zeros: int,
    col: int,
    row_start: int,
    row_stop: int,
    key: int,
    stream: int,
    *,
    chunk: int = _SPARSE_CHUNK_KEYS,
    digit_bits: int = 16,
) -> Iterator[np.ndarray]:
    """The zero rows of column ``col`` within ``[row_start, row_stop)``, as int64 arrays.

    The zeros are the rows whose rank key is among the column's ``num_zeros`` smallest
    (``1 <= num_zeros <= rows``), the rows :func:`sparse_zero_rows` gives, for columns of any
    height: at most ``chunk`` keys are alive at a time (and arrays of at most ``chunk`` rows
    are yielded). A radix selection regenerates the column's keys in runs of ``chunk`` rows,
    counts the candidates' next ``digit_bits`` bits in each pass and keeps the bucket that
    holds the ``num_zeros``-th key, until at most ``chunk`` candidates remain. Random keys
    leave about ``rows / 2**digit_bits`` after the first pass, so one counting pass suffices
    up to 2**37 rows. The last pass yields the range's rows whose key lies below that bucket
    and collects the bucket, whose smallest keys are the remaining zeros: two passes over the
    column in all, whatever the range.
    """
    if not 1 <= num_zeros <= rows:
        raise ValueError(f"num_zeros must be in [1, {rows}], got {num_zeros}")
    if num_zeros == rows:  # every row: no selection, no key
        for start in range(row_start, row_stop, chunk):
            yield np.arange(start, min(start + chunk, row_stop), dtype=np.int64)
        return
    rank = num_zeros - 1  # 0-based rank among the remaining candidates
    shift, prefix, count = 64, 0, rows  # candidates: keys whose bits from `shift` up are prefix

    def runs() -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        # (first row, keys, their bits from `shift` up; None while every key is a candidate)
        for start in range(0, rows, chunk):
            keys = _rank_keys(rows, col, 1, start, min(start + chunk, rows), key, stream)[0]
            yield start, keys, None if shift == 64 else keys >> np.uint64(shift)

    while count > chunk:
        width = min(digit_bits, shift)
        digit_mask = np.uint64((1 << width) - 1)
        hist = np.zeros(1 << digit_bits, np.int64)
        for _, keys, top in runs():
            if top is not None:
                keys = keys[top == np.uint64(prefix)]
            hist += np.bincount(
                ((keys >> np.uint64(shift - width)) & digit_mask).astype(np.intp),
                minlength=1 << digit_bits,
            )
        below = np.cumsum(hist)
        digit = int(np.searchsorted(below, rank, side="right"))
        rank -= int(below[digit - 1]) if digit else 0
        count = int(hist[digit])
        shift -= width
        prefix = (prefix << width) | digit
    found_keys, found_rows = [], []
    for start, keys, top in runs():
        if top is None:
            inside = np.arange(keys.size)
        else:
            lo = min(max(row_start - start, 0), keys.size)
            hi = min(max(row_stop - start, 0), keys.size)
            zeros = np.flatnonzero(top[lo:hi] < np.uint64(prefix))
            if zeros.size:
                yield zeros + (start + lo)
            inside = np.flatnonzero(top == np.uint64(prefix))
        found_keys.append(keys[inside])
        found_rows.append(inside + start)
    keys, found = np.concatenate(found_keys), np.concatenate(found_rows)
    threshold = np.partition(keys, rank)[rank]
    zeros = found[(keys <= threshold) & (found >= row_start) & (found < row_stop)]
    if zeros.size:
        yield zeros


def sparse_(
    x: Any,
    sparsity: float,
    std: float = 0.01,
    *,
    seed: Any = None,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
) -> Any:
    """Fill the 2-D ``x`` as a sparse matrix (Martens 2010, torch semantics).

    Every column gets exactly ``ceil(sparsity * rows)`` zeros at rows chosen uniformly at
    random; every other element is drawn from N(0, std²).

    Stream derivation (frozen, like every fill): with ``(key, stream)`` the resolved seed, the
    values are ``normal_(x, 0, std)`` on ``(key, stream)``. The zero pattern comes from
    ``(key, stream ^ 2**63)`` (:func:`sparse_pattern_stream`): element ``(i, j)`` of the global
    ``rows x cols`` matrix gets the 64-bit rank key made of words ``2k`` (high half) and
    ``2k+1`` (low half) of that stream, ``k = j * rows + i``, with its low
    ``max(1, bit_length(rows - 1))`` bits replaced by ``i``; the zeros of column ``j`` are its
    ``ceil(sparsity * rows)`` smallest keys. The pattern depends on nothing but the seed and
    the global position, so every shard agrees with the whole matrix.

    Parameters
    ----------
    x : array or __dlpack__ object
        A 2-D buffer (or a shard of a 2-D global tensor).
    sparsity : float
        Fraction of each column set to zero, in [0, 1].
    std : float, optional
        Standard deviation of the non-zero values.
    seed, global_shape, global_offset
        As for every fill.

    Returns
    -------
    x
        The buffer passed in.

    Raises
    ------
    ValueError
        For a non-2-D tensor (torch's message), ``sparsity`` outside [0, 1] or NaN, a negative
        or non-finite std, or more than 2**32 rows.

    Notes
    -----
    The pattern pass does ``O(rows)`` work per column of the shard (over every row of the
    column, not only the shard's) in NumPy, holding at most ``2**21`` keys at a time (under
    ~90 MiB with their temporaries) whatever the shape: columns of more than ``2**21`` rows go
    through a radix selection (:func:`sparse_column_zero_rows`), which generates the column's
    keys twice (~1.4x the time of holding whole columns: 0.82 against 0.60 s for two columns
    of 2**22 rows on a Zen 3 core). It is far slower per element than the fills, as torch's
    ``sparse_`` is.
    """
    shape = _target_shape(x, global_shape)
    if len(shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    sparsity = float(sparsity)
    if not 0.0 <= sparsity <= 1.0:  # also rejects NaN
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    std = float(std)
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"sparse_ expects a finite std >= 0, got {std}")
    rows, cols = shape
    if rows > 1 << 32:
        raise ValueError(f"sparse_ supports at most 2**32 rows, got {rows}")
    num_zeros = min(math.ceil(sparsity * rows), rows)
    local = shape_of(x)
    if math.prod(local) == 0:
        return _checked_empty(x, seed, global_shape, global_offset)

    # One (key, stream) for the values and, on a stream derived from it, the zero pattern; a
    # Generator's stream is taken only if the whole call succeeds (run_seeded).
    def write(k: Key, stream: int) -> None:
        _fills.fill_at(x, "normal", (0.0, std), k, stream, global_shape, global_offset)
        key = key_value(k)  # drawn by now: the fill's checks have passed
        if num_zeros == 0:
            return
        r0, c0 = (0, 0) if global_offset is None else (int(global_offset[0]), int(global_offset[1]))
        r1, c1 = r0 + local[0], c0 + local[1]
        pattern = sparse_pattern_stream(stream)

        def zero(flat: np.ndarray) -> None:
            _fills.scatter_constant_(
                x, 0.0, flat, global_shape=global_shape, global_offset=global_offset
            )

        budget = _SPARSE_CHUNK_KEYS
        if rows <= budget:
            # Whole columns, as many at a time as the budget holds.
            step = budget // rows
            for start in range(c0, c1, step):
                stop = min(start + step, c1)
                zero_rows = sparse_zero_rows(rows, num_zeros, start, stop, key, pattern)
                col = np.arange(start, stop, dtype=np.int64)[:, None]
                inside = (zero_rows >= r0) & (zero_rows < r1)
                zero((zero_rows * cols + col)[inside])
            return
        # Taller columns: each column's zeros in the shard's rows by a bounded radix selection.
        for j in range(c0, c1):
            for zero_rows in sparse_column_zero_rows(
                rows, num_zeros, j, r0, r1, key, pattern, chunk=budget
            ):
                zero(zero_rows * cols + j)

    run_seeded(seed, write)
    return x
