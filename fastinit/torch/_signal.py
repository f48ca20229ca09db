"""Signal propagation report: per-layer forward and backward statistics of a torch model.

:func:`signal_report` runs one forward and one backward pass of a model on a batch the user
gives and records, for every *leaf call* (a module call inside which no other module ran,
in the order the calls happened):

- the mean and standard deviation of the layer's output;
- the share of exact zeros in the output and of *dead units* (output positions -- every
  index but the batch dimension 0 -- that are exactly zero for every example of the batch);
- the standard deviation of the gradient of the loss with respect to the layer's output;
- the standard deviation of the gradient of the layer's weight (its ``weight`` parameter,
  else its first parameter that requires grad);
- the ratio of the output std and of the output-gradient std to the previous row.

Every std is the population std (``correction=0``), reduced by torch in the tensor's dtype
(float16/bfloat16 in float32). The model is left exactly as it was: hooks removed, torch's
RNG state restored (dropout draws included), train/eval mode and buffers restored, no
``.grad`` left (a ``.grad`` that was there before is put back, untouched).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LayerSignal", "SignalReport", "plot_signal", "signal_report", "text_table"]

#: Seed of the private generator that draws the default output gradient.
_GRAD_SEED = 0


@dataclass(frozen=True)
class LayerSignal:
    """Statistics of one leaf call.

    Attributes
    ----------
    name : str
        Qualified module name; a second call of the same module is ``name#2``.
    kind : str
        The module's class name.
    shape : tuple of int
        Shape of the output.
    mean, std : float
        Mean and population std of the output.
    zeros : float
        Share of the output's elements that are exactly zero.
    dead : float
        Share of output units (positions other than the batch dimension) that are zero for
        every example of the batch.
    grad_std : float
        Std of d(loss)/d(output); NaN when the output does not require grad.
    weight_grad_std : float
        Std of the layer weight's gradient (summed over all calls of a shared module); NaN
        when the layer has no parameter that requires grad.
    std_ratio, grad_ratio : float
        ``std`` and ``grad_std`` divided by those of the previous row (NaN on the first row).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    mean: float
    std: float
    zeros: float
    dead: float
    grad_std: float = math.nan
    weight_grad_std: float = math.nan
    std_ratio: float = math.nan
    grad_ratio: float = math.nan


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b == 0.0:
        return math.nan
    return a / b


def _with_ratios(rows: Sequence[LayerSignal]) -> list[LayerSignal]:
    out: list[LayerSignal] = []
    for i, row in enumerate(rows):
        prev = rows[i - 1] if i else None
        out.append(
            replace(
                row,
                std_ratio=_ratio(row.std, prev.std) if prev else math.nan,
                grad_ratio=_ratio(row.grad_std, prev.grad_std) if prev else math.nan,
            )
        )
    return out


