"""Side-by-side timing of whole-model builds, shared by ``bench --model`` (plain Llama-style
models, :mod:`fastinit.bench.models`) and the real library models
(:mod:`fastinit.bench.libraries`)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch


def timed_rounds(
    methods: Sequence[str],
    repeat: int,
    build: Callable[[str], tuple[float, str | None]],
    label: str,
    progress: bool,
) -> tuple[dict[str, list[float]], dict[str, str | None]]:
    """Time ``build(method)`` (returning ``(seconds, problem or None)``) ``repeat`` times each.

    Rounds (every method once per round) rather than one method's repeats in a row, each
    round starting one method later: slow drifts of a shared machine, and the state the
    previous build leaves the memory in, then hit every method alike. Returns the times per
    method and the first problem each method's checks reported.
    """
    times: dict[str, list[float]] = {m: [] for m in methods}
    problems: dict[str, str | None] = {m: None for m in methods}
    for i in range(repeat):
        shift = i % len(methods)
        for method in (*methods[shift:], *methods[:shift]):
            elapsed, issue = build(method)
            times[method].append(elapsed)
            problems[method] = problems[method] or issue
            if progress:
                print(
                    f"{label} {method} {i + 1}/{repeat}: {elapsed:.3f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return times, problems


def summary_rows(
    methods: Sequence[str],
    times: dict[str, list[float]],
    problems: dict[str, str | None],
    **fields: Any,
) -> list[dict[str, Any]]:
    """One row per method: ``fields``, the threads, the times with their median and minimum,
    the problem, and the speed-up of the median over the ``torch`` method's (None without it)."""
    rows: list[dict[str, Any]] = [
        {
            **fields,
            "method": m,
            "threads": torch.get_num_threads(),
            "times_s": times[m],
            "median_s": statistics.median(times[m]),
            "min_s": min(times[m]),
            "problem": problems[m],
        }
        for m in methods
    ]
    reference = next((r["median_s"] for r in rows if r["method"] == "torch"), None)
    for row in rows:
        row["speedup"] = reference / row["median_s"] if reference else None
    return rows
