#!/usr/bin/env python3
"""Generate csrc/include/fastinit/philox_avx2_asm.inc: AVX2 Philox rounds for three staggered sets.

Why generated assembly: AVX2 Philox is bound by its dependency chains (multiply -> shuffle ->
xor, about 6 cycles a round on Zen 2) and by the single port that runs vpmuludq there (Zen 3
runs two, and is bound by the total count of vector operations instead). Three sets of
four blocks in flight keep that port busy, but they take 12 of the 16 ymm registers, and GCC
spilled every C++ formulation of three sets (and of a staggered two-set loop) to the stack. A
batch of sets that starts and ends together also leaves the port idle while its first and last
rounds run: the out-of-order window does not reach the next batch's first rounds. So the three
sets are staggered (at any tick they are at different rounds), and a set that finishes its tenth
round is written out and restarted with the next four blocks at once, in the same instruction
stream: the port sees a steady supply of independent multiplies.

The generated code runs PERIODS periods of nine ticks; in each tick every set does one of
rounds 1 to 9, so each set finishes once per period and SETS = 3 * PERIODS sets (four blocks
each) come out per call, in block order. Round 0 runs inside the restart: its inputs besides the
block counter are the stream words, which every block shares, so the parts of its output that
depend on them only are computed once per fill (KeySchedule, kernel_cpu.hpp) and the round costs
a multiply, two shuffles and two xors. Register roles rotate: a round leaves word k of a set in
the register that held word k + 1 (mod 4), so no move is needed; the generator tracks each set's
rotation, and an even PERIODS brings every word back to its register at the end of a call.

Operands of the asm statement (kernel_cpu.hpp, PhiloxAhead::refill):
  s00..s23   "+x": the twelve state registers (set j, register i)
  t0, t1     "=&x": scratch
  k          "r": KeySchedule::k, the ten rounds' keys as 20 broadcast ymm (64 bytes per round)
  ctx        "r": 224 bytes, 4 x u64 each: the next counter (block indices, in lane order), its
             increment, A = hi(M1 * stream_lo) ^ k0, B = lo(M1 * stream_lo), M0, M1 and
             C = stream_hi ^ k1 (k0, k1: the key's words, round 0's keys)
  out        "r": SETS x 4 ymm, set i's word k at byte 128 i + 32 k

The text is AT&T syntax (GCC's default; a build with -masm=intel would need {att|intel}
alternatives) and uses vmovdqa on 32-byte aligned members of a stack object (GCC realigns the
stack for them on x86-64 Linux).

Usage: tools/gen_philox_avx2.py [--check]   (--check: exit 1 if the checked-in file differs)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Set j has done OFFSETS[j] rounds (1..9) when a call starts. Spread over the nine ticks of a
# period, so the sets finish at ticks 2, 5 and 8 (measured on Zen 2: the spread matters little).
OFFSETS = (1, 7, 4)
PERIODS = 4  # even: each set turns its registers 10 * PERIODS times per call (see body)
SETS = 3 * PERIODS
OUT = Path(__file__).resolve().parent.parent / "csrc/include/fastinit/philox_avx2_asm.inc"


def round_at(j: int, t: int) -> int:
    """The round (1..9) set j runs at tick t."""
    return 1 + (OFFSETS[j] - 1 + t) % 9


def finish_tick(j: int) -> int:
    return (9 - OFFSETS[j]) % 9


def body() -> list[str]:
    assert all(1 <= off <= 9 for off in OFFSETS) and PERIODS % 2 == 0
    lines: list[str] = []
    written = 0
    # rot[j]: rounds set j has run in this call, mod 4. A round leaves word k in the register
    # that held word k + 1, so word k of set j is in register s{j}{(k + rot[j]) % 4}.
    rot = [0, 0, 0]

    def reg(j: int, k: int, ahead: int = 0) -> str:
        return f"%[s{j}{(k + rot[j] + ahead) % 4}]"

    for t in range(9 * PERIODS):
        rnd = [round_at(j, t) for j in range(3)]
        lines.append(f"# tick {t}: rounds {rnd[0]} {rnd[1]} {rnd[2]}")
        # The multiplies first (they start the critical chains), then the key xors of the words
        # that only get xored (off the chains), then shuffle and xor of the products.
        for j in range(3):
            lines.append(f"vpmuludq 160(%[ctx]), {reg(j, 2)}, {reg(j, 2)}")
            lines.append(f"vpmuludq 128(%[ctx]), {reg(j, 0)}, {reg(j, 0)}")
        for j in range(3):
            lines.append(f"vpxor {64 * rnd[j]}(%[k]), {reg(j, 1)}, {reg(j, 1)}")
            lines.append(f"vpxor {64 * rnd[j] + 32}(%[k]), {reg(j, 3)}, {reg(j, 3)}")
        for j in range(3):
            lines.append(f"vpshufd $0xf5, {reg(j, 2)}, %[t0]")
            lines.append(f"vpxor %[t0], {reg(j, 1)}, {reg(j, 1)}")
            lines.append(f"vpshufd $0xf5, {reg(j, 0)}, %[t1]")
            lines.append(f"vpxor %[t1], {reg(j, 3)}, {reg(j, 3)}")
        rot = [r + 1 for r in rot]
        # A set after its tenth round: store its words, then start the next four blocks with
        # their first round done here. Its inputs other than the counter are the stream words,
        # the same for every block, so its constant parts come precomputed in ctx: word 0 is
        # (block >> 32) ^ A, word 1 is B, word 2 is hi(M0 * block) ^ C and word 3 lo(M0 * block).
        # Six vector operations instead of the full round's eight and the restart's two.
        for j in sorted(range(3), key=finish_tick):
            if rnd[j] != 9:
                continue
            for k in range(4):
                lines.append(f"vmovdqa {reg(j, k)}, {128 * written + 32 * k}(%[out])")
            written += 1
            lines.append(f"vmovdqa (%[ctx]), {reg(j, 3, 1)}")
            lines.append(f"vpaddq 32(%[ctx]), {reg(j, 3, 1)}, %[t0]")
            lines.append("vmovdqa %[t0], (%[ctx])")
            lines.append(f"vpshufd $0xf5, {reg(j, 3, 1)}, {reg(j, 0, 1)}")
            lines.append(f"vpxor 64(%[ctx]), {reg(j, 0, 1)}, {reg(j, 0, 1)}")
            lines.append(f"vpmuludq 128(%[ctx]), {reg(j, 3, 1)}, {reg(j, 3, 1)}")
            lines.append(f"vpshufd $0xf5, {reg(j, 3, 1)}, {reg(j, 2, 1)}")
            lines.append(f"vpxor 192(%[ctx]), {reg(j, 2, 1)}, {reg(j, 2, 1)}")
            lines.append(f"vmovdqa 96(%[ctx]), {reg(j, 1, 1)}")
            rot[j] += 1
    # Each set runs 9 * PERIODS rounds in ticks and PERIODS first rounds at its restarts: with
    # PERIODS even that is a multiple of 4, so every word is back in its register at the end.
    assert written == SETS and all(r % 4 == 0 for r in rot)
    return lines


def render() -> str:
    order = sorted(range(3), key=finish_tick)
    out = [
        "// Generated by tools/gen_philox_avx2.py; do not edit (tests/test_generated.py checks",
        "// that it matches the generator). AVX2 Philox4x32-10 rounds on three staggered sets of",
        "// four blocks: see the generator's docstring for the operands and the schedule.",
        "#pragma once",
        "",
        f"#define FASTINIT_PHILOX_AVX2_SETS {SETS}",
        "// Rounds set j (registers s{j}0..s{j}3) has done when a call starts.",
        f"#define FASTINIT_PHILOX_AVX2_OFFSETS {{{', '.join(map(str, OFFSETS))}}}",
        "// ORDER[i]: the set that finishes i-th in each period, so it holds blocks 4i..4i+3 of",
        "// the period's twelve.",
        f"#define FASTINIT_PHILOX_AVX2_ORDER {{{', '.join(map(str, order))}}}",
        "#define FASTINIT_PHILOX_AVX2_ASM \\",
    ]
    lines = body()
    for i, line in enumerate(lines):
        end = "" if i == len(lines) - 1 else " \\"
        out.append(f'  "{line}\\n\\t"{end}')
    return "\n".join(out) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run tools/gen_philox_avx2.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
