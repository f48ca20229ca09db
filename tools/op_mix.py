#!/usr/bin/env python3
"""Vector operations per element of the AVX2 and AVX-512 kernels, and the AVX2 / AVX-512 time
ratio they imply on each kind of core (tools/kernel_counts.sh runs this).

AVX2: executed counts (valgrind --tool=callgrind --dump-instr=yes on kernel_count, the
difference of 3 and 1 fills, so setup cancels), of all instructions and of the vector ALU ones,
which follow the generated Philox pipeline and the transforms' branches as they run. AVX-512:
valgrind cannot run it and this machine may lack it, so the count is static and approximate: the
instructions between the group loop's back-edge and its target (the loop with the most vpmuludq,
64 elements per iteration). That span can hold out-of-line code of other paths (a clamp, a store
variant) and miss hot code the compiler placed outside it: for float32 uniform_ the spans with
the same multiplies hold 2.2-2.7 operations per element (the shortest, reported, 2.55).
trunc_normal_'s tail branches leave the span, so its count is the common path. A cross-check:
AVX-512 Philox (6 operations per round of eight blocks, about 1.9 per element) plus half the
AVX2 transforms' operations (the same C++ on 16-lane values, one 512-bit operation where AVX2
takes two) comes within 2-5% of each count but float32 uniform_'s (2.1, against the span's
2.55).

"Vector ALU" counts every vector instruction but moves, loads, stores and broadcasts (those use
the load/store pipes). The implied ratios assume throughput-bound code that keeps every vector
pipe busy: Zen 5 issues a 512-bit operation at the rate of a 256-bit one (ratio = the op-count
ratio), Intel's server cores issue 256-bit operations on three ports and 512-bit ones on two
(x 2/3), Zen 4 splits a 512-bit operation into two 256-bit halves (x 1/2). Bounds, not
measurements.

Usage: tools/op_mix.py KERNEL_COUNT_BINARY AVX512_OBJECT
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

N = 65536
CASES = [(op, dt) for op in ("uniform", "normal", "trunc_normal") for dt in ("f32", "bf16")]
DIST = {"uniform": 0, "normal": 1, "trunc_normal": 2}
DTYPE = {"f32": 0, "bf16": 3}
# Data moves, loads, stores and broadcasts; vmovmskps, vpmovzx* and the like are ALU operations.
NOT_ALU = re.compile(
    r"v(p?broadcast\w*|zeroupper|mov(aps|apd|ups|upd|dqa\w*|dqu\w*|d|q|ss|sd|[lh]p[sd]|nt\w*))$"
)


def disassembly(path: str) -> str:
    return subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True, check=True
    ).stdout


def instructions(text: str) -> list[tuple[int, str, str]]:
    out = []
    for line in text.split("\n"):
        m = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)", line)
        if m:
            out.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def vector_alu(mnemonics: collections.Counter[str]) -> int:
    return sum(n for k, n in mnemonics.items() if k.startswith("v") and not NOT_ALU.match(k))


def parse_callgrind(text: str) -> collections.Counter[int]:
    """Executed count per instruction address from callgrind's --dump-instr=yes output: cost
    lines "position line count" with absolute (0x...), relative (+N, -N) or repeated (*)
    positions; a calls= line is followed by the call's inclusive cost, which is skipped."""
    # One event (Ir), two positions (instr line): the cost lines parsed below.
    if not (
        re.search(r"^events: Ir$", text, re.M) and re.search(r"^positions: instr line$", text, re.M)
    ):
        raise ValueError("unexpected callgrind output format")
    counts: collections.Counter[int] = collections.Counter()
    addr, skip = 0, False
    for line in text.split("\n"):
        if line.startswith(("calls=", "jump=", "jcnd=")):
            skip = line.startswith("calls=")  # the next line is the call's inclusive cost
            continue
        m = re.match(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+\S+\s+(\d+)$", line)
        if not m:
            continue
        pos = m.group(1)
        if pos.startswith("0x"):
            addr = int(pos, 16)
        elif pos != "*":
            addr += int(pos)
        if skip:
            skip = False
        else:
            counts[addr] += int(m.group(2))
    return counts


def executed(binary: str, case: tuple[str, str], reps: int) -> collections.Counter[int]:
    """Executed count per instruction address of `kernel_count avx2 OP DTYPE N reps`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg"
        callgrind = ["valgrind", "--tool=callgrind", "--dump-instr=yes"]
        subprocess.run(
            [*callgrind, f"--callgrind-out-file={out}", binary, "avx2", *case, str(N), str(reps)],
            capture_output=True,
            check=True,
        )
        return parse_callgrind(out.read_text())


def avx2_counts(binary: str, case: tuple[str, str], names: dict[int, str]) -> tuple[float, float]:
    """(instructions, vector ALU operations) per element of the AVX2 kernel: the difference
    of 3 and 1 fills of N elements, so setup cancels."""
    one, three = executed(binary, case, 1), executed(binary, case, 3)
    mix: collections.Counter[str] = collections.Counter()
    for addr in three:
        if three[addr] > one[addr]:
            mix[names.get(addr, "?")] += three[addr] - one[addr]
    total = sum(three.values()) - sum(one.values())
    return total / (2 * N), vector_alu(mix) / (2 * N)


def avx512_alu(text: str, case: tuple[str, str]) -> float:
    """Vector ALU operations per element of the shortest span with the group's 38 vpmuludq
    (two sets of eight blocks: 64 elements)."""
    op, dt = case
    pat = re.compile(
        rf"fill_range_typedINS0_8VecLanesELNS_4DistE{DIST[op]}ELNS_5DTypeE{DTYPE[dt]}E"
    )
    for func in re.split(r"\n(?=[0-9a-f]+ <)", text):
        if not pat.search(func.split("\n", 1)[0]):
            continue
        ins = instructions(func)
        index = {a: i for i, (a, _, _) in enumerate(ins)}
        spans = []
        for i, (a, name, arg) in enumerate(ins):
            m = re.match(r"([0-9a-f]+)", arg)
            if name.startswith("j") and m and int(m.group(1), 16) < a:
                body = [x[1] for x in ins[index.get(int(m.group(1), 16), i) : i + 1]]
                if body.count("vpmuludq") == 38:
                    spans.append((len(body), vector_alu(collections.Counter(body)) / 64))
        if spans:
            return min(spans)[1]
    raise SystemExit(f"op_mix: no 64-element AVX-512 group loop found for {op} {dt}")


def main() -> None:
    binary, avx512_object = sys.argv[1:3]
    names = {a: name for a, name, _ in instructions(disassembly(binary))}
    text512 = disassembly(avx512_object)
    print("per element: AVX2 instructions and vector ALU operations (executed), AVX-512 vector ALU")
    print("operations (static, approximate: the shortest loop span with the group's multiplies),")
    print("their ratio (the time ratio it implies on Zen 5), and the ratio implied on Intel server")
    print("cores and on Zen 4 (if every operation could issue on any vector port)")
    for case in CASES:
        ins2, a2 = avx2_counts(binary, case, names)
        a5 = avx512_alu(text512, case)
        r = a2 / a5
        print(
            f"{case[0]:>13} {case[1]:<4}  AVX2 {ins2:5.2f} ins {a2:5.2f} ALU  AVX-512 {a5:4.2f}"
            f"  ratio {r:4.2f}x  Intel {r * 2 / 3:4.2f}x  Zen 4 {r / 2:4.2f}x"
        )


if __name__ == "__main__":
    main()
