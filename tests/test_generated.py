"""Generated sources stay what their generators write: csrc/include/fastinit/philox_avx2_asm.inc
(the AVX2 Philox rounds, tools/gen_philox_avx2.py). The kernels' bits are checked elsewhere
(tests/test_invariance.py, tests/native/kernel_equality.cpp); this only catches a hand edit
of the generated file or a generator change that was not re-run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_philox_avx2", ROOT / "tools/gen_philox_avx2.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_philox_avx2_asm_is_what_the_generator_writes(gen: ModuleType) -> None:
    assert gen.OUT.read_text() == gen.render()


def test_the_check_reports_a_stale_file(
    gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "philox_avx2_asm.inc"
    stale.write_text(gen.render().replace("vpmuludq", "vpmulld", 1))
    monkeypatch.setattr(gen, "OUT", stale)
    monkeypatch.setattr(sys, "argv", ["gen_philox_avx2.py", "--check"])
    assert gen.main() == 1
    stale.write_text(gen.render())
    assert gen.main() == 0


def test_every_set_finishes_once_per_period_in_block_order(gen: ModuleType) -> None:
    # The schedule the C++ side relies on (PhiloxAhead primes the sets in this order).
    ticks = sorted(gen.finish_tick(j) for j in range(3))
    assert len(set(ticks)) == 3 and gen.SETS % 4 == 0 and (10 * gen.PERIODS) % 4 == 0
    assert all(1 <= off <= 9 for off in gen.OFFSETS)
    body = "\n".join(gen.body())
    # Rounds 1..9 take two multiplies in each tick; round 0, in the restart, takes one.
    assert body.count("vpmuludq") == 3 * (2 * 9 + 1) * gen.PERIODS
    assert body.count("(%[out])") == 4 * gen.SETS
    # Round 0 reads no key from the schedule (it is folded into ctx), rounds 1..9 read theirs.
    for r in range(1, 10):
        assert body.count(f"vpxor {64 * r}(%[k])") == 3 * gen.PERIODS
    assert "vpxor 0(%[k])" not in body
