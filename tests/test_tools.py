"""The measurement tools' parsing (tools/op_mix.py): what they count must be what ran."""

from __future__ import annotations

import collections
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _op_mix() -> ModuleType:
    spec = importlib.util.spec_from_file_location("op_mix", ROOT / "tools/op_mix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CALLGRIND = """version: 1
positions: instr line
events: Ir
ob=(1) kernel_count
fn=(1) f
0x401000 10 5
+4 * 5
calls=2 0x402000 20
* * 100
+3 11 5
-7 * 2
jump=1 +2 *
fn=(2) g
0x402000 20 40
"""


def test_callgrind_positions_and_calls() -> None:
    counts = _op_mix().parse_callgrind(CALLGRIND)
    # +4 and -7 are relative to the previous position; the call's inclusive cost (100) is not
    # an instruction's own count; g's instruction counts once.
    assert counts == {0x401000: 7, 0x401004: 5, 0x401007: 5, 0x402000: 40}


def test_callgrind_other_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        _op_mix().parse_callgrind(CALLGRIND.replace("events: Ir", "events: Ir Dr"))


def test_vector_alu_counts_operations_not_moves() -> None:
    mix = collections.Counter(
        {
            "vpxor": 3,
            "vpmuludq": 2,
            "vmovmskps": 1,
            "vpmovzxbd": 1,
            "vmovaps": 5,
            "vmovdqu": 4,
            "vpbroadcastd": 2,
            "vbroadcastss": 2,
            "vmovd": 1,
            "vzeroupper": 1,
            "add": 7,
        }
    )
    assert _op_mix().vector_alu(mix) == 3 + 2 + 1 + 1


def test_avx512_group_span_is_the_shortest_with_the_group_multiplies() -> None:
    def lines(start: int, names: list[str]) -> list[str]:
        return [f"  {start + i:x}:\t{n} %zmm0,%zmm1,%zmm2" for i, n in enumerate(names)]

    group = ["vpmuludq"] * 38 + ["vpshufd"] * 10 + ["vmovaps"] * 3
    body = [*lines(0x1000, group), f"  {0x1000 + len(group):x}:\tjne 1000 <f+0x0>"]
    outer = [*lines(0x2000, ["vpaddd"] * 5), *body, f"  {0x2000 + 5 + 100:x}:\tjmp 2000 <f>"]
    name = "fill_range_typedINS0_8VecLanesELNS_4DistE0ELNS_5DTypeE0E"
    text = f"0000000000001000 <_ZN{name}v>:\n" + "\n".join(outer) + "\n"
    # The inner span: 38 multiplies and 10 shuffles per 64 elements; moves do not count.
    assert _op_mix().avx512_alu(text, ("uniform", "f32")) == 48 / 64
