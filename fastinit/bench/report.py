"""``python -m fastinit report``: see signal propagation under different initializations.

Default run: deep MLPs (``--depth`` Linear layers of width ``--width``, each followed by
tanh or ReLU, on a standard-normal batch of ``--batch`` rows) initialized five ways --
torch's default ``reset_parameters``, ``xavier_normal_`` (gain 1), ``kaiming_normal_``
(ReLU gain), ``orthogonal_`` (gain 1) and :func:`fastinit.torch.lsuv_` -- each measured by
:func:`fastinit.torch.signal_report`. It prints one summary line per network (the Linear
layers' output std first and last, the backward gradient std, and a verdict) and writes one
PNG with the forward and backward std against depth, tanh and ReLU side by side.

``--model module:callable`` reports on the user's own model instead: the callable takes no
argument and returns ``(model, inputs)`` (``inputs`` a tensor or a tuple of positional
arguments). ``--lsuv`` adds a report after :func:`~fastinit.torch.lsuv_`, and ``--time N``
times ``signal_report`` against one plain forward + backward pass of the same model and
batch (``N`` rounds, round robin, medians).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["add_report_arguments", "demo_mlp", "run_from_args"]

INITS = ("torch default", "xavier_normal_", "kaiming_normal_", "orthogonal_", "lsuv_")
ACTIVATIONS = ("tanh", "relu")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``fastinit report`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (or sub-parser) of the ``report`` command.
    """
    parser.add_argument("--depth", type=int, default=50, help="Linear layers (default 50)")
    parser.add_argument("--width", type=int, default=256, help="layer width (default 256)")
    parser.add_argument("--batch", type=int, default=256, help="batch rows (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument(
        "--plot",
        default="signal_report.png",
        metavar="PATH",
        help="PNG to write (default: signal_report.png); needs matplotlib (pyfastinit[plot])",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument(
        "--markdown", action="store_true", help="print tables as markdown instead of text"
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also print the per-layer table of every demo network",
    )
    parser.add_argument(
        "--model",
        metavar="MODULE:CALLABLE",
        help="report on your own model: CALLABLE() returns (model, inputs)",
    )
    parser.add_argument("--lsuv", action="store_true", help="with --model: also report after lsuv_")
    parser.add_argument(
        "--time",
        type=int,
        default=0,
        metavar="N",
        help="with --model: time signal_report against a plain forward+backward, N rounds",
    )


def _mlp(depth: int, width: int, activation: str) -> Any:
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers)


def demo_mlp(
    activation: str, init: str, depth: int = 50, width: int = 256, batch: int = 256, seed: int = 0
) -> tuple[Any, Any]:
    """Build one demo network and its batch, initialized by ``init``.

    Parameters
    ----------
    activation : {"tanh", "relu"}
    init : one of :data:`INITS`
        ``"torch default"`` keeps ``nn.Linear``'s own initialization (biases included); the
        others fill the weights with that ``fastinit.torch`` function and zero the biases.
    depth, width, batch : int
    seed : int

    Returns
    -------
    (torch.nn.Sequential, torch.Tensor)
        The model and a standard-normal ``(batch, width)`` input.
    """
    import torch

    import fastinit.torch as ft

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _mlp(depth, width, activation)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed + 1))
    gen = torch.Generator().manual_seed(seed)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if init in ("xavier_normal_", "kaiming_normal_", "orthogonal_"):
        for m in linears:
            if init == "xavier_normal_":
                ft.xavier_normal_(m.weight, generator=gen)
            elif init == "kaiming_normal_":
                ft.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            else:
                ft.orthogonal_(m.weight, generator=gen)
            ft.zeros_(m.bias)
    elif init == "lsuv_":
        ft.lsuv_(model, x, seed=seed)
    return model, x


def _verdict(ratio: float) -> str:
    if not math.isfinite(ratio) or ratio == 0:
        return "dead"
    if ratio < 1 / 5:
        return "vanishing"
    if ratio > 5:
        return "exploding"
    return "stable"


