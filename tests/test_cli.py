"""The ``fastinit bench`` command line: parsing, sanity checks, table and JSON output.

The end-to-end runs use tiny shapes in a subprocess (``python -m fastinit bench``), so they
take a few seconds; they need torch, the peer the bench compares against.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.integrate import trapezoid  # np.trapezoid is numpy >= 2.0 only

from fastinit.__main__ import main
from fastinit.bench import fills as _bench

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="the bench compares against torch")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fastinit <args>`` and return its completed process."""
    return subprocess.run(
        [sys.executable, "-m", "fastinit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


# --------------------------------------------------------------------------------------
# parsing and the sanity check
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096x4096", [("4096x4096", (4096, 4096))]),
        ("1e9", [("1e9", (10**9,))]),
        ("2^28, 2**4x3", [("2^28", (2**28,)), ("2**4x3", (16, 3))]),
        ("128256X4096", [("128256X4096", (128256, 4096))]),
        ("512x512x3x3", [("512x512x3x3", (512, 512, 3, 3))]),
    ],
)
def test_parse_shapes(text: str, expected: list[tuple[str, tuple[int, ...]]]) -> None:
    assert _bench.parse_shapes(text) == expected


@pytest.mark.parametrize("text", ["", "4096x", "0x4", "1e-3", "2.5e0", "abc", "4096,,8", "-4"])
def test_parse_shapes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        _bench.parse_shapes(text)


def _trunc_moments_by_quadrature(a: float, b: float) -> tuple[float, float]:
    """Mean and std of N(0, 1) truncated to [a, b], by the trapezoid rule."""
    x = np.linspace(a, b, 200_001)
    w = np.exp(-0.5 * x * x)
    mass = trapezoid(w, x)
    mean = trapezoid(x * w, x) / mass
    var = trapezoid((x - mean) ** 2 * w, x) / mass
    return float(mean), float(math.sqrt(var))


@pytest.mark.parametrize(
    ("a", "b"), [(-2.0, 2.0), (0.0, 8.0), (5.0, 6.0), (-8.0, -7.0), (-1.0, 3.0)]
)
def test_expected_truncated_normal_moments(a: float, b: float) -> None:
    dist = _bench.expected_distribution("trunc_normal_", 0.0, 1.0, a, b)
    mean, std = _trunc_moments_by_quadrature(a, b)
    assert dist.mean == pytest.approx(mean, rel=1e-6, abs=1e-9)
    assert dist.std == pytest.approx(std, rel=1e-5)
    assert (dist.low, dist.high) == (a, b)
    # scaled and shifted: mean + std * standard moments
    moved = _bench.expected_distribution("trunc_normal_", 1.0, 0.5, 1.0 + 0.5 * a, 1.0 + 0.5 * b)
    assert moved.mean == pytest.approx(1.0 + 0.5 * mean, rel=1e-6)
    assert moved.std == pytest.approx(0.5 * std, rel=1e-5)


def test_check_sample_accepts_good_samples() -> None:
    rng = np.random.default_rng(0)
    n = 1 << 18
    uniform = _bench.expected_distribution("uniform_", -0.1, 0.1)
    assert _bench.check_sample(rng.uniform(-0.1, 0.1, n), uniform) is None
    assert (
        _bench.check_sample(
            rng.normal(3.0, 0.02, n), _bench.expected_distribution("normal_", 3.0, 0.02)
        )
        is None
    )
    z = rng.normal(0.0, 1.0, 4 * n)
    trunc = z[(z >= -2.0) & (z <= 2.0)][:n]
    assert (
        _bench.check_sample(
            trunc, _bench.expected_distribution("trunc_normal_", 0.0, 1.0, -2.0, 2.0)
        )
        is None
    )
    assert _bench.check_sample(np.full(10, 0.5), _bench.expected_distribution("fill_", 0.5)) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros(1 << 16), "std"),  # the buffer was never written
        (np.random.default_rng(1).uniform(-1.0, 1.0, 1 << 16), "std"),  # uniform, not normal
        (np.random.default_rng(2).normal(0.2, 1.0, 1 << 16), "mean"),
        (np.r_[np.random.default_rng(3).normal(0.0, 1.0, 1000), 20.0], "standard deviations"),
        (np.r_[np.random.default_rng(4).normal(0.0, 1.0, 1000), np.nan], "non-finite"),
    ],
)
def test_check_sample_rejects_bad_normal_samples(values: np.ndarray, message: str) -> None:
    problem = _bench.check_sample(values, _bench.expected_distribution("normal_", 0.0, 1.0))
    assert problem is not None and message in problem


