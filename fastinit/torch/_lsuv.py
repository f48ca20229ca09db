"""Layer-sequential unit-variance (LSUV) initialization (Mishkin & Matas, ICLR 2016).

"All you need is a good init": pre-initialize every Linear and Conv weight with an
orthogonal matrix, then, layer by layer in forward order, run the data through the network
and divide the layer's weight by the std of the layer's output until that std is 1 within a
tolerance. Each layer is fixed before the next is measured, so the later layers see the
corrected signal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import _orthogonal, _stream
from . import _target

__all__ = ["LSUVLayer", "LSUVReport", "lsuv_"]

#: The module types whose weights LSUV initializes and rescales.
LSUV_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LSUVLayer:
    """What :func:`lsuv_` did to one layer.

    Attributes
    ----------
    name : str
        Qualified module name.
    kind : str
        The module's class name.
    std_before : float
        Output std right after the orthogonal pre-initialization (earlier layers already
        rescaled).
    std_after : float
        Output std after the last rescale.
    scale : float
        Product of the factors the weight was multiplied by.
    iterations : int
        Number of rescales (0 when the pre-initialized layer was already within ``tol``).
    converged : bool
        ``abs(std_after - 1) <= tol``.
    """

    name: str
    kind: str
    std_before: float
    std_after: float
    scale: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class LSUVReport:
    """The per-layer result of :func:`lsuv_`, in forward order.

    Attributes
    ----------
    layers : list of LSUVLayer
    seed : int
        The 64-bit base seed used (drawn from torch's default generator when ``seed=None``).
    tol : float
    """

    layers: list[LSUVLayer] = field(default_factory=list)
    seed: int = 0
    tol: float = 0.05

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LSUVLayer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> LSUVLayer:
        return self.layers[index]

    @property
    def converged(self) -> bool:
        """Whether every layer reached ``tol``."""
        return all(layer.converged for layer in self.layers)

    def table(self) -> str:
        """The rows as an aligned plain-text table."""
        header = ["#", "layer", "type", "std before", "std after", "scale", "iters", "ok"]
        body = [
            [
                str(i),
                r.name,
                r.kind,
                f"{r.std_before:.4g}",
                f"{r.std_after:.4g}",
                f"{r.scale:.4g}",
                str(r.iterations),
                "yes" if r.converged else "NO",
            ]
            for i, r in enumerate(self.layers)
        ]
        widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]

        def line(row: list[str]) -> str:
            return "  ".join(
                cell.ljust(w) if c in (1, 2) else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])

    def __str__(self) -> str:
        return self.table()


def _output_std(out: Any) -> float:
    if not isinstance(out, Tensor) or out.numel() == 0:
        return math.nan
    return float(out.detach().double().std(correction=0))


def _pre_init(weight: Tensor, gen: _stream.Generator, torch_seed: int) -> None:
    """Haar-orthogonal ``weight`` (gain 1): fastinit's stream, or torch's where fastinit does
    not fill the tensor (integer dtypes, tensor subclasses, devices without fastinit)."""
    if _target.is_native(weight):
        _orthogonal.orthogonal_(weight.detach(), 1.0, seed=gen)
        _target.written(weight)
    else:
        g = torch.Generator(device=weight.device).manual_seed(torch_seed)
        _target.ORIGINALS["orthogonal_"](weight.detach(), 1.0, generator=g)


def lsuv_(
    model: nn.Module,
    *example_inputs: Any,
    tol: float = 0.05,
    max_iter: int = 10,
    seed: int | None = None,
    zero_bias: bool = True,
) -> LSUVReport:
    """LSUV: orthogonal pre-initialization, then rescale layer by layer to unit output std.

    1. Every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weight of ``model`` is filled with a
       Haar-orthogonal matrix by :func:`fastinit.orthogonal_` (torch's flattening rule), the
       layers taking successive streams of ``fastinit.Generator(seed)`` in
       ``model.modules()`` order; their biases are zeroed (``zero_bias``).
    2. One pass of ``model(*example_inputs)``: when it reaches such a layer for the first
       time (every layer before it already final), while the std of the layer's output is
       not within ``tol`` of 1, divide the weight by that std and recompute the layer on the
       same input (at most ``max_iter`` times); the corrected output goes on to the next
       layers. This is Mishkin & Matas' layer-by-layer loop, with the network before the
       layer run once instead of once per iteration.

    Deterministic for a seed: the same model, inputs and seed give the same weights bit for
    bit on the same machine and thread count (the orthogonal fill and torch's matmuls round
    through BLAS, which may differ by thread count or CPU by ~1e-7).

    Parameters
    ----------
    model : torch.nn.Module
    *example_inputs
        A batch, passed positionally to ``model`` (the statistics are the batch's).
    tol : float
        Accepted ``abs(std - 1)``; positive.
    max_iter : int
        Most rescales per layer; at least 1.
    seed : int, optional
        Base seed of the orthogonal fills and of the dropout draws during the passes. None
        draws one 64-bit seed from torch's default generator (one draw).
    zero_bias : bool
        Zero the biases of the pre-initialized layers (as LSUV's reference code starts from).

    Returns
    -------
    LSUVReport
        Per layer: output std before and after, the total scale, the rescales used and
        whether ``tol`` was reached; ``.table()`` prints it.

    Warns
    -----
    UserWarning
        When a layer does not reach ``tol`` in ``max_iter`` rescales, or its output is
        constant (std 0) so that no rescale can help.

    Notes
    -----
    The passes run under ``torch.no_grad()`` in the model's current train/eval mode,
    inside ``torch.random.fork_rng`` (the caller's RNG state is left as it was); buffers
    (BatchNorm running statistics) are restored afterwards, so only the Linear/Conv
    weights and biases change.

    Limits:

    - **Normalization layers.** A BatchNorm/LayerNorm after a layer undoes its scale, so
      LSUV fixes the pre-normalization statistics only; in train mode BatchNorm makes the
      downstream signal unit-variance anyway and LSUV adds little there.
    - **Residual blocks.** LSUV makes each branch's layers unit-variance, but the sum
      ``x + f(x)`` still grows with depth (variance adds up across blocks); use a
      depth-scaled rule for the branch's last projection
      (:func:`fastinit.torch.depth_scaled`) or a zero-initialized last layer instead.
    - Only ``nn.Linear`` and ``nn.Conv1d/2d/3d`` are touched (not ConvTranspose, embeddings
      or attention's fused projections such as ``nn.MultiheadAttention.in_proj_weight``);
      a module called several times is measured at its first call; layers the forward
      pass does not reach keep their orthogonal pre-initialization.
    - The statistics are those of the batch given: use a batch representative of the data.

    Examples
    --------
    >>> report = fastinit.torch.lsuv_(model, torch.randn(256, 784), seed=0)
    >>> print(report.table())
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise TypeError(f"tol must be a float, got {type(tol).__name__}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be positive and finite, got {tol}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int):
        raise TypeError(f"max_iter must be an int, got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    base = _target.draw_seed(None) if seed is None else _stream.wrap_u64(seed)

    names: dict[int, str] = {}
    weights: dict[int, Tensor] = {}
    targets: list[nn.Module] = []
    for name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if isinstance(mod, LSUV_TYPES) and isinstance(weight, Tensor):
            if weight.is_meta:
                raise ValueError(f"lsuv_: {name} has meta weights; materialize the model first")
            names[id(mod)] = name
            weights[id(mod)] = weight
            targets.append(mod)
    if not targets:
        raise ValueError("lsuv_: the model has no nn.Linear or nn.Conv1d/2d/3d layer")

    buffers = [(b, b.detach().clone()) for b in dict.fromkeys(model.buffers())]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    # Torch's own seeding takes a value below 2**63 (dropout draws only).
    torch_seed = base & ((1 << 63) - 1)

    layers: list[LSUVLayer] = []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        try:
            gen = _stream.Generator(base)
            for k, mod in enumerate(targets):
                _pre_init(weights[id(mod)], gen, (torch_seed + k) & ((1 << 63) - 1))
                bias = getattr(mod, "bias", None)
                if zero_bias and isinstance(bias, Tensor):
                    bias.zero_()

            # One forward pass: when it reaches a layer for the first time, the layers before
            # it are final, so the layer's input is too. The hook rescales the layer on that
            # input until its output std is 1 within tol and hands the corrected output on,
            # so later layers are measured on the corrected signal.
            def fix(mod: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
                if id(mod) in done:
                    return None
                done.add(id(mod))
                std = before = _output_std(output)
                scale, iterations = 1.0, 0
                while not abs(std - 1.0) <= tol and iterations < max_iter:
                    if not (math.isfinite(std) and std > 0):
                        break
                    weights[id(mod)].mul_(1.0 / std)
                    scale /= std
                    iterations += 1
                    output = mod.forward(*args, **kwargs)
                    std = _output_std(output)
                converged = abs(std - 1.0) <= tol
                name = names[id(mod)]
                if not converged:
                    why = (
                        "its output is constant (std 0) or not finite"
                        if not (math.isfinite(std) and std > 0)
                        else f"output std {std:.4g} after {iterations} rescales"
                    )
                    failures.append(
                        f"lsuv_: layer {name!r} did not reach unit variance within tol={tol}: {why}"
                    )
                layers.append(
                    LSUVLayer(name, type(mod).__name__, before, std, scale, iterations, converged)
                )
                return output

            done: set[int] = set()
            failures: list[str] = []
            handles = [m.register_forward_hook(fix, with_kwargs=True) for m in targets]
            torch.manual_seed(torch_seed)
            try:
                model(*example_inputs)
            finally:
                for h in handles:
                    h.remove()
        finally:
            for b, saved in buffers:
                b.copy_(saved)
    for message in failures:
        warnings.warn(message, UserWarning, stacklevel=2)
    return LSUVReport(layers, base, float(tol))