def _summary_table(rows: list[list[str]], markdown: bool) -> str:
    header = [
        "activation",
        "init",
        "std first",
        "std last",
        "last/first",
        "forward",
        "grad last",
        "grad first",
        "first/last",
        "backward",
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if c < 2 or c in (5, 9) else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _run_demo(args: argparse.Namespace, out: IO[str]) -> int:
    import torch

    import fastinit.torch as ft

    for name in ("depth", "width", "batch"):
        if getattr(args, name) < 1:
            print(f"fastinit report: --{name} must be at least 1", file=sys.stderr)
            return 2
    panels: dict[str, dict[str, Any]] = {}
    rows: list[list[str]] = []
    lsuv_check: list[str] = []
    t0 = time.perf_counter()
    for act in ACTIVATIONS:
        panels[act] = {}
        for init in INITS:
            model, x = demo_mlp(act, init, args.depth, args.width, args.batch, args.seed)
            report = ft.signal_report(model, x)
            lin = report.only(torch.nn.Linear)
            panels[act][init] = lin
            fwd, bwd = lin.std_ratio, lin.grad_ratio
            rows.append(
                [
                    act,
                    init,
                    f"{lin[0].std:.3g}",
                    f"{lin[-1].std:.3g}",
                    f"{fwd:.3g}",
                    _verdict(fwd),
                    f"{lin[-1].grad_std:.3g}",
                    f"{lin[0].grad_std:.3g}",
                    f"{bwd:.3g}",
                    _verdict(bwd),
                ]
            )
            if args.layers:
                print(f"\n{act} / {init}", file=out)
                print(report.table("markdown" if args.markdown else "text"), file=out)
            if init == "lsuv_":
                stds = [r.std for r in lin]
                fresh = torch.randn(
                    args.batch, args.width, generator=torch.Generator().manual_seed(args.seed + 2)
                )
                fresh_stds = [r.std for r in ft.signal_report(model, fresh).only(torch.nn.Linear)]
                lsuv_check.append(
                    f"  {act}: Linear output std in [{min(stds):.4f}, {max(stds):.4f}] on the "
                    f"LSUV batch, [{min(fresh_stds):.4f}, {max(fresh_stds):.4f}] on a fresh batch"
                )
    elapsed = time.perf_counter() - t0
    print(
        f"Signal propagation in {args.depth}-layer MLPs, width {args.width}, batch "
        f"{args.batch}, seed {args.seed} (Linear layers' outputs; 'grad' is the std of "
        "d loss / d output for a standard-normal gradient at the output):",
        file=out,
    )
    print(_summary_table(rows, args.markdown), file=out)
    print("after lsuv_ (tol 0.05):", file=out)
    print("\n".join(lsuv_check), file=out)
    print(f"({elapsed:.1f} s)", file=out)
    if not args.no_plot:
        ft.plot_signal(
            {f"{act} MLP": group for act, group in panels.items()},
            args.plot,
            title=(
                f"{args.depth} x Linear({args.width}, {args.width}) + activation: "
                "std of each Linear layer's output (top) and of its gradient (bottom)"
            ),
        )
        print(f"wrote {args.plot}", file=out)
    return 0


def _load(spec: str) -> Callable[[], Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model must be MODULE:CALLABLE, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _output_tensor(output: Any) -> Any:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if hasattr(output, "values") else output
    return next(v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point())


def _time_overhead(model: Any, inputs: tuple[Any, ...], rounds: int, out: IO[str]) -> None:
    """Median time of signal_report vs one plain forward + backward, round robin."""
    import torch

    import fastinit.torch as ft

    def plain() -> None:
        y = _output_tensor(model(*inputs))
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=y.dtype)
        (y * g).sum().backward()
        for p in model.parameters():
            p.grad = None

    def report() -> None:
        ft.signal_report(model, *inputs)

    # Wall time, and the process's CPU time: on a shared machine the CPU time is the steadier
    # measure of the work done.
    times: dict[str, list[float]] = {"forward+backward": [], "signal_report": []}
    cpu: dict[str, list[float]] = {"forward+backward": [], "signal_report": []}
    plain()  # warm-up: allocator, lazy inits
    for _ in range(rounds):
        for name, fn in (("forward+backward", plain), ("signal_report", report)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"timing ({rounds} rounds, round robin, medians; {n_params / 1e9:.3g}B parameters, "
        f"{torch.get_num_threads()} threads):",
        file=out,
    )
    for k, v in med.items():
        print(
            f"  {k:17s} wall {v:8.3f} s (all: {', '.join(f'{t:.3f}' for t in times[k])}); "
            f"CPU {med_cpu[k]:8.3f} s (all: {', '.join(f'{t:.3f}' for t in cpu[k])})",
            file=out,
        )
    ratio = med["signal_report"] / med["forward+backward"]
    ratio_cpu = med_cpu["signal_report"] / med_cpu["forward+backward"]
    print(
        f"  signal_report / forward+backward = {ratio:.3f} (wall), {ratio_cpu:.3f} (CPU)", file=out
    )


def _run_model(args: argparse.Namespace, out: IO[str]) -> int:
    import torch

    import fastinit.torch as ft

    try:
        build = _load(args.model)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        print(f"fastinit report: cannot load --model {args.model}: {exc}", file=sys.stderr)
        return 2
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        built = build()
    if not (isinstance(built, tuple) and len(built) == 2):
        print(f"fastinit report: {args.model}() must return (model, inputs)", file=sys.stderr)
        return 2
    model, inputs = built
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    fmt = "markdown" if args.markdown else "text"
    report = ft.signal_report(model, *inputs)
    print(f"{args.model}: as built", file=out)
    print(report.table(fmt), file=out)
    print(f"last/first output std: {report.std_ratio:.4g}", file=out)
    reports = {"as built": report}
    if args.time:
        _time_overhead(model, inputs, args.time, out)
    if args.lsuv:
        lsuv = ft.lsuv_(model, *inputs, seed=args.seed)
        print("\nlsuv_:", file=out)
        print(lsuv.table(), file=out)
        after = ft.signal_report(model, *inputs)
        print(f"\n{args.model}: after lsuv_", file=out)
        print(after.table(fmt), file=out)
        reports["after lsuv_"] = after
    if not args.no_plot:
        # A single report gets its weight-gradient line too (plot_signal's one-report form).
        single = {"": report} if len(reports) == 1 else reports
        ft.plot_signal(single, args.plot, title=args.model)
        print(f"wrote {args.plot}", file=out)
    return 0


def run_from_args(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Carry out ``fastinit report`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser set up with :func:`add_report_arguments`.
    out : file-like, optional
        Where the tables go (standard output by default).

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a dependency is missing, 2 for bad arguments.
    """
    out = sys.stdout if out is None else out
    try:
        import torch  # noqa: F401
    except ImportError:
        print("fastinit report needs torch (pip install 'pyfastinit[torch]')", file=sys.stderr)
        return 1
    if (args.lsuv or args.time) and not args.model:
        print("fastinit report: --lsuv and --time need --model", file=sys.stderr)
        return 2
    if args.time < 0:
        print("fastinit report: --time must be >= 0", file=sys.stderr)
        return 2
    if args.model and ":" not in args.model:
        print(
            f"fastinit report: --model must be MODULE:CALLABLE, got {args.model!r}",
            file=sys.stderr,
        )
        return 2
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "fastinit report: the PNG needs matplotlib: pip install 'pyfastinit[plot]' "
                "(or pass --no-plot)",
                file=sys.stderr,
            )
            return 1
    if args.model:
        return _run_model(args, out)
    return _run_demo(args, out)