def test_check_sample_bounds_and_rounding_slack() -> None:
    values = np.array([-0.1, 0.0, 0.1000001])
    uniform = _bench.expected_distribution("uniform_", -0.1, 0.1)
    assert "outside" in (_bench.check_sample(values, uniform) or "")
    assert _bench.check_sample(values, uniform, bound_rtol=2.0**-7) is None
    trunc = _bench.expected_distribution("trunc_normal_", 0.0, 1.0, -2.0, 2.0)
    assert "outside" in (_bench.check_sample(np.array([0.0, -2.5]), trunc) or "")
    assert "0.5" in (
        _bench.check_sample(np.array([0.5, 0.7]), _bench.expected_distribution("fill_", 0.5)) or ""
    )


# --------------------------------------------------------------------------------------
# the command line, in process: arguments, optional dependencies, sections
# --------------------------------------------------------------------------------------


def test_help_lists_the_bench_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([])  # a command is required
    assert exit_info.value.code == 2


@needs_torch
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shapes", "4096x"], "is not a size"),
        (["--dtype", "int8"], "unknown dtype 'int8'"),
        (["--ops", "orthogonal"], "unknown op 'orthogonal'"),
        (["--repeat", "0"], "--repeat must be at least 1"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_torch_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["bench", "--shapes", "8x8"]) == 1
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "pip install" in err


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed: the plot itself is tested")
def test_plot_without_matplotlib_is_explained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["bench", "--shapes", "8x8", "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


@needs_torch
@pytest.mark.parametrize(
    ("flag", "module"),
    [("--model", "fastinit.bench.models"), ("--orthogonal", "fastinit.bench.orthogonal")],
)
def test_missing_section_is_explained(
    flag: str, module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if that module were not written yet
    assert main(["bench", flag]) == 1
    captured = capsys.readouterr()
    assert f"({module}.run_" in captured.err and "nothing measured" in captured.err
    assert "fastinit bench: fills" not in captured.out  # the fill table does not run


@needs_torch
def test_section_gets_the_keywords_it_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def run_model_bench(*, dtypes: list[str], threads: int, out: Any) -> dict[str, Any]:
        calls.append({"dtypes": dtypes, "threads": threads})
        print("model table", file=out)
        return {"speedup": 9.5}

    fake = types.ModuleType("fastinit.bench.models")
    fake.run_model_bench = run_model_bench  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fastinit.bench.models", fake)
    out = tmp_path / "out.json"
    assert (
        main(["bench", "--model", "--dtype", "bfloat16", "--threads", "1", "--json", str(out)]) == 0
    )
    assert calls == [{"dtypes": ["bfloat16"], "threads": 1}]
    assert "model table" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"model": {"speedup": 9.5}}


# --------------------------------------------------------------------------------------
# end to end, in a subprocess
# --------------------------------------------------------------------------------------


@needs_torch
def test_bench_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_cli(
        "bench",
        "--shapes",
        "64x64,2^10,1e15",
        "--repeat",
        "2",
        "--threads",
        "1",
        "--torch-numel",
        "1000",
        "--json",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    text = proc.stdout
    for line_start in (
        "machine:",
        "load:",
        "date:",
        "versions:",
        "threads:   1",
        "timing:",
        "reference:",
    ):
        assert any(line.startswith(line_start) for line in text.splitlines()), line_start
    assert "fastinit ISA:" in text or "fastinit.config()" in text
    assert "first 1,000 elements" in text and "~" in text  # the torch peers were scaled
    assert "skipped 1e15 float32: needs" in text and "skipped 1e15 bfloat16: needs" in text
    assert "PROBLEM" not in text

    report = json.loads(out.read_text())
    rows = report["rows"]
    ops = ("uniform_", "normal_", "trunc_normal_")
    expected = {
        (label, dtype, op, impl)
        for label in ("64x64", "2^10")
        for dtype in ("float32", "bfloat16")
        for op, impl in [("fill_", "fill")]
        + [(op, impl) for op in ops for impl in ("fastinit", "torch")]
    }
    assert {(r["label"], r["dtype"], r["op"], r["impl"]) for r in rows} == expected
    assert len(rows) == len(expected)
    for row in rows:
        assert row["problem"] is None
        assert row["time_s"] > 0 and row["gb_per_s"] > 0
        assert row["bytes"] == row["numel"] * (4 if row["dtype"] == "float32" else 2)
        if row["impl"] == "fill":
            assert row["pct_fill_bandwidth"] == pytest.approx(100.0)
            assert row["speedup_vs_torch"] is None
        else:
            assert row["speedup_vs_torch"] > 0
            assert len(row["times_s"]) == (2 if row["impl"] == "fastinit" else 1)
        if row["impl"] == "torch":
            assert row["scaled"] and row["measured_numel"] == 1000
            assert row["speedup_vs_torch"] == pytest.approx(1.0)
        # every row of the table shows its figures
        assert f"{row['gb_per_s']:.1f}" in text
    assert [s["label"] for s in report["skipped"]] == ["1e15", "1e15"]
    assert report["header"]["threads"] == 1
    if sys.platform.startswith("linux"):  # measured from /proc/stat
        other = report["header"]["other_load"]
        assert other["other_cpu_s"] >= 0 and 0 <= other["other_fraction"]
        assert "other processes used" in text
    assert report["options"]["repeat"] == 2


@needs_torch
def test_bench_markdown_subset(tmp_path: Path) -> None:
    proc = run_cli(
        "bench", "--shapes", "32x32,16", "--dtype", "float32", "--ops", "normal", "--repeat", "1",
        "--format", "markdown", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    table = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("|")]
    assert [c.strip() for c in table[0]] == [
        "shape", "dtype", "op", "fastinit", "torch.nn.init", "speed-up", "GB/s", "% fill BW",
    ]  # fmt: skip
    rows = [[c.strip() for c in cells] for cells in table[2:]]
    assert [row[:3] for row in rows] == [
        ["32x32", "float32", "fill_ (reference)"],
        ["32x32", "float32", "normal_"],
        ["16", "float32", "fill_ (reference)"],
        ["16", "float32", "normal_"],
    ]
    for row in rows:
        assert row[3].endswith("s") and row[6] and row[7].endswith("%")
        if row[2] == "normal_":  # torch's time and the speed-up sit in the same row
            assert row[4].endswith("s") and row[5].endswith("x")


@needs_torch
@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the plot extra) is not installed")
def test_bench_plot(tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    proc = run_cli(
        "bench",
        "--shapes",
        "32x32",
        "--repeat",
        "1",
        "--plot",
        str(png),
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_torch
def test_section_problems_fail_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("fastinit.bench.orthogonal")
    fake.run_orthogonal_bench = lambda **kwargs: [{"shape": [4, 4], "problem": "not orthogonal"}]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fastinit.bench.orthogonal", fake)
    assert main(["bench", "--orthogonal", "--threads", "1"]) == 1


def test_the_cpu_is_named_with_its_family_and_model() -> None:
    from fastinit.bench import fills

    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\n"
    x86 += "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 99\n"
    assert fills._cpu_model(x86) == "AMD EPYC (family 23, model 49)"
    arm = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    assert fills._cpu_model(arm).endswith("(implementer 0x41, part 0xd40)")
    assert fills._cpu_model("") != ""
