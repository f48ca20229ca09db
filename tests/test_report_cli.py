"""``python -m fastinit report``: the demo table and PNG, and ``--model``."""

from __future__ import annotations

import io
import textwrap

import pytest

torch = pytest.importorskip("torch")

from fastinit.__main__ import build_parser  # noqa: E402

pytestmark = pytest.mark.torch

PNG = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str]) -> tuple[int, str]:
    args = build_parser().parse_args(["report", *argv])
    out = io.StringIO()
    return args.handler(args, out=out), out.getvalue()


def test_demo_prints_table_and_writes_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    png = tmp_path / "demo.png"
    rc, text = _run(["--depth", "12", "--width", "32", "--batch", "64", "--plot", str(png)])
    assert rc == 0
    lines = [line.split() for line in text.splitlines()]
    rows = [r for r in lines if r and r[0] in ("tanh", "relu")]
    assert len(rows) == 10
    verdicts = {(r[0], r[1]): (r[-5], r[-1]) for r in rows if r[1] != "torch"}
    # ReLU under Xavier (gain 1) loses half the variance per layer: 12 layers, 1/64.
    assert verdicts[("relu", "xavier_normal_")][0] == "vanishing"
    assert verdicts[("relu", "lsuv_")][0] == "stable"
    assert "after lsuv_" in text and f"wrote {png}" in text
    assert png.read_bytes()[:8] == PNG


def test_demo_layers_markdown_no_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc, text = _run(
        ["--depth", "3", "--width", "8", "--batch", "16", "--no-plot", "--markdown", "--layers"]
    )
    assert rc == 0
    assert "| activation | init |" in text
    assert "wrote" not in text


def test_model_option(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    (tmp_path / "my_signal_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
                return model, torch.randn(16, 8)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    png = tmp_path / "model.png"
    rc, text = _run(
        ["--model", "my_signal_model:build", "--lsuv", "--time", "1", "--plot", str(png)]
    )
    assert rc == 0
    assert "as built" in text and "after lsuv_" in text
    assert "signal_report / forward+backward" in text
    assert png.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no_colon"], "MODULE:CALLABLE"),
        (["--model", "fastinit_no_such_module:build", "--no-plot"], "cannot load"),
        (["--lsuv", "--no-plot"], "need --model"),
        (["--depth", "0", "--no-plot"], "--depth"),
    ],
)
def test_bad_arguments(argv, message, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, _ = _run(argv)
    assert rc == 2
    assert message in capsys.readouterr().err
