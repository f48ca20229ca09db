"""Side-by-side benchmark of fastinit's fills against ``torch.nn.init``.

This module backs ``python -m fastinit bench`` (and the ``fastinit bench`` console
script). For every shape and dtype it allocates one buffer and times, on that same
buffer and with the same thread count:

- ``torch.Tensor.fill_``, the memory-bandwidth reference (a plain multi-threaded write);
- ``fastinit.uniform_``, ``fastinit.normal_`` and ``fastinit.trunc_normal_``;
- their ``torch.nn.init`` peers.

It reports the median time, elements/s, GB/s written, the speed-up over
``torch.nn.init`` and the percentage of the fill bandwidth reached. Ratios measured side
by side in one run are the figures that count; absolute times hold for the machine named
in the header only.

``torch.nn.init`` draws from one serial mt19937 stream on CPU, so its time is linear in
the number of elements (``trunc_normal_`` takes about 70 ns per float32 element). By
default it is timed on the first ``--torch-numel`` elements of the same buffer and the
time is scaled to the full size; the table marks such times with ``~`` and its header says
so. ``--torch-numel 0`` times it on the whole buffer instead.

The optional sections ``--model`` and ``--orthogonal`` are run by
``fastinit.bench.models.run_model_bench`` and
``fastinit.bench.orthogonal.run_orthogonal_bench``; see :func:`run_section` for the
contract they follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_SHAPES",
    "OPS",
    "BenchOptions",
    "Distribution",
    "add_bench_arguments",
    "check_sample",
    "expected_distribution",
    "parse_shapes",
    "run_bench",
    "run_from_args",
    "run_section",
    "sample_values",
]

#: Shapes of the default run: two Llama-3-8B projections, its embedding, and 10^9 elements.
DEFAULT_SHAPES = "4096x4096,4096x14336,128256x4096,1e9"
DEFAULT_DTYPES = "float32,bfloat16"
#: The fills timed, in table order. Each is called with the same arguments on both sides.
OPS = ("uniform_", "normal_", "trunc_normal_")
DEFAULT_REPEAT = 5
DEFAULT_TORCH_REPEAT = 1
#: torch.nn.init is timed on at most this many leading elements of each buffer (scaled).
#: From 2^24 on, its time per element is steady: scaled to 2^28 it is within 2.5% of the
#: whole-buffer time, except bfloat16 trunc_normal_, which it understates by ~23%
#: (docs/benchmarks.md); either way the speed-up is not overstated.
DEFAULT_TORCH_NUMEL = 2**24
#: The fixed seed of every fastinit call: the same work in every repeat.
SEED = 20240611
#: Elements read back (strided over the whole buffer) for the sanity check of each op.
SAMPLE_SIZE = 2**20
#: Above this share of the CPUs taken by other processes during a run, the header says BUSY.
BUSY_FRACTION = 0.05
#: A buffer is skipped when it needs more than this fraction of MemAvailable.
MEMORY_FRACTION = 0.8

#: Positional arguments of each op, identical for fastinit and torch.nn.init:
#: uniform_(x, low, high), normal_(x, mean, std), trunc_normal_(x, mean, std, a, b).
OP_ARGS: dict[str, tuple[float, ...]] = {
    "uniform_": (0.0, 1.0),
    "normal_": (0.0, 1.0),
    "trunc_normal_": (0.0, 1.0, -2.0, 2.0),
}
FILL_VALUE = 0.5

_DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")
_SECTIONS = {
    "model": ("fastinit.bench.models", "run_model_bench", "issue 4"),
    "orthogonal": ("fastinit.bench.orthogonal", "run_orthogonal_bench", "issue 5"),
}


class BenchError(Exception):
    """A problem that ends the run with a message and no traceback (exit status 1)."""


# --------------------------------------------------------------------------------------
# Shapes and options
# --------------------------------------------------------------------------------------


def _parse_count(token: str) -> int:
    """Parse one positive element count: ``4096``, ``1e9``, ``2^28`` or ``2**28``."""
    tok = token.strip().replace("_", "")
    power = re.fullmatch(r"(\d+)\s*(?:\^|\*\*)\s*(\d+)", tok)
    if power:
        value = int(power.group(1)) ** int(power.group(2))
    elif re.fullmatch(r"\d+", tok):
        value = int(tok)
    elif re.fullmatch(r"\d+(?:\.\d*)?[eE]\d+", tok):
        as_float = float(tok)
        if not as_float.is_integer():
            raise ValueError(f"{token!r} is not a whole number of elements")
        value = int(as_float)
    else:
        raise ValueError(f"{token!r} is not a size (write 4096, 1e9 or 2^28)")
    if value <= 0:
        raise ValueError(f"{token!r}: sizes must be positive")
    return value


def parse_shapes(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Parse a comma-separated list of shapes.

    Parameters
    ----------
    text : str
        Shapes separated by commas; the dimensions of one shape are separated by ``x``.
        Each dimension is an integer, ``1e9`` or ``2^28``; a shape with one dimension is
        a flat buffer, e.g. ``"4096x4096,128256x4096,1e9"``.

    Returns
    -------
    list of (str, tuple of int)
        The label printed in the table (the shape as written, without spaces) and the
        shape.

    Raises
    ------
    ValueError
        If a shape is empty or a dimension is not a positive whole number.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for item in text.split(","):
        label = item.strip().replace(" ", "")
        if not label:
            raise ValueError(f"empty shape in {text!r}")
        dims = tuple(_parse_count(part) for part in label.lower().split("x"))
        shapes.append((label, dims))
    return shapes


def _parse_list(text: str, allowed: Sequence[str], what: str, suffix: str = "") -> list[str]:
    names = []
    for item in text.split(","):
        name = item.strip()
        if suffix and not name.endswith(suffix):
            name += suffix
        if name not in allowed:
            raise ValueError(f"unknown {what} {item.strip()!r}; choose from {', '.join(allowed)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"no {what} given")
    return names


@dataclasses.dataclass
class BenchOptions:
    """What one run of the fill benchmark measures.

    Attributes
    ----------
    shapes : list of (str, tuple of int)
        Labels and shapes, as returned by :func:`parse_shapes`.
    dtypes : list of str
        dtype names (``float32``, ``bfloat16``, ``float16``, ``float64``).
    ops : list of str
        Fills to time, a subset of :data:`OPS`.
    threads : int
        Threads for fastinit and for torch (``torch.set_num_threads``).
    repeat : int
        Timed calls of each fastinit op and of ``fill_`` per buffer; the median counts.
    torch_repeat : int
        Timed calls of each ``torch.nn.init`` peer per buffer.
    torch_numel : int
        ``torch.nn.init`` is timed on at most this many leading elements of the buffer
        and its time scaled to the whole; 0 means the whole buffer.
    progress : bool
        Show a progress bar on standard error.
    """

    shapes: list[tuple[str, tuple[int, ...]]]
    dtypes: list[str]
    ops: list[str]
    threads: int
    repeat: int = DEFAULT_REPEAT
    torch_repeat: int = DEFAULT_TORCH_REPEAT
    torch_numel: int = DEFAULT_TORCH_NUMEL
    progress: bool = True


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``fastinit bench`` to `parser`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (or sub-parser) of the ``bench`` command.
    """
    parser.add_argument(
        "--shapes",
        default=None,
        metavar="LIST",
        help=f"comma-separated shapes, dimensions joined by 'x'; 1e9 and 2^28 are understood "
        f"(default: {DEFAULT_SHAPES}; a buffer that does not fit in 80%% of the available "
        f"memory is skipped with the reason printed)",
    )
    parser.add_argument(
        "--dtype",
        default=DEFAULT_DTYPES,
        metavar="LIST",
        help=f"comma-separated dtypes among {', '.join(_DTYPE_NAMES)} (default: {DEFAULT_DTYPES})",
    )
    parser.add_argument(
        "--ops",
        default=",".join(OPS),
        metavar="LIST",
        help=f"fills to time (default: {','.join(OPS)}); fill_ is always timed as the reference",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads for fastinit and torch (default: fastinit.get_num_threads(), which "
        "honours OMP_NUM_THREADS)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help=f"timed calls of each fastinit op and of fill_ per buffer; the median is "
        f"reported (default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--torch-repeat",
        type=int,
        default=DEFAULT_TORCH_REPEAT,
        metavar="N",
        help=f"timed calls of each torch.nn.init peer (default: {DEFAULT_TORCH_REPEAT})",
    )
    parser.add_argument(
        "--torch-numel",
        type=_parse_count_or_zero,
        default=DEFAULT_TORCH_NUMEL,
        metavar="N",
        help=f"time torch.nn.init on at most N leading elements of each buffer and scale "
        f"its time to the whole buffer (its CPU generator is serial, so time is linear in "
        f"size); 0 = the whole buffer (default: 2^24 = {DEFAULT_TORCH_NUMEL})",
    )
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the results as JSON"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also draw speed-up and fill-bandwidth bars (needs matplotlib)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text: one row per implementation with every figure (default); markdown: one "
        "row per op with fastinit and torch.nn.init side by side, for a README",
    )
    parser.add_argument(
        "--fills",
        action="store_true",
        help="run the fill table too when --model or --orthogonal is given (it runs by "
        "default when neither is)",
    )
    parser.add_argument(
        "--model",
        nargs="?",
        const="llama",
        default=None,
        choices=("llama", "hf-llama", "timm-vit", "timm-convnext", "titan-llama"),
        help="run a model-construction benchmark: 'llama' (the default when no name is "
        "given): a Llama-style model of plain torch modules; hf-llama / timm-vit / "
        "timm-convnext / titan-llama: that library's real model (needs the library), built "
        "by its default path, under patched() and with empty_init/meta + materialize_",
    )
    parser.add_argument(
        "--orthogonal",
        action="store_true",
        help="run the orthogonal_ benchmark against torch.nn.init.orthogonal_",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_count_or_zero(text: str) -> int:
    if text.strip() == "0":
        return 0
    try:
        return _parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------------------
# Expected distributions and the sanity check
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Moments and support of the values an op must produce.

    Attributes
    ----------
    mean, std : float
        Expected mean and standard deviation.
    low, high : float
        Every value must lie in ``[low, high]`` (infinite for the normal).
    """

    mean: float
    std: float
    low: float = -math.inf
    high: float = math.inf


def _phi(x: float) -> float:
    return 0.0 if math.isinf(x) else math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _normal_mass(alpha: float, beta: float) -> float:
    """P(alpha <= Z <= beta) for a standard normal Z, accurate in either tail."""
    r2 = math.sqrt(2.0)
    if alpha >= 0.0:
        return 0.5 * (math.erfc(alpha / r2) - math.erfc(beta / r2))
    if beta <= 0.0:
        return 0.5 * (math.erfc(-beta / r2) - math.erfc(-alpha / r2))
    return 1.0 - 0.5 * (math.erfc(-alpha / r2) + math.erfc(beta / r2))


def expected_distribution(op: str, *args: float) -> Distribution:
    """The distribution that ``op(x, *args)`` must produce (torch.nn.init semantics).

    Parameters
    ----------
    op : str
        ``"uniform_"`` (low, high), ``"normal_"`` (mean, std), ``"trunc_normal_"``
        (mean, std, a, b, with absolute bounds a and b) or ``"fill_"`` (value).
    *args : float
        The op's positional arguments after the buffer.

    Returns
    -------
    Distribution
        Its mean, standard deviation and support.

    Raises
    ------
    ValueError
        For an unknown op.
    """
    if op == "uniform_":
        low, high = args
        return Distribution((low + high) / 2.0, (high - low) / math.sqrt(12.0), low, high)
    if op == "normal_":
        mean, std = args
        return Distribution(mean, std)
    if op == "trunc_normal_":
        mean, std, a, b = args
        alpha, beta = (a - mean) / std, (b - mean) / std
        mass = _normal_mass(alpha, beta)
        pa, pb = _phi(alpha), _phi(beta)
        shift = (pa - pb) / mass
        ta = 0.0 if math.isinf(alpha) else alpha * pa
        tb = 0.0 if math.isinf(beta) else beta * pb
        var = 1.0 + (ta - tb) / mass - shift * shift
        return Distribution(mean + std * shift, std * math.sqrt(max(var, 0.0)), a, b)
    if op == "fill_":
        (value,) = args
        return Distribution(value, 0.0, value, value)
    raise ValueError(f"unknown op {op!r}")


def check_sample(values: np.ndarray, dist: Distribution, bound_rtol: float = 0.0) -> str | None:
    """Check that sampled values plausibly come from `dist`.

    The tolerances are loose (six standard errors plus 0.5% of the standard deviation for
    the mean, 1% for the standard deviation): they catch a fill that did not run, wrote the
    wrong distribution or left its bounds, not small biases.

    Parameters
    ----------
    values : numpy.ndarray
        Sampled values, converted to float64.
    dist : Distribution
        What they must follow.
    bound_rtol : float, optional
        Relative slack on the bounds, for values rounded to a narrow dtype (a bound that
        bfloat16 cannot represent may be rounded past); pass the dtype's epsilon.

    Returns
    -------
    str or None
        A description of the first problem found, or None when the sample is sane.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n == 0:
        return None
    if not np.isfinite(v).all():
        return f"{int((~np.isfinite(v)).sum())} non-finite values"
    vmin, vmax = float(v.min()), float(v.max())
    low = dist.low - abs(dist.low) * bound_rtol
    high = dist.high + abs(dist.high) * bound_rtol
    if vmin < low or vmax > high:
        return f"values outside [{dist.low:g}, {dist.high:g}]: min {vmin:g}, max {vmax:g}"
    if dist.std == 0.0:
        return None
    if math.isinf(dist.low) and math.isinf(dist.high):
        worst = max(abs(vmin - dist.mean), abs(vmax - dist.mean)) / dist.std
        if worst > 12.0:
            return f"a value {worst:.1f} standard deviations from the mean"
    if n < 100:
        return None
    mean, std = float(v.mean()), float(v.std())
    mean_tol = dist.std * (6.0 / math.sqrt(n) + 0.005)
    if abs(mean - dist.mean) > mean_tol:
        return f"mean {mean:.5g}, expected {dist.mean:.5g} +- {mean_tol:.2g}"
    std_tol = dist.std * (6.0 / math.sqrt(2.0 * n) + 0.01)
    if abs(std - dist.std) > std_tol:
        return f"std {std:.5g}, expected {dist.std:.5g} +- {std_tol:.2g}"
    return None


def sample_values(x: torch.Tensor, size: int = SAMPLE_SIZE) -> np.ndarray:
    """Up to `size` elements spread evenly over a contiguous tensor, as float64.

    Parameters
    ----------
    x : torch.Tensor
        A contiguous tensor (any shape).
    size : int, optional
        The most elements returned.

    Returns
    -------
    numpy.ndarray
        A 1-D float64 copy of every ``numel // size``-th element.
    """
    import torch

    flat = x.view(-1)
    step = max(1, flat.numel() // size)
    return flat[::step][:size].to(torch.float64).numpy()


# --------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (empty where it does not exist)."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    info[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return info


def available_memory() -> int | None:
    """Bytes of memory available for new allocations, or None when unknown.

    Returns
    -------
    int or None
        ``MemAvailable`` from /proc/meminfo; else ``os.sysconf`` free pages; else None.
    """
    avail = _meminfo().get("MemAvailable")
    if avail is not None:
        return avail
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name, with its x86 family and model numbers (or its Arm part number).

    Virtual machines often report only a brand ("AMD EPYC"), which does not tell a Zen 2 from
    a Zen 4; the family and model numbers do, so the figures of a run can be attributed.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    if "CPU implementer" in fields and "CPU part" in fields:
        return f"{name} (implementer {fields['CPU implementer']}, part {fields['CPU part']})"
    return name


def _last_level_cache() -> int | None:
    """Size in bytes of cpu0's highest-level cache, from sysfs (Linux only)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best: tuple[int, int] | None = None
    try:
        entries = os.listdir(base)
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(f"{base}/{entry}/level", encoding="ascii") as fh:
                level = int(fh.read())
            with open(f"{base}/{entry}/size", encoding="ascii") as fh:
                text = fh.read().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1)
        digits = text.rstrip("KMGkmg")
        if digits.isdigit() and (best is None or level > best[0]):
            best = (level, int(digits) * scale)
    return best[1] if best else None


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _fastinit_config(fastinit: Any) -> dict[str, Any] | None:
    """``fastinit.config()`` when this build has it (issue 3), else None."""
    config = getattr(fastinit, "config", None)
    if config is None:
        return None
    try:
        return dict(config())
    except Exception as exc:  # a header line must never end the run
        return {"error": f"fastinit.config() failed: {exc!r}"}


def _isa_text(config: dict[str, Any] | None) -> str:
    if config is None:
        return "fastinit ISA: unknown (this build has no fastinit.config())"
    chosen = next(
        (config[k] for k in ("isa", "cpu_isa", "chosen_isa", "simd") if k in config), None
    )
    compiled = next(
        (config[k] for k in ("compiled_isas", "compiled_isa", "compiled", "isas") if k in config),
        None,
    )
    if chosen is None:
        return "fastinit.config(): " + ", ".join(f"{k}={v}" for k, v in config.items())
    text = f"fastinit ISA: {chosen}"
    if compiled:
        listed = ", ".join(map(str, compiled)) if isinstance(compiled, (list, tuple)) else compiled
        text += f" (compiled: {listed})"
    return text


def _version(module: Any, dist: str) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def machine_header(fastinit: Any, torch_module: Any, threads: int) -> dict[str, Any]:
    """Describe the machine, the versions and the date for the table header and JSON.

    Parameters
    ----------
    fastinit, torch_module : module
        The imported packages.
    threads : int
        The thread count of the run.

    Returns
    -------
    dict
        JSON-serialisable description.
    """
    meminfo = _meminfo()
    config = _fastinit_config(fastinit)
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "llc_bytes": _last_level_cache(),
        "memory_bytes": meminfo.get("MemTotal"),
        "os": platform.platform(),
        "isa": _isa_text(config),
        "fastinit_config": config,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version(torch_module, "torch"),
        "fastinit": _version(fastinit, "pyfastinit"),
        "threads": threads,
        "load_average_1min": _load_average(),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _machine_busy_seconds() -> float | None:
    """CPU-seconds all processes have spent busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        ticks = [int(v) for v in fields[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class _OtherLoad:
    """Measures how much CPU time other processes (and the hypervisor) took during a run.

    On a shared 2-core machine this is what disturbs timings: the machine's busy time
    from /proc/stat minus this process's own CPU time.
    """

    def __init__(self) -> None:
        self._busy = _machine_busy_seconds()
        self._own = _own_cpu_seconds()
        self._wall = time.perf_counter()

    def result(self, cpus: int) -> dict[str, float] | None:
        busy = _machine_busy_seconds()
        if busy is None or self._busy is None:
            return None
        other = max(0.0, (busy - self._busy) - (_own_cpu_seconds() - self._own))
        wall = time.perf_counter() - self._wall
        return {"other_cpu_s": round(other, 2), "other_fraction": other / max(wall * cpus, 1e-9)}


def _load_text(header: dict[str, Any]) -> str:
    parts = []
    other = header.get("other_load")
    if other is not None:
        text = (
            f"other processes used {other['other_cpu_s']:.1f} CPU-s during the run, "
            f"{100 * other['other_fraction']:.1f}% of the {header['usable_cpus']} CPUs"
        )
        if other["other_fraction"] > BUSY_FRACTION:
            text += " (BUSY: the timings are disturbed; rerun on a quiet machine)"
        parts.append(text)
    if header["load_average_1min"] is not None:
        parts.append(f"1-min load average {header['load_average_1min']:.2f} at the start")
    return "; ".join(parts) or "unknown"


def _gib(nbytes: float) -> str:
    return f"{nbytes / 1024**3:.1f} GiB"


def _header_lines(header: dict[str, Any], opts: BenchOptions) -> list[str]:
    llc = header["llc_bytes"]
    mem = header["memory_bytes"]
    machine = f"{header['cpu']} ({header['arch']}), {header['logical_cpus']} logical CPUs"
    machine += f" ({header['usable_cpus']} usable)"
    if llc:
        machine += f", last-level cache {llc / 1024**2:.0f} MiB"
    if mem:
        machine += f", RAM {_gib(mem)}"
    if opts.torch_numel:
        peer = (
            f"torch.nn.init: median of {opts.torch_repeat} call(s) on the first "
            f"{opts.torch_numel:,} elements of the same buffer, time scaled by "
            f"numel/{opts.torch_numel:,} (marked ~; buffers no larger are timed whole)"
        )
    else:
        peer = f"torch.nn.init: median of {opts.torch_repeat} call(s) on the whole buffer"
    return [
        "fastinit bench: fills against torch.nn.init, side by side in one run",
        f"machine:   {machine}",
        f"           {header['isa']}",
        f"load:      {_load_text(header)}",
        f"date:      {header['date']}",
        f"versions:  fastinit {header['fastinit']}, torch {header['torch']}, "
        f"numpy {header['numpy']}, python {header['python']}",
        f"threads:   {header['threads']} (fastinit.set_num_threads and torch.set_num_threads)",
        f"timing:    fastinit and fill_: median of {opts.repeat} call(s) on the whole buffer, "
        f"interleaved; {peer}",
        "reference: fill_ = torch.Tensor.fill_ of the same buffer with the same threads; "
        "% fill BW = fill_ time / op time; GB/s = 10^9 bytes written per second",
    ]


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar on standard error, or one plain line per step when tqdm is missing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._enabled = enabled
        self._done = 0
        self._total = total
        self._desc = ""
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        # disable=None: no bar when standard error is not a terminal (logs, CI)
        self._bar = tqdm(
            total=total, unit="call", file=sys.stderr, dynamic_ncols=True, leave=False, disable=None
        )

    def describe(self, desc: str) -> None:
        if not self._enabled or desc == self._desc:
            return
        self._desc = desc
        if self._bar is not None:
            self._bar.set_description_str(desc)
        else:
            print(f"[{self._done}/{self._total}] {desc}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Measurement:
    label: str
    shape: tuple[int, ...]
    dtype: str
    op: str
    impl: str  # "fill", "fastinit" or "torch"
    numel: int
    itemsize: int
    measured_numel: int
    times_s: list[float] = dataclasses.field(default_factory=list)
    problem: str | None = None

    @property
    def time_s(self) -> float | None:
        """Median time, scaled to the whole buffer."""
        if not self.times_s:
            return None
        median = statistics.median(self.times_s)
        return max(median, 1e-9) * self.numel / self.measured_numel


def _time_call(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """Seconds taken by ``fn(*args, **kwargs)``."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _torch_dtype(torch_module: Any, name: str) -> Any:
    return getattr(torch_module, name)


def _sanity(m: _Measurement, flat: torch.Tensor, op_args: tuple[float, ...]) -> None:
    """Record in `m` whether the values just written are plausible."""
    import torch

    eps = torch.finfo(flat.dtype).eps
    problem = check_sample(sample_values(flat), expected_distribution(m.op, *op_args), eps)
    if problem is not None:
        m.problem = f"{m.impl} {m.op} on {m.label} {m.dtype}: {problem}"


def _measure_buffer(
    x: torch.Tensor,
    label: str,
    dtype: str,
    opts: BenchOptions,
    fastinit: Any,
    progress: _Progress,
) -> list[_Measurement]:
    """Time fill_, every fastinit op and every torch peer on one buffer."""
    import torch

    flat = x.view(-1)
    numel, itemsize = x.numel(), x.element_size()
    shape = tuple(x.shape)

    def new(op: str, impl: str, measured: int) -> _Measurement:
        return _Measurement(label, shape, dtype, op, impl, numel, itemsize, measured)

    fill = new("fill_", "fill", numel)
    ours = [new(op, "fastinit", numel) for op in opts.ops]
    fns = {op: getattr(fastinit, op) for op in opts.ops}
    # fastinit and fill_ alternate, so slow drifts (turbo, neighbours) hit both alike.
    for r in range(opts.repeat):
        last = r == opts.repeat - 1
        progress.describe(f"{label} {dtype} fill_+fastinit")
        fill.times_s.append(_time_call(x.fill_, FILL_VALUE))
        progress.advance()
        if last:
            _sanity(fill, flat, (FILL_VALUE,))
        for m in ours:
            fn, args = fns[m.op], OP_ARGS[m.op]
            m.times_s.append(_time_call(fn, x, *args, seed=SEED))
            progress.advance()
            if last:
                _sanity(m, flat, args)

    measured = numel if not opts.torch_numel else min(numel, opts.torch_numel)
    sub = flat[:measured]
    peers = []
    for op in opts.ops:
        m = new(op, "torch", measured)
        peer = getattr(torch.nn.init, op)
        progress.describe(f"{label} {dtype} torch.nn.init.{op}")
        try:
            for _ in range(opts.torch_repeat):
                m.times_s.append(_time_call(peer, sub, *OP_ARGS[op]))
                progress.advance()
            _sanity(m, sub, OP_ARGS[m.op])
        except (RuntimeError, NotImplementedError) as exc:  # e.g. no kernel for the dtype
            m.times_s.clear()
            m.problem = f"torch.nn.init.{op} failed on {dtype}: {exc}".splitlines()[0]
        peers.append(m)
    return [fill, *ours, *peers]


def _warm_up(fastinit: Any, torch_module: Any, dtypes: Iterable[str], ops: Iterable[str]) -> None:
    """Pay one-time costs (thread pool start, first DLPack import) before timing."""
    for dtype in dtypes:
        small = torch_module.empty(1 << 16, dtype=_torch_dtype(torch_module, dtype))
        small.fill_(0.0)
        for op in ops:
            getattr(fastinit, op)(small, *OP_ARGS[op], seed=SEED)


def _derive(measurements: list[_Measurement]) -> list[dict[str, Any]]:
    """Turn raw timings into table rows (ratios against fill_ and torch of the same buffer)."""
    fill_time: dict[tuple[str, str], float | None] = {}
    torch_time: dict[tuple[str, str, str], float | None] = {}
    for m in measurements:
        if m.impl == "fill":
            fill_time[(m.label, m.dtype)] = m.time_s
        elif m.impl == "torch":
            torch_time[(m.label, m.dtype, m.op)] = m.time_s
    rows = []
    for m in measurements:
        t = m.time_s
        ref = fill_time.get((m.label, m.dtype))
        peer = torch_time.get((m.label, m.dtype, m.op))
        nbytes = m.numel * m.itemsize
        rows.append(
            {
                "shape": list(m.shape),
                "label": m.label,
                "dtype": m.dtype,
                "op": m.op,
                "impl": m.impl,
                "name": {
                    "fill": "torch fill_ (reference)",
                    "fastinit": f"fastinit.{m.op}",
                    "torch": f"torch.nn.init.{m.op}",
                }[m.impl],
                "numel": m.numel,
                "bytes": nbytes,
                "measured_numel": m.measured_numel,
                "scaled": m.measured_numel != m.numel,
                "times_s": m.times_s,
                "time_s": t,
                "elements_per_s": m.numel / t if t else None,
                "gb_per_s": nbytes / t / 1e9 if t else None,
                "speedup_vs_torch": peer / t if (t and peer and m.impl != "fill") else None,
                "pct_fill_bandwidth": 100.0 * ref / t if (t and ref) else None,
                "problem": m.problem,
            }
        )
    return rows


@dataclasses.dataclass
class BenchReport:
    """The outcome of :func:`run_bench`.

    Attributes
    ----------
    header : dict
        Machine, date, versions and threads (see :func:`machine_header`).
    options : BenchOptions
        What was measured.
    rows : list of dict
        One per (shape, dtype, op, implementation), in table order.
    skipped : list of dict
        Buffers not measured, with the reason.
    wall_s : float
        Wall-clock time of the run.
    """

    header: dict[str, Any]
    options: BenchOptions
    rows: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    wall_s: float

    @property
    def problems(self) -> list[str]:
        """Sanity-check failures and peer errors, one line each."""
        return [row["problem"] for row in self.rows if row["problem"]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of everything measured."""
        opts = dataclasses.asdict(self.options)
        opts["shapes"] = [{"label": label, "shape": list(s)} for label, s in self.options.shapes]
        return {
            "header": self.header,
            "options": opts,
            "rows": self.rows,
            "skipped": self.skipped,
            "wall_s": self.wall_s,
        }


def run_bench(opts: BenchOptions) -> BenchReport:
    """Time the fills of `opts` against torch.nn.init and the fill_ reference.

    Each buffer is allocated once per shape and dtype, touched once (untimed) so that
    page faults stay out of the timings, used by every op, and freed before the next.
    Buffers that need more than 80% of the available memory are skipped.

    Parameters
    ----------
    opts : BenchOptions
        What to measure.

    Returns
    -------
    BenchReport
        Header, rows and skipped buffers. Sanity failures are reported in
        ``report.problems``, not raised.

    Raises
    ------
    BenchError
        When torch or fastinit's fills cannot be imported.
    """
    try:
        import torch
    except ImportError:
        raise BenchError(
            "fastinit bench compares against torch.nn.init and needs PyTorch, which is not "
            "installed (pip install torch, or pip install 'pyfastinit[torch]')"
        ) from None
    import fastinit

    missing = [op for op in opts.ops if not hasattr(fastinit, op)]
    if missing:
        raise BenchError(f"this fastinit has no {', '.join(missing)}: is its native core built?")

    started = time.perf_counter()
    other_load = _OtherLoad()
    saved = (torch.get_num_threads(), fastinit.get_num_threads())
    torch.set_num_threads(opts.threads)
    fastinit.set_num_threads(opts.threads)
    header = machine_header(fastinit, torch, opts.threads)
    try:
        _warm_up(fastinit, torch, opts.dtypes, opts.ops)
        plan, skipped = _plan(opts, torch)
        per_buffer = opts.repeat * (1 + len(opts.ops)) + opts.torch_repeat * len(opts.ops)
        progress = _Progress(per_buffer * len(plan), opts.progress)
        measurements: list[_Measurement] = []
        try:
            for label, shape, dtype in plan:
                progress.describe(f"{label} {dtype} allocating")
                try:
                    x = torch.empty(shape, dtype=_torch_dtype(torch, dtype))
                    x.fill_(0.0)  # first touch: page faults stay out of the timings
                except RuntimeError as exc:  # the allocator's "not enough memory"
                    skipped.append(
                        {"label": label, "dtype": dtype, "reason": str(exc).splitlines()[0]}
                    )
                    for _ in range(per_buffer):
                        progress.advance()
                    continue
                measurements += _measure_buffer(x, label, dtype, opts, fastinit, progress)
                del x
        finally:
            progress.close()
    finally:
        torch.set_num_threads(saved[0])
        fastinit.set_num_threads(saved[1])
    header["other_load"] = other_load.result(header["usable_cpus"])
    return BenchReport(header, opts, _derive(measurements), skipped, time.perf_counter() - started)


def _plan(
    opts: BenchOptions, torch_module: Any
) -> tuple[list[tuple[str, tuple[int, ...], str]], list[dict[str, Any]]]:
    """The (label, shape, dtype) buffers to measure and those skipped for lack of memory."""
    avail = available_memory()
    plan, skipped = [], []
    for label, shape in opts.shapes:
        for dtype in opts.dtypes:
            itemsize = torch_module.empty(
                (), dtype=_torch_dtype(torch_module, dtype)
            ).element_size()
            need = math.prod(shape) * itemsize
            if avail is not None and need > MEMORY_FRACTION * avail:
                reason = (
                    f"needs {_gib(need)}, more than {MEMORY_FRACTION:.0%} of the "
                    f"{_gib(avail)} available (MemAvailable)"
                )
                skipped.append({"label": label, "dtype": dtype, "reason": reason})
            else:
                plan.append((label, shape, dtype))
    return plan, skipped


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _fmt_time(seconds: float | None, scaled: bool) -> str:
    if seconds is None:
        return "failed"
    value, unit = next(
        (
            (seconds / scale, unit)
            for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"))
            if seconds >= scale
        ),
        (seconds / 1e-6, "us"),
    )
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{'~' if scaled else ''}{value:.{digits}f} {unit}"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _text_table(report: BenchReport) -> list[str]:
    """One row per implementation: fill_, fastinit's ops, then torch.nn.init's."""
    columns = ("shape", "dtype", "op", "time", "Gelem/s", "GB/s", "vs torch", "% fill BW")
    body: list[tuple[str, ...]] = []
    previous: tuple[str, str] | None = None
    for row in report.rows:
        first = (row["label"], row["dtype"]) != previous
        previous = (row["label"], row["dtype"])
        body.append(
            (
                row["label"] if first else "",
                row["dtype"] if first else "",
                row["name"] + (" !" if row["problem"] else ""),
                _fmt_time(row["time_s"], row["scaled"]),
                _fmt(row["elements_per_s"] and row["elements_per_s"] / 1e9, ".2f"),
                _fmt(row["gb_per_s"], ".1f"),
                _fmt(row["speedup_vs_torch"], ".1f", "x"),
                _fmt(row["pct_fill_bandwidth"], ".0f", "%"),
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    left = 3  # shape, dtype and op are left-aligned, numbers right-aligned

    def render(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [render(columns)]
    for i, cells in enumerate(body):
        if i and cells[0]:
            lines.append("")
        lines.append(render(cells))
    return lines


def _markdown_table(report: BenchReport) -> list[str]:
    """One row per op with fastinit's and torch.nn.init's times side by side (for READMEs)."""
    columns = (
        "shape",
        "dtype",
        "op",
        "fastinit",
        "torch.nn.init",
        "speed-up",
        "GB/s",
        "% fill BW",
    )
    torch_rows = {(r["label"], r["dtype"], r["op"]): r for r in report.rows if r["impl"] == "torch"}
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 5) + "|"]
    for row in report.rows:
        if row["impl"] == "torch":
            continue
        peer = torch_rows.get((row["label"], row["dtype"], row["op"]))
        name = "fill_ (reference)" if row["impl"] == "fill" else row["op"]
        cells = (
            row["label"],
            row["dtype"],
            name + (" !" if row["problem"] else ""),
            _fmt_time(row["time_s"], row["scaled"]),
            _fmt_time(peer["time_s"], peer["scaled"]) if peer else "",
            _fmt(row["speedup_vs_torch"], ".1f", "x") if peer else "",
            _fmt(row["gb_per_s"], ".1f"),
            _fmt(row["pct_fill_bandwidth"], ".0f", "%"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_table(report: BenchReport, fmt: str = "text") -> str:
    """Render the header and the side-by-side table.

    Parameters
    ----------
    report : BenchReport
        The measurements.
    fmt : {"text", "markdown"}
        ``"text"``: aligned plain text, one row per implementation with all the figures.
        ``"markdown"``: a compact Markdown table for READMEs, one row per op with
        fastinit's and torch.nn.init's times side by side, and fastinit's GB/s and % of
        the fill bandwidth.

    Returns
    -------
    str
        The header lines, the table, the skipped buffers and any problems.
    """
    lines = _header_lines(report.header, report.options)
    if fmt == "markdown":
        lines = [line + "  " for line in lines]  # Markdown line breaks
    lines.append("")
    if report.rows:
        lines += _markdown_table(report) if fmt == "markdown" else _text_table(report)
    else:
        lines.append("(nothing measured)")
    lines.append("")
    for skip in report.skipped:
        lines.append(f"skipped {skip['label']} {skip['dtype']}: {skip['reason']}")
    for problem in report.problems:
        lines.append(f"PROBLEM (rows marked !): {problem}")
    lines.append(f"wall time of the run: {report.wall_s:.1f} s")
    return "\n".join(lines)


def write_plot(report: BenchReport, path: str) -> None:
    """Draw speed-up over torch.nn.init and % of fill bandwidth per buffer and op.

    Parameters
    ----------
    report : BenchReport
        The measurements.
    path : str
        Output PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [r for r in report.rows if r["impl"] == "fastinit"]
    buffers = list(dict.fromkeys((r["label"], r["dtype"]) for r in ours))
    ops = list(dict.fromkeys(r["op"] for r in ours))
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.8 * len(buffers) + 2), 7.5), sharex=True)
    width = 0.8 / max(1, len(ops))
    panels = (("speedup_vs_torch", "{:.1f}x"), ("pct_fill_bandwidth", "{:.0f}%"))
    for j, op in enumerate(ops):
        by_buffer = {(r["label"], r["dtype"]): r for r in ours if r["op"] == op}
        for ax, (key, label_fmt) in zip(axes, panels, strict=True):
            xs, ys = [], []
            for i, buffer in enumerate(buffers):
                row = by_buffer.get(buffer)
                if row is not None and row[key] is not None:
                    xs.append(i + (j - (len(ops) - 1) / 2) * width)
                    ys.append(row[key])
            bars = ax.bar(xs, ys, width, label=f"fastinit.{op}", color=f"C{j}")
            ax.bar_label(bars, labels=[label_fmt.format(y) for y in ys], fontsize=7)
    axes[0].set_ylabel("speed-up over torch.nn.init")
    axes[0].set_yscale("log")
    axes[0].axhline(1.0, color="grey", linewidth=0.8)
    axes[1].set_ylabel("% of fill_ bandwidth (same buffer)")
    axes[1].axhline(100.0, color="grey", linewidth=0.8)
    axes[1].set_xticks(range(len(buffers)), [f"{label}\n{dtype}" for label, dtype in buffers])
    h = report.header
    fig.suptitle(
        f"fastinit {h['fastinit']} vs torch {h['torch']}, {h['threads']} threads, {h['date']}\n"
        f"{h['cpu']}; {h['isa']}",
        fontsize=9,
    )
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=max(1, len(ops)))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# Model and orthogonal sections (written with issues 4 and 5)
# --------------------------------------------------------------------------------------


def run_section(name: str, kwargs: dict[str, Any], out: IO[str]) -> tuple[bool, Any]:
    """Run the ``--model`` or ``--orthogonal`` section if this fastinit has it.

    The runner is ``run_model_bench`` in ``fastinit.bench.models`` or
    ``run_orthogonal_bench`` in ``fastinit.bench.orthogonal``. It is called with the
    keywords it accepts among ``dtypes`` (list of str), ``threads`` (int), ``repeat``
    (int; only when ``--repeat`` was given, so that the runner keeps its own default),
    ``progress`` (bool), ``shapes`` (list of (label, shape), or None for its own defaults)
    and ``out`` (the text stream for its table). It prints its own table (to
    `out` when it takes it, else to standard output) and returns something
    JSON-serialisable for ``--json``; a returned str is printed.

    Parameters
    ----------
    name : {"model", "orthogonal"}
        The section.
    kwargs : dict
        The keywords offered.
    out : file-like
        Where messages and a returned str go.

    Returns
    -------
    (bool, object)
        Whether it ran, and what it returned.
    """
    module_name, func_name, issue = _SECTIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    func = getattr(module, func_name, None)
    if func is None:
        print(
            f"fastinit bench --{name}: this version of fastinit has no {name} benchmark yet "
            f"({module_name}.{func_name}, {issue}); nothing measured",
            file=sys.stderr,
        )
        return False, None
    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    result = func(**kwargs)
    if isinstance(result, str):
        print(result, file=out)
    return True, result


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _section_problems(result: Any) -> list[str]:
    """The ``problem`` entries of a section's rows (a list of dicts), if it reports any."""
    rows = result if isinstance(result, list) else []
    return [str(r["problem"]) for r in rows if isinstance(r, dict) and r.get("problem")]


def _options_from_args(args: argparse.Namespace, shapes_text: str) -> BenchOptions:
    import fastinit

    threads = args.threads if args.threads is not None else fastinit.get_num_threads()
    repeat = args.repeat if args.repeat is not None else DEFAULT_REPEAT
    for flag, value, low in (
        ("--threads", threads, 1),
        ("--repeat", repeat, 1),
        ("--torch-repeat", args.torch_repeat, 1),
    ):
        if value < low:
            raise ValueError(f"{flag} must be at least {low}, got {value}")
    return BenchOptions(
        shapes=parse_shapes(shapes_text),
        dtypes=_parse_list(args.dtype, _DTYPE_NAMES, "dtype"),
        ops=_parse_list(args.ops, OPS, "op", suffix="_"),
        threads=threads,
        repeat=repeat,
        torch_repeat=args.torch_repeat,
        torch_numel=args.torch_numel,
        progress=not args.no_progress,
    )


def run_from_args(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Carry out ``fastinit bench`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser set up with :func:`add_bench_arguments`.
    out : file-like, optional
        Where the table goes (standard output by default).

    Returns
    -------
    int
        Exit status: 0 when everything asked for ran and passed its sanity checks, 1 when
        a check failed or a section is missing or a dependency is missing, 2 for bad
        arguments.
    """
    out = out if out is not None else sys.stdout
    sections = [name for name in _SECTIONS if getattr(args, name)]
    run_fills = args.fills or not sections
    if args.plot and run_fills:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "fastinit bench: --plot needs matplotlib, which is not installed "
                "(pip install matplotlib, or pip install 'pyfastinit[plot]')",
                file=sys.stderr,
            )
            return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print(
            "fastinit bench: it compares against torch.nn.init and needs PyTorch, which is "
            "not installed (pip install torch, or pip install 'pyfastinit[torch]')",
            file=sys.stderr,
        )
        return 1
    try:
        opts = _options_from_args(args, args.shapes or DEFAULT_SHAPES)
    except ValueError as exc:
        print(f"fastinit bench: error: {exc}", file=sys.stderr)
        return 2

    status = 0
    document: dict[str, Any] = {}
    if run_fills:
        try:
            report = run_bench(opts)
        except BenchError as exc:
            print(f"fastinit bench: {exc}", file=sys.stderr)
            return 1
        print(format_table(report, args.format), file=out, flush=True)
        document.update(report.to_json())
        if report.problems:
            status = 1
        if args.plot:
            write_plot(report, args.plot)
            print(f"plot written to {args.plot}", file=out)
    # Sections keep their own defaults for what was not given on the command line.
    section_kwargs: dict[str, Any] = {
        "dtypes": opts.dtypes,
        "threads": opts.threads,
        "progress": opts.progress,
        "shapes": opts.shapes if args.shapes else None,
        "out": out,
        "model": args.model,
    }
    if args.repeat is not None:
        section_kwargs["repeat"] = opts.repeat
    for name in sections:
        if document or name != sections[0]:
            print(file=out)
        ran, result = run_section(name, section_kwargs, out)
        if not ran or _section_problems(result):
            status = 1
        elif result is not None and not isinstance(result, str):
            document[name] = result
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, default=str)
            fh.write("\n")
        print(f"JSON written to {args.json}", file=out)
    return status