def _fmt(value: float, spec: str = ".3g") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table: columns 1 and 2 (name, type) left-aligned, the rest right.

    Parameters
    ----------
    header : sequence of str
        The column titles.
    body : sequence of sequence of str
        The rows, each with one cell per column.

    Returns
    -------
    str
        The header, a rule of dashes and the rows, one per line, without trailing blanks.
    """
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if c in (1, 2) else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


@dataclass(frozen=True)
class SignalReport:
    """The per-layer statistics of one :func:`signal_report` call.

    Attributes
    ----------
    layers : list of LayerSignal
        One row per leaf call, in forward order.
    loss : float
        The loss the backward pass started from.
    """

    layers: list[LayerSignal] = field(default_factory=list)
    loss: float = math.nan

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerSignal]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> LayerSignal:
        return self.layers[index]

    def only(self, *kinds: type[nn.Module] | str) -> SignalReport:
        """The rows of the given module types (classes or class names), ratios recomputed.

        Parameters
        ----------
        *kinds : type or str
            Module classes (matched by class name, subclasses not included) or class names.

        Returns
        -------
        SignalReport
        """
        names = {k if isinstance(k, str) else k.__name__ for k in kinds}
        return SignalReport(_with_ratios([r for r in self.layers if r.kind in names]), self.loss)

    @property
    def std_ratio(self) -> float:
        """Output std of the last row divided by that of the first (NaN when empty)."""
        if not self.layers:
            return math.nan
        return _ratio(self.layers[-1].std, self.layers[0].std)

    @property
    def grad_ratio(self) -> float:
        """Output-gradient std of the first row divided by that of the last (backward order)."""
        if not self.layers:
            return math.nan
        return _ratio(self.layers[0].grad_std, self.layers[-1].grad_std)

    def table(self, fmt: str = "text") -> str:
        """The rows as a table.

        Parameters
        ----------
        fmt : {"text", "markdown"}
            Aligned plain text, or a GitHub markdown table.

        Returns
        -------
        str
        """
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
        header = [
            "#",
            "layer",
            "type",
            "out mean",
            "out std",
            "x prev",
            "zeros",
            "dead",
            "grad std",
            "x prev",
            "w grad std",
        ]
        body = [
            [
                str(i),
                r.name,
                r.kind,
                _fmt(r.mean, ".2e"),
                _fmt(r.std),
                _fmt(r.std_ratio),
                _fmt(r.zeros, ".1%"),
                _fmt(r.dead, ".1%"),
                _fmt(r.grad_std),
                _fmt(r.grad_ratio),
                _fmt(r.weight_grad_std),
            ]
            for i, r in enumerate(self.layers)
        ]
        if fmt == "markdown":
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in body]
            return "\n".join(lines)
        return text_table(header, body)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> None:
        """Write a PNG of the forward and backward std against depth (log scale).

        Needs matplotlib (``pip install pyfastinit[plot]``).

        Parameters
        ----------
        path : str or path-like
            Where to write the image.
        title : str, optional
            Figure title.
        """
        plot_signal({"": self}, path, title=title)


def _require_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "plotting a signal report needs matplotlib: pip install 'pyfastinit[plot]'"
        ) from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _positive(values: list[float]) -> list[float]:
    # Log axes cannot show 0 or NaN: leave a gap there.
    return [v if v > 0 and math.isfinite(v) else math.nan for v in values]


def plot_signal(
    reports: Mapping[str, SignalReport] | Mapping[str, Mapping[str, SignalReport]],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> None:
    """Plot forward and backward std against depth for one or several reports, as a PNG.

    Needs matplotlib (``pip install pyfastinit[plot]``); uses the non-interactive Agg backend.

    Parameters
    ----------
    reports : mapping
        ``label -> SignalReport``: one column, top panel the output std per layer, bottom
        panel the output-gradient std, one line per report (a single report also gets its
        weight-gradient std). ``panel -> {label -> SignalReport}``: one column per panel,
        side by side, with shared y axes per row.
    path : str or path-like
        Where to write the image.
    title : str, optional
        Figure title.
    """
    plt = _require_pyplot()
    first = next(iter(reports.values()), None)
    if first is None:
        raise ValueError("plot_signal: no report to plot")
    panels: dict[str, Mapping[str, SignalReport]]
    if isinstance(first, SignalReport):
        panels = {"": reports}  # type: ignore[dict-item]
    else:
        panels = dict(reports)  # type: ignore[arg-type]
    ncols = len(panels)
    fig, axes = plt.subplots(
        2, ncols, figsize=(5.2 * ncols, 7.0), sharex="col", sharey="row", squeeze=False
    )
    for col, (panel, group) in enumerate(panels.items()):
        top, bottom = axes[0][col], axes[1][col]
        for i, (label, report) in enumerate(group.items()):
            depth = list(range(len(report.layers)))
            std = _positive([r.std for r in report.layers])
            grad = _positive([r.grad_std for r in report.layers])
            # Line styles as well as colours, so that coinciding curves stay visible.
            style: dict[str, Any] = {"lw": 1.8, "ls": ("-", "--", "-.", ":")[i % 4]}
            if len(depth) <= 40:  # few layers: mark each one
                style.update(marker="o", ms=3)
            (line,) = top.plot(depth, std, label=label or "output std", **style)
            bottom.plot(
                depth, grad, color=line.get_color(), label=label or "output-grad std", **style
            )
            if len(group) == 1 and not label:
                wgrad = _positive([r.weight_grad_std for r in report.layers])
                bottom.plot(depth, wgrad, ls="--", label="weight-grad std", lw=1.2)
        for ax in (top, bottom):
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.4)
            ax.axhline(1.0, color="0.4", lw=0.8, ls=":")
        if panel:
            top.set_title(panel)
        top.set_ylabel("forward: std of layer output")
        bottom.set_ylabel("backward: std of d loss / d output")
        bottom.set_xlabel("layer (forward order)")
        if col == 0:
            top.legend(fontsize=8, loc="best")
            bottom.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


def _first_tensor(value: Any) -> Tensor | None:
    """The tensor a layer or model produced: itself, else the first floating tensor inside."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, Mapping):
        items: Any = value.values()
    elif isinstance(value, (tuple, list)):
        items = value
    else:
        return None
    for item in items:
        if isinstance(item, Tensor) and item.is_floating_point():
            return item
    return None


