"""``python -m fastinit bench --orthogonal``: fastinit.orthogonal_ vs torch.nn.init.orthogonal_.

For every shape and dtype one torch buffer is allocated and both implementations write it,
interleaved call by call, with the same thread count (``fastinit.set_num_threads`` and
``torch.set_num_threads``). The table gives the median times, the speed-up, fastinit's
GFLOP/s (counting ``2 M N^2 - 2/3 N^3`` flops, ``M = max(rows, cols)``, ``N = min``) and
``max|Q^T Q - I|`` measured in float64 on up to 256 evenly spaced columns (or rows) of the
result. torch.nn.init.orthogonal_ has no float16/bfloat16 path on CPU (``geqrf`` is not
implemented for them); those rows compare with torch's float32 time for the same shape, and
the ``vs f32`` column gives fastinit's time relative to its own float32 time.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["DEFAULT_SHAPES", "ORTHOGONALITY_TOLERANCE", "run_orthogonal_bench"]

#: The shapes of issue 5: square, tall, wide and large.
DEFAULT_SHAPES: list[tuple[str, tuple[int, ...]]] = [
    ("1024x1024", (1024, 1024)),
    ("4096x4096", (4096, 4096)),
    ("8192x2048", (8192, 2048)),
    ("2048x8192", (2048, 8192)),
    ("8192x8192", (8192, 8192)),
]
DEFAULT_DTYPES = ("float32", "bfloat16")
DEFAULT_REPEAT = 5
#: The seed of every fastinit call, so that every repeat does the same work.
SEED = 20240611
#: torch.nn.init.orthogonal_ stops repeating once its calls for one row took this long.
TORCH_BUDGET_S = 60.0
#: Columns (of the orthonormal side) sampled for the orthogonality check.
CHECK_COLUMNS = 256
#: The largest acceptable max|Q^T Q - I| per dtype (a larger one is reported as a problem).
ORTHOGONALITY_TOLERANCE = {
    "float64": 1e-12,
    "float32": 1e-5,
    "float16": 5e-3,
    "bfloat16": 4e-2,
}


def orthogonality_error(x: Any, gain: float = 1.0) -> float:
    """``max|S^T S - gain^2 I|`` over up to 256 evenly spaced orthonormal columns ``S``.

    Parameters
    ----------
    x : torch.Tensor
        An initialized tensor (flattened as torch does: dim 0 by the rest).
    gain : float
        The gain it was initialized with.

    Returns
    -------
    float
        The largest deviation, computed in float64.
    """
    import torch

    a = x.detach().reshape(x.shape[0], -1)
    if a.shape[0] < a.shape[1]:
        a = a.t()
    n = a.shape[1]
    idx = torch.linspace(0, n - 1, min(n, CHECK_COLUMNS)).round().long().unique()
    s = a[:, idx].to(torch.float64)
    gram = s.t() @ s
    return float((gram - gain * gain * torch.eye(len(idx), dtype=torch.float64)).abs().max())


def flop_count(shape: Sequence[int]) -> float:
    """Flops of fastinit's accumulation, ``2 M N^2 - 2/3 N^3``."""
    rows = int(shape[0])
    cols = math.prod(int(s) for s in shape[1:])
    m, n = max(rows, cols), min(rows, cols)
    return 2.0 * m * n * n - 2.0 / 3.0 * n**3


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.3f} s"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def run_orthogonal_bench(
    shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None,
    dtypes: Sequence[str] | None = None,
    repeat: int = DEFAULT_REPEAT,
    threads: int | None = None,
    *,
    progress: bool = False,
    out: IO[str] | None = None,
) -> list[dict[str, Any]]:
    """Time fastinit.orthogonal_ and torch.nn.init.orthogonal_ side by side and print a table.

    Parameters
    ----------
    shapes : list of (str, tuple of int), optional
        ``(label, shape)`` pairs; by default :data:`DEFAULT_SHAPES`. Shapes need at least 2
        dimensions (1-D ones are skipped with a note).
    dtypes : list of str, optional
        Among float32, float64, float16, bfloat16; by default float32 and bfloat16.
    repeat : int
        Calls per implementation (medians are reported). torch stops early once its calls
        for one row took :data:`TORCH_BUDGET_S` seconds (at least one call).
    threads : int, optional
        Threads for both (default: ``fastinit.get_num_threads()``).
    progress : bool
        Print one line per measurement to standard error.
    out : file-like, optional
        Where the table goes (standard output by default).

    Returns
    -------
    list of dict
        One row per (shape, dtype): ``shape``, ``dims``, ``dtype``, ``threads``,
        ``fastinit_s`` and ``torch_s`` (medians; ``torch_s`` is None where torch failed),
        ``fastinit_runs``, ``torch_runs``, ``fastinit_times``, ``torch_times``,
        ``torch_dtype`` (the dtype torch was timed with), ``torch_error``, ``speedup``,
        ``vs_float32``, ``gflops``, ``orthogonality_error`` and ``problem`` (None, or why
        the row failed its check).
    """
    import torch

    import fastinit
    from fastinit import orthogonal_

    out = out if out is not None else sys.stdout
    shapes = list(DEFAULT_SHAPES if shapes is None else shapes)
    dtypes = list(DEFAULT_DTYPES if dtypes is None else dtypes)
    threads = fastinit.get_num_threads() if threads is None else int(threads)
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    # float32 first, so that the 16-bit rows can refer to its times.
    dtypes.sort(key=lambda d: (d != "float32", d != "float64"))

    saved = (torch.get_num_threads(), fastinit.get_num_threads())
    torch.set_num_threads(threads)
    fastinit.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        warm = torch.empty(64, 64)
        orthogonal_(warm, seed=SEED)  # loads OpenBLAS and starts its threads
        torch.nn.init.orthogonal_(warm)
        for label, shape in shapes:
            if len(shape) < 2:
                notes.append(f"skipped {label}: orthogonal_ needs at least 2 dimensions")
                continue
            f32: dict[str, Any] = {}
            for dtype in dtypes:
                row = _measure(torch, orthogonal_, label, tuple(shape), dtype, repeat, threads)
                if dtype == "float32":
                    f32 = row
                elif f32 and row["fastinit_s"] and f32.get("fastinit_s"):
                    row["vs_float32"] = row["fastinit_s"] / f32["fastinit_s"]
                if row["torch_s"] is None and f32.get("torch_s") is not None:
                    row["torch_s"], row["torch_dtype"] = f32["torch_s"], "float32"
                if row["torch_s"] is not None and row["fastinit_s"]:
                    row["speedup"] = row["torch_s"] / row["fastinit_s"]
                rows.append(row)
                if progress:
                    print(
                        f"orthogonal {label} {dtype}: fastinit {_fmt_s(row['fastinit_s'])}, "
                        f"torch {_fmt_s(row['torch_s'])}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        torch.set_num_threads(saved[0])
        fastinit.set_num_threads(saved[1])
    print(_format(rows, notes, threads, torch, fastinit), file=out, flush=True)
    return rows


def _measure(
    torch: Any,
    orthogonal_: Callable[..., Any],
    label: str,
    shape: tuple[int, ...],
    dtype: str,
    repeat: int,
    threads: int,
) -> dict[str, Any]:
    x = torch.empty(shape, dtype=getattr(torch, dtype))
    x.fill_(0.0)  # first touch: page faults stay out of the timings
    fast_times: list[float] = []
    torch_times: list[float] = []
    torch_error: str | None = None
    for _ in range(repeat):
        fast_times.append(_timed(lambda: orthogonal_(x, seed=SEED)))
        if torch_error is None and sum(torch_times) < TORCH_BUDGET_S:
            try:
                torch_times.append(_timed(lambda: torch.nn.init.orthogonal_(x)))
            except RuntimeError as exc:  # no QR for the 16-bit dtypes (NotImplementedError too)
                torch_error = str(exc).splitlines()[0]
    orthogonal_(x, seed=SEED)
    err = orthogonality_error(x)
    tol = ORTHOGONALITY_TOLERANCE.get(dtype, 1e-5)
    fast = statistics.median(fast_times)
    problem = None
    if not err <= tol:
        problem = f"orthogonal {label} {dtype}: max|Q^T Q - I| = {err:.3g} > {tol:g}"
    return {
        "shape": label,
        "dims": list(shape),
        "dtype": dtype,
        "threads": threads,
        "fastinit_s": fast,
        "torch_s": statistics.median(torch_times) if torch_times else None,
        "fastinit_runs": len(fast_times),
        "torch_runs": len(torch_times),
        "fastinit_times": fast_times,
        "torch_times": torch_times,
        "torch_dtype": dtype if torch_times else None,
        "torch_error": torch_error,
        "speedup": None,
        "vs_float32": None,
        "gflops": flop_count(shape) / fast / 1e9,
        "orthogonality_error": err,
        "problem": problem,
    }


def _format(
    rows: list[dict[str, Any]], notes: list[str], threads: int, torch: Any, fastinit: Any
) -> str:
    from fastinit._orthogonal import blas_info

    from .fills import machine_header

    header = machine_header(fastinit, torch, threads)
    blas = blas_info()
    load = header.get("load_average_1min")
    lines = [
        "fastinit bench --orthogonal: fastinit.orthogonal_ against torch.nn.init.orthogonal_",
        f"machine:   {header['cpu']}, {header['usable_cpus']} usable CPUs"
        + (f"; load average {load:.2f} at start" if load is not None else ""),
        f"BLAS:      {blas.get('name')} {blas.get('version')} ({blas.get('corename')}, "
        f"{blas.get('threading')}); torch {header['torch']}",
        f"threads:   {threads} (fastinit.set_num_threads and torch.set_num_threads)",
        "timing:    median of the calls, fastinit and torch interleaved on the same buffer; "
        f"torch stops repeating after {TORCH_BUDGET_S:.0f} s",
        "",
    ]
    head = (
        f"{'shape':>11} {'dtype':>9} {'fastinit':>10} {'torch':>11} {'speed-up':>8} "
        f"{'vs f32':>7} {'GFLOP/s':>8} {'max|QtQ-I|':>10} {'runs':>5}"
    )
    lines += [head, "-" * len(head)]
    for r in rows:
        torch_text = _fmt_s(r["torch_s"])
        if r["torch_dtype"] == "float32" and r["dtype"] != "float32":
            torch_text += "*"
        lines.append(
            f"{r['shape']:>11} {r['dtype']:>9} {_fmt_s(r['fastinit_s']):>10} {torch_text:>11} "
            f"{_fmt(r['speedup'], '.2f', 'x'):>8} {_fmt(r['vs_float32'], '.2f'):>7} "
            f"{r['gflops']:8.1f} {r['orthogonality_error']:10.2e} "
            f"{r['fastinit_runs']}/{r['torch_runs']:<3}"
        )
    if any(r["torch_dtype"] == "float32" and r["dtype"] != "float32" for r in rows):
        lines.append(
            "* torch.nn.init.orthogonal_ cannot do this dtype on CPU (QR not implemented); "
            "its float32 time for the same shape"
        )
    lines += notes
    lines += [f"PROBLEM: {r['problem']}" for r in rows if r["problem"]]
    return "\n".join(lines)
