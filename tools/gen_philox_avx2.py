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

The generated code runs PERIODS periods of eight ticks; in each tick every set does one of
rounds 2 to 9, so each set finishes once per period and SETS = 3 * PERIODS sets (four blocks
each) come out per call, in block order. Rounds 0 and 1 run in the restart. Round 0's inputs
besides the block counter are the stream words, which every block shares, so the parts of its
output that depend on them only are computed once per fill (KeySchedule, kernel_cpu.hpp). When
all the blocks a call restarts share the counter's high word h (every call but one in 2^26), its
word 0 is h ^ A for all of them, and so is round 1's multiply of it: the SAME_HI variant then
runs rounds 0 and 1 in seven operations from constants of h, and round 2 in seven; the ANY
variant computes both rounds in full (fourteen). PhiloxAhead::refill picks one per call; both
leave the sets in the same registers at the end of a call, so they mix freely. Each has an
_ORDERED form for float32 uniform_, whose transform treats every word alike: its tenth round
leaves a set's sixteen words in memory order in two registers (final_round_ordered), so no
packing or transpose follows. Register roles rotate: a round leaves word k of a set in the
register that held word k + 1 (mod 4), so no move is needed; the generator tracks each set's
rotation, and an even PERIODS brings every word back to its register at the end of a call.