def _exact(t: Tensor) -> Tensor:
    """``t`` detached, in float32 at least: torch reduces float32 with float64-free pairwise
    sums that are accurate to about 1e-6 relative, and a copy of a large tensor to float64
    would cost more than the layer itself."""
    d = t.detach()
    return d.float() if d.dtype in (torch.float16, torch.bfloat16) else d


def _std(t: Tensor) -> float:
    return float(torch.std(_exact(t), correction=0)) if t.numel() else math.nan


def _forward_stats(t: Tensor) -> tuple[float, float, float, float]:
    """(mean, std, zeros, dead) of a layer output."""
    d = t.detach()
    n = d.numel()
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    std, mean = torch.std_mean(_exact(d), correction=0)
    zeros = 1.0 - int(torch.count_nonzero(d)) / n
    if d.dim() == 0:
        dead = zeros
    else:
        units = d.reshape(d.shape[0], -1)
        alive = int(torch.count_nonzero(torch.count_nonzero(units, dim=0)))
        dead = 1.0 - alive / units.shape[1]
    return float(mean), float(std), zeros, dead


def _weight_of(module: nn.Module) -> Tensor | None:
    w = module._parameters.get("weight")
    if isinstance(w, Tensor) and w.requires_grad:
        return w
    for p in module.parameters(recurse=False):
        if p.requires_grad:
            return p
    return None


@contextlib.contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Restore everything a forward/backward pass could change in ``model`` and torch's RNG."""
    modes = [(m, m.training) for m in model.modules()]
    params = list(dict.fromkeys(model.parameters()))
    grads = [(p, p.grad) for p in params]
    buffers = [(b, b.detach().clone()) for b in dict.fromkeys(model.buffers())]
    devices = sorted(
        {t.device.index or 0 for t in [*params, *(b for b, _ in buffers)] if t.is_cuda}
    )
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, g in grads:
            p.grad = g
        for m, training in modes:
            m.training = training