Operands of the asm statement (kernel_cpu.hpp, PhiloxAhead::refill):
  s00..s23   "+x": the twelve state registers (set j, register i)
  t0, t1     "=&x": scratch
  p          "+x": SAME_HI: lo(block) * M0, 64 bits per lane, for the next restart
  k          "r": KeySchedule::k, the ten rounds' keys as 20 broadcast ymm (64 bytes per round)
  ctx        "r": the members at the offsets below (4 x u64 each, one 32-bit value per 64-bit
             lane unless stated), then the sets written out, set i's word k at byte
             OUT + 128 i + 32 k (_ORDERED: set i's two registers at OUT + 64 i) (one base
             register: an asm statement takes at most 30 operands)
    CTR      ANY: the next counter (block indices, in lane order); CTR_INC its increment, 4
    A, B, C  hi(M1 * stream_lo) ^ k0, lo(M1 * stream_lo), stream_hi ^ k1 (round 0's keys)
    M0, M1   the multipliers
    B1       B ^ k0 of round 1
    D, E2    SAME_HI: hi(M0 * X0) ^ k1 of round 1 and lo(M0 * X0) ^ k1 of round 2, X0 = h ^ A
    P_INC    SAME_HI: 4 * M0 as 64 bits, p's step

The text is AT&T syntax (GCC's default; a build with -masm=intel would need {att|intel}
alternatives) and uses vmovdqa on 32-byte aligned members of a stack object (GCC realigns the
stack for them on x86-64 Linux).

Usage: tools/gen_philox_avx2.py [--check]   (--check: exit 1 if the checked-in file differs)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Set j has done OFFSETS[j] rounds (rounds 0 .. OFFSETS[j] - 1) when a call starts. At least
# three, so no set is between its restart and its round 2 at a call boundary (the two variants
# keep round 1's fourth word differently, below), and spread over the eight ticks of a period:
# the sets finish at ticks 0, 3 and 6.
OFFSETS = (9, 6, 3)
PERIODS = 4  # even: each set turns its registers 10 * PERIODS times per call (see body)
SETS = 3 * PERIODS
TICKS = 8  # a period: rounds 2 to 9, one per tick; rounds 0 and 1 run in the restart
GENERATED = Path(__file__).resolve().parent.parent / "csrc/include/fastinit/philox_avx2_asm.inc"

# ctx, byte offsets (4 x u64 each; PhiloxAhead fills it).
CTR, CTR_INC, A, B, M0, M1, C, B1, D, E2, P_INC = (32 * i for i in range(11))
CTX_BYTES = 32 * 11
OUT = CTX_BYTES  # the sets written out follow ctx: set i's word k at byte OUT + 128 i + 32 k


def round_at(j: int, t: int) -> int:
    """The round (2..9) set j runs at tick t."""
    return 2 + (OFFSETS[j] - 2 + t) % TICKS


def finish_tick(j: int) -> int:
    return (9 - OFFSETS[j]) % TICKS


def body(same_hi: bool, ordered: bool = False) -> list[str]:
    """The instructions of one call. same_hi: every block the call restarts shares its counter's
    high word (the caller checks), which makes round 0's word 0 and so round 1's multiply of it
    the same for all of them: the restart then runs rounds 0 and 1 in 7 operations and round 2
    takes its fourth word from ctx (E2). Otherwise the restart runs both rounds in full.
    ordered: the tenth round writes each set's words in memory order (final_round_ordered)
    instead of one register per word."""
    assert all(3 <= off <= 9 for off in OFFSETS) and PERIODS % 2 == 0
    lines: list[str] = []
    written = 0
    # rot[j]: rounds set j has run in this call, mod 4. A round leaves word k in the register
    # that held word k + 1, so word k of set j is in register s{j}{(k + rot[j]) % 4}.
    rot = [0, 0, 0]

    def reg(j: int, k: int, ahead: int = 0) -> str:
        return f"%[s{j}{(k + rot[j] + ahead) % 4}]"

    def full_round(j: int, r: int, ahead: int = 0) -> list[str]:
        """Round r of set j, all four words in registers, `ahead` rounds past rot[j]; in the
        order a tick interleaves the sets' rounds: multiplies, key xors, shuffle-xor pairs."""
        w = [reg(j, k, ahead) for k in range(4)]
        return [
            f"vpmuludq {M1}(%[ctx]), {w[2]}, {w[2]}",
            f"vpmuludq {M0}(%[ctx]), {w[0]}, {w[0]}",
            f"vpxor {64 * r}(%[k]), {w[1]}, {w[1]}",
            f"vpxor {64 * r + 32}(%[k]), {w[3]}, {w[3]}",
            f"vpshufd $0xf5, {w[2]}, %[t0]",
            f"vpxor %[t0], {w[1]}, {w[1]}",
            f"vpshufd $0xf5, {w[0]}, %[t1]",
            f"vpxor %[t1], {w[3]}, {w[3]}",
        ]

    def round2_same_hi(j: int) -> list[str]:
        """Round 2 after a same-hi restart: word 3 is lo(M0 * X0), the same for every block,
        so its xor with round 2's key comes precomputed (E2) and replaces the register."""
        ops = full_round(j, 2)
        ops[3] = ""  # no key xor of word 3
        ops[7] = f"vpxor {E2}(%[ctx]), %[t1], {reg(j, 3)}"
        return ops

    def final_round_ordered(j: int) -> list[str]:
        """Round 9 of set j, its words left in memory order: [w0 w1] of each block as one 64-bit
        lane (swapping the product's halves puts lo(P), which is w1, in the upper half, and a
        blend keeps it beside w0), likewise [w2 w3], then a 64-bit unpack pair gives two
        blocks' four words per 128-bit half. With the blocks in lanes 0 2 1 3 (kTranspose32)
        that is blocks 0-1 in the register of word 0 and 2-3 in that of word 2, as float32
        elements lie in memory: 12 operations where the plain round, the packing and the 4x4
        transposes take 14 (8 of them shuffles against 4, and shuffles have two of Zen 3's four
        vector pipes)."""
        w = [reg(j, k) for k in range(4)]
        # The multiplies and key xors of the plain round, then its shuffle-xor pairs with the
        # halves swapped and blended, and the unpacks.
        return [
            *full_round(j, 9)[:4],
            f"vpshufd $0xb1, {w[2]}, %[t0]",
            f"vpxor %[t0], {w[1]}, {w[1]}",
            f"vpblendd $0xaa, %[t0], {w[1]}, {w[1]}",
            f"vpshufd $0xb1, {w[0]}, %[t1]",
            f"vpxor %[t1], {w[3]}, {w[3]}",
            f"vpblendd $0xaa, %[t1], {w[3]}, {w[3]}",
            f"vpunpcklqdq {w[3]}, {w[1]}, {w[0]}",
            f"vpunpckhqdq {w[3]}, {w[1]}, {w[2]}",
        ]

    def restart_same_hi(j: int) -> list[str]:
        """Rounds 0 and 1 of the next four blocks, whose counters share their high word h.
        %[p] holds lo(block) * M0 as 64 bits in each lane (round 0's only multiply), stepped by
        4 * M0 (P_INC) per restart. Round 0 gives word 0 = h ^ A (X0, the same for every block),
        word 1 = B, word 2 = hi(p) ^ C, word 3 = lo(p); round 1 then gives word 0 =
        hi(M1 * word 2) ^ B ^ k0' (B1: B and round 1's key), word 1 = lo(M1 * word 2), word 2 =
        lo(p) ^ hi(M0 * X0) ^ k1' (D) and word 3 = lo(M0 * X0), which round 2 reads from E2.
        Seven operations instead of fourteen."""
        w0, w1, w2 = (reg(j, k, 2) for k in range(3))
        return [
            f"vpshufd $0xf5, %[p], {w2}",
            f"vpxor {C}(%[ctx]), {w2}, {w2}",
            f"vpmuludq {M1}(%[ctx]), {w2}, {w1}",
            f"vpshufd $0xf5, {w1}, {w0}",
            f"vpxor {B1}(%[ctx]), {w0}, {w0}",
            f"vpxor {D}(%[ctx]), %[p], {w2}",
            f"vpaddq {P_INC}(%[ctx]), %[p], %[p]",
        ]

    def restart_any(j: int) -> list[str]:
        """Rounds 0 and 1 of the next four blocks, any counters: round 0 from the counter and the
        precomputed A, B, C (6 operations), then round 1 in full."""
        lines = [
            f"vmovdqa {CTR}(%[ctx]), {reg(j, 3, 1)}",
            f"vpaddq {CTR_INC}(%[ctx]), {reg(j, 3, 1)}, %[t0]",
            f"vmovdqa %[t0], {CTR}(%[ctx])",
            f"vpshufd $0xf5, {reg(j, 3, 1)}, {reg(j, 0, 1)}",
            f"vpxor {A}(%[ctx]), {reg(j, 0, 1)}, {reg(j, 0, 1)}",
            f"vpmuludq {M0}(%[ctx]), {reg(j, 3, 1)}, {reg(j, 3, 1)}",
            f"vpshufd $0xf5, {reg(j, 3, 1)}, {reg(j, 2, 1)}",
            f"vpxor {C}(%[ctx]), {reg(j, 2, 1)}, {reg(j, 2, 1)}",
            f"vmovdqa {B}(%[ctx]), {reg(j, 1, 1)}",
        ]
        return lines + full_round(j, 1, ahead=1)

    for t in range(TICKS * PERIODS):
        rnd = [round_at(j, t) for j in range(3)]
        lines.append(f"# tick {t}: rounds {rnd[0]} {rnd[1]} {rnd[2]}")
        # The multiplies first (they start the critical chains), then the key xors of the words
        # that only get xored (off the chains), then shuffle and xor of the products.
        rounds = [
            round2_same_hi(j)
            if same_hi and rnd[j] == 2
            else final_round_ordered(j)
            if ordered and rnd[j] == 9
            else full_round(j, rnd[j])
            for j in range(3)
        ]
        for part in (slice(0, 2), slice(2, 4), slice(4, None)):
            lines += [ins for ops in rounds for ins in ops[part] if ins]
        rot = [r + 1 for r in rot]
        for j in sorted(range(3), key=finish_tick):
            if rnd[j] != 9:
                continue
            if ordered:  # (the round left them in the registers of words 3 and 1, rot[j] on)
                for i, k in enumerate((3, 1)):
                    lines.append(f"vmovdqa {reg(j, k)}, {OUT + 64 * written + 32 * i}(%[ctx])")
            else:
                for k in range(4):
                    lines.append(f"vmovdqa {reg(j, k)}, {OUT + 128 * written + 32 * k}(%[ctx])")
            written += 1
            lines += restart_same_hi(j) if same_hi else restart_any(j)
            rot[j] += 2
    # Each set runs 8 * PERIODS rounds in ticks and 2 * PERIODS in its restarts: with PERIODS
    # even that is a multiple of 4, so every word is back in its register at the end.
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
        "// ctx: byte offsets of its members (4 x u64 each) and its size.",
    ]
    names = ("CTR", "CTR_INC", "A", "B", "M0", "M1", "C", "B1", "D", "E2", "P_INC")
    out += [f"#define FASTINIT_PHILOX_AVX2_CTX_{n} {globals()[n]}" for n in names]
    out += [f"#define FASTINIT_PHILOX_AVX2_CTX_BYTES {CTX_BYTES}"]
    variants = [
        (f"{h}{o}", same_hi, ordered)
        for h, same_hi in (("SAME_HI", True), ("ANY", False))
        for o, ordered in (("", False), ("_ORDERED", True))
    ]
    for name, same_hi, ordered in variants:
        out.append(f"#define FASTINIT_PHILOX_AVX2_ASM_{name} \\")
        lines = body(same_hi, ordered)
        for i, line in enumerate(lines):
            end = "" if i == len(lines) - 1 else " \\"
            out.append(f'  "{line}\\n\\t"{end}')
    return "\n".join(out) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not GENERATED.exists() or GENERATED.read_text() != text:
            print(f"{GENERATED} is out of date: run tools/gen_philox_avx2.py", file=sys.stderr)
            return 1
        return 0
    GENERATED.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