def signal_report(
    model: nn.Module,
    *example_inputs: Any,
    loss_fn: Callable[[Any], Tensor] | None = None,
) -> SignalReport:
    """Measure how the signal propagates through ``model``, forward and backward, per layer.

    Runs ``model(*example_inputs)`` once and backpropagates once, in the model's current
    train/eval mode, on whatever device the model and inputs are on. Rows are the *leaf
    calls*: module calls inside which no other module ran (so ``nn.MultiheadAttention``,
    whose ``out_proj`` is never called as a module, is one row), in the order they ran.

    Parameters
    ----------
    model : torch.nn.Module
    *example_inputs
        The batch, passed positionally to ``model``. Dimension 0 of every layer output is
        taken as the batch dimension for the dead-unit share.
    loss_fn : callable, optional
        ``loss_fn(output) -> scalar tensor``, where ``output`` is what ``model`` returned.
        Default: ``(y * g).sum()`` where ``y`` is the model's output tensor (itself, or the
        first floating tensor of a tuple/list/dict such as a transformers ``ModelOutput``)
        and ``g`` is a standard-normal tensor from a private generator seeded 0, so the
        gradient at the output has std 1 and the report is deterministic.

    Returns
    -------
    SignalReport
        ``.table()``, ``.plot(path)``, ``.std_ratio``, and one :class:`LayerSignal` per row.

    Notes
    -----
    The model is left exactly as it was: hooks removed, torch's RNG state restored (dropout
    draws included), every module's train/eval mode and every buffer (e.g. BatchNorm's
    running statistics) restored, and no ``.grad`` left on parameters (a ``.grad`` that was
    there before is put back). Weight gradients are read and dropped one parameter at a
    time during the backward pass, so the pass holds no more gradient memory than training.

    Examples
    --------
    >>> report = fastinit.torch.signal_report(model, torch.randn(256, 784))
    >>> print(report.table())
    >>> report.plot("signal.png")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")

    names: dict[int, str] = {}
    for name, mod in model.named_modules(remove_duplicate=True):
        names.setdefault(id(mod), name or type(mod).__name__)

    # One frame per module call on the stack; a call that saw no inner call is a leaf call.
    stack: list[list[bool]] = []
    rows: list[dict[str, Any]] = []
    calls: dict[int, int] = {}
    grad_std: dict[int, float] = {}

    def pre_hook(module: nn.Module, args: Any) -> None:
        if stack:
            stack[-1][0] = True
        stack.append([False])

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        frame = stack.pop()
        if frame[0]:
            return
        out = _first_tensor(output)
        if out is None or not out.is_floating_point():
            return
        n = calls[id(module)] = calls.get(id(module), 0) + 1
        name = names.get(id(module), type(module).__name__)
        index = len(rows)
        mean, std, zeros, dead = _forward_stats(out)
        rows.append(
            {
                "name": name if n == 1 else f"{name}#{n}",
                "kind": type(module).__name__,
                "shape": tuple(out.shape),
                "mean": mean,
                "std": std,
                "zeros": zeros,
                "dead": dead,
                "module": module,
            }
        )
        if out.requires_grad:

            def on_grad(g: Tensor, index: int = index) -> None:
                grad_std[index] = _std(g)

            handles.append(out.register_hook(on_grad))

    weight_std: dict[int, float] = {}

    def on_weight(p: Tensor) -> None:
        if p.grad is not None:
            weight_std[id(p)] = _std(p.grad)
        p.grad = None

    handles: list[Any] = []
    # Leaf inputs that require grad would receive a .grad from the backward pass.
    input_grads = [
        (t, t.grad)
        for t in example_inputs
        if isinstance(t, Tensor) and t.is_leaf and t.requires_grad
    ]
    with _preserved(model):
        for p in dict.fromkeys(model.parameters()):
            p.grad = None
        try:
            for mod in dict.fromkeys(model.modules()):
                handles.append(mod.register_forward_pre_hook(pre_hook))
                handles.append(mod.register_forward_hook(hook, always_call=True))
            with torch.enable_grad():
                output = model(*example_inputs)
                if loss_fn is None:
                    y = _first_tensor(output)
                    if y is None:
                        raise TypeError(
                            "signal_report: the model returned no floating-point tensor; "
                            "pass loss_fn=lambda output: <scalar tensor>"
                        )
                    g = torch.randn(
                        y.shape,
                        generator=torch.Generator(device=y.device).manual_seed(_GRAD_SEED),
                        device=y.device,
                        dtype=y.dtype,
                    )
                    loss = (y * g).sum()
                else:
                    loss = loss_fn(output)
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise TypeError("signal_report: loss_fn must return a one-element tensor")
                stack.clear()
                for p in dict.fromkeys(model.parameters()):
                    if p.requires_grad:
                        handles.append(p.register_post_accumulate_grad_hook(on_weight))
                if loss.requires_grad:
                    loss.backward()
                loss_value = float(loss.detach())
        finally:
            for h in handles:
                h.remove()
            stack.clear()
            for t, saved_grad in input_grads:
                t.grad = saved_grad

    layers: list[LayerSignal] = []
    for index, row in enumerate(rows):
        module = row.pop("module")
        w = _weight_of(module)
        layers.append(
            LayerSignal(
                **row,
                grad_std=grad_std.get(index, math.nan),
                weight_grad_std=weight_std.get(id(w), math.nan) if w is not None else math.nan,
            )
        )
    return SignalReport(_with_ratios(layers), loss_value)
