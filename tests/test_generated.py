"""Generated sources stay what their generators write: csrc/include/fastinit/philox_avx2_asm.inc
(the AVX2 Philox rounds, tools/gen_philox_avx2.py). The kernels' bits are checked elsewhere
(tests/test_invariance.py, tests/native/kernel_equality.cpp); this only catches a hand edit
of the generated file or a generator change that was not re-run."""

from __future__ import annotations

import importlib.util
import random
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fastinit

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
    assert gen.GENERATED.read_text() == gen.render()


def test_the_check_reports_a_stale_file(
    gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "philox_avx2_asm.inc"
    stale.write_text(gen.render().replace("vpmuludq", "vpmulld", 1))
    monkeypatch.setattr(gen, "GENERATED", stale)
    monkeypatch.setattr(sys, "argv", ["gen_philox_avx2.py", "--check"])
    assert gen.main() == 1
    stale.write_text(gen.render())
    assert gen.main() == 0


@pytest.mark.parametrize("ordered", [False, True], ids=["words", "ordered"])
@pytest.mark.parametrize("same_hi", [True, False], ids=["same-hi", "any"])
def test_every_set_finishes_once_per_period_in_block_order(
    gen: ModuleType, same_hi: bool, ordered: bool
) -> None:
    # The schedule the C++ side relies on (PhiloxAhead primes the sets in this order).
    ticks = sorted(gen.finish_tick(j) for j in range(3))
    assert len(set(ticks)) == 3 and gen.SETS % 4 == 0 and (10 * gen.PERIODS) % 4 == 0
    assert all(3 <= off <= 9 for off in gen.OFFSETS)
    body = "\n".join(gen.body(same_hi, ordered))
    # Rounds 2..9 take two multiplies in each tick; the restart takes one (same high word:
    # rounds 0 and 1 share the multiply of word 0) or three.
    per_set = 2 * 8 + (1 if same_hi else 3)
    assert body.count("vpmuludq") == 3 * per_set * gen.PERIODS
    assert body.count("vmovdqa %[s") == (2 if ordered else 4) * gen.SETS
    # Round 0's keys are folded into ctx (A, C); with a shared high word, round 1's (B1, D) and
    # round 2's k1 (E2) too. k[2 r] and k[2 r + 1] are round r's k0 and k1, 32 bytes each.
    if same_hi:
        read = {2 * r for r in range(2, 10)} | {2 * r + 1 for r in range(3, 10)}
    else:
        read = set(range(2, 20))
    for i in range(20):
        assert body.count(f"vpxor {32 * i}(%[k])") == (3 * gen.PERIODS if i in read else 0), i


# --- The generated assembly, executed: a small interpreter of its five instructions over four
#     64-bit lanes, primed as PhiloxAhead primes the sets, against fastinit.philox4x32 (checked
#     against the Philox authors' known answers in test_philox.py). The native harness checks
#     the same on an AVX2 CPU; this runs anywhere and catches a wrong ctx offset, key index,
#     register role or priming round in the generator itself.

_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1
Lanes = list[int]


def _hi(v: Lanes) -> Lanes:  # vpshufd $0xf5: each lane's high 32 bits into both halves
    return [(x >> 32) * 0x100000001 for x in v]


def _mul(a: Lanes, b: Lanes) -> Lanes:  # vpmuludq
    return [(x & _M32) * (y & _M32) for x, y in zip(a, b, strict=True)]


def _xor(a: Lanes, b: Lanes) -> Lanes:
    return [x ^ y for x, y in zip(a, b, strict=True)]


def _run_generated(
    gen: ModuleType,
    block: int,
    key: int,
    stream: int,
    lane_blocks: Lanes,
    refills: int,
    ordered: bool = False,
) -> tuple[list[tuple[int, tuple[int, ...]]], list[bool]]:
    """(block index, its four words) for every block the generated code writes out, in the
    order they lie in its output, and which variant each refill ran, choosing it and setting
    ctx up as PhiloxAhead::refill does."""
    k0, k1 = key & _M32, key >> 32
    keys: list[Lanes] = []
    for _ in range(10):
        keys += [[k0 * 0x100000001] * 4, [k1 * 0x100000001] * 4]
        k0, k1 = (k0 + _W0) & _M32, (k1 + _W1) & _M32
    p1 = _M1 * (stream & _M32)
    a = [((p1 >> 32) ^ key) & _M32] * 4
    b = [p1 & _M32] * 4
    c = [((stream >> 32) ^ (key >> 32)) & _M32] * 4
    m0, m1 = [_M0] * 4, [_M1] * 4

    def start(first: int) -> list[Lanes]:  # philox_start
        ctr = [(first + i) & _M64 for i in lane_blocks]
        p0 = _mul(ctr, m0)
        return [_xor(_hi(ctr), a), b, _xor(_hi(p0), c), p0]

    def round_(s: list[Lanes], r: int) -> list[Lanes]:  # philox_round
        q0, q1 = _mul(s[0], m0), _mul(s[2], m1)
        return [
            _xor(_xor(_hi(q1), s[1]), keys[2 * r]),
            q1,
            _xor(_xor(_hi(q0), s[3]), keys[2 * r + 1]),
            q0,
        ]

    # PhiloxAhead's constructor: the set that finishes i-th gets blocks block + 4i.
    order = sorted(range(3), key=gen.finish_tick)
    sets: list[list[Lanes]] = [[] for _ in range(3)]
    for i, j in enumerate(order):
        s = start(block + 4 * i)
        for r in range(1, gen.OFFSETS[j]):
            s = round_(s, r)
        sets[j] = s
    mem: dict[tuple[str, int], Lanes] = {}
    ctx = {
        gen.CTR_INC: [4] * 4,
        gen.A: a,
        gen.B: b,
        gen.M0: m0,
        gen.M1: m1,
        gen.C: c,
        gen.B1: _xor(b, keys[2]),
        gen.P_INC: [4 * _M0] * 4,
    }
    for off, v in ctx.items():
        mem["ctx", off] = v
    for i, v in enumerate(keys):
        mem["k", 32 * i] = v
    rng = random.Random(block ^ key)
    # The upper halves of the lanes hold junk that no instruction may read.
    regs = {
        f"s{j}{i}": [x ^ (rng.getrandbits(32) << 32) for x in sets[j][i]]
        for j in range(3)
        for i in range(4)
    }
    regs["t0"] = regs["t1"] = regs["p"] = [rng.getrandbits(64) for _ in range(4)]

    def operand(op: str) -> tuple[dict, object]:
        if m := re.fullmatch(r"(\d*)\(%\[(\w+)\]\)", op):
            return mem, (m.group(2), int(m.group(1) or 0))
        m = re.fullmatch(r"%\[(\w+)\]", op)
        assert m, op
        return regs, m.group(1)

    def get(op: str) -> Lanes:
        where, name = operand(op)
        return list(where[name])

    def put(op: str, v: Lanes) -> None:
        where, name = operand(op)
        where[name] = v

    code = {
        same_hi: [
            line.split(" ", 1) for line in gen.body(same_hi, ordered) if not line.startswith("#")
        ]
        for same_hi in (True, False)
    }
    out: list[tuple[int, tuple[int, ...]]] = []
    variants: list[bool] = []
    nxt = (block + 12) & _M64
    for call in range(refills):
        first, last = nxt, (nxt + 4 * gen.SETS - 1) & _M64
        nxt = (nxt + 4 * gen.SETS) & _M64
        ctr = [(first + i) & _M64 for i in lane_blocks]
        same_hi = first >> 32 == last >> 32
        variants.append(same_hi)
        if same_hi:  # set_high and the multiply into %[p]
            x0 = ((first >> 32) ^ a[0]) & _M32
            q = _M0 * x0
            mem["ctx", gen.D] = [(q >> 32) ^ (keys[3][0] & _M32)] * 4
            mem["ctx", gen.E2] = [(q & _M32) ^ (keys[5][0] & _M32)] * 4
            regs["p"] = _mul(ctr, m0)
        else:
            mem["ctx", gen.CTR] = ctr
        for ins, rest in code[same_hi]:
            ops = rest.split(", ")
            if ins == "vpmuludq":
                put(ops[2], _mul(get(ops[0]), get(ops[1])))
            elif ins == "vpxor":
                put(ops[2], _xor(get(ops[0]), get(ops[1])))
            elif ins == "vpaddq":
                put(ops[2], [(x + y) & _M64 for x, y in zip(get(ops[0]), get(ops[1]), strict=True)])
            elif ins == "vpshufd" and ops[0] == "$0xf5":
                put(ops[2], _hi(get(ops[1])))
            elif ins == "vpshufd" and ops[0] == "$0xb1":  # the halves of each lane swapped
                put(ops[2], [((x & _M32) << 32) | (x >> 32) for x in get(ops[1])])
            elif ins == "vpblendd":  # odd dwords (high halves) from the first source
                assert ops[0] == "$0xaa"
                hi, lo = get(ops[1]), get(ops[2])
                put(ops[3], [(x & ~_M32 & _M64) | (y & _M32) for x, y in zip(hi, lo, strict=True)])
            elif ins in ("vpunpcklqdq", "vpunpckhqdq"):  # AT&T: second source first
                h = ins == "vpunpckhqdq"
                b_, a_ = get(ops[0]), get(ops[1])
                put(ops[2], [a_[h], b_[h], a_[2 + h], b_[2 + h]])
            else:
                assert ins == "vmovdqa", ins
                put(ops[1], get(ops[0]))
        for n in range(gen.SETS):
            first_block = block + (call * gen.SETS + n) * 4
            if ordered:  # two registers, each two blocks' four words: lane 2h + 0/1 of half h
                for r in range(2):
                    reg = mem["ctx", gen.OUT + 64 * n + 32 * r]
                    for h in range(2):
                        i = lane_blocks[r + 2 * h]  # unpack lo/hi takes lanes 0, 2 / 1, 3
                        q0, q1 = reg[2 * h], reg[2 * h + 1]
                        words = (q0 & _M32, q0 >> 32, q1 & _M32, q1 >> 32)
                        out.append(((first_block + i) & _M64, words))
                continue
            for lane, i in enumerate(lane_blocks):
                base = gen.OUT + 128 * n
                words = tuple(mem["ctx", base + 32 * k][lane] & _M32 for k in range(4))
                out.append(((first_block + i) & _M64, words))
    return out, variants


@pytest.mark.parametrize(
    "block",
    [0, 7, (1 << 32) - 20, (1 << 32) - 1, (1 << 32) - 100, (1 << 64) - 30, (1 << 63) + 5],
    ids=["zero", "unaligned", "carry-ahead", "carry-now", "carry-later", "wrap", "high"],
)
@pytest.mark.parametrize(
    "key,stream",
    [(1234, 0), (0xDEADBEEFCAFEF00D, (1 << 40) + 3), (_M64, _M64), (0, 0x80000000FFFFFFFF)],
)
@pytest.mark.parametrize(
    "lane_blocks,ordered",
    [([0, 1, 2, 3], False), ([0, 2, 1, 3], False), ([0, 2, 1, 3], True)],
    ids=["blocks", "transpose32", "ordered"],
)
def test_generated_assembly_computes_philox(
    gen: ModuleType, block: int, key: int, stream: int, lane_blocks: Lanes, ordered: bool
) -> None:
    kw = [key & _M32, key >> 32]
    out, variants = _run_generated(gen, block, key, stream, lane_blocks, refills=3, ordered=ordered)
    for b, words in out:
        ctr = [b & _M32, b >> 32, stream & _M32, stream >> 32]
        assert words == fastinit.philox4x32(ctr, kw), f"block {b}"
    if ordered:  # the ORDERED variant's output is in memory order: block after block
        blocks = [b for b, _ in out]
        assert blocks == [(block + i) & _M64 for i in range(len(blocks))]
    # Both variants ran, in both orders, where the refills cross the carry.
    expect = {
        0: [True] * 3,
        (1 << 32) - 20: [False, True, True],
        (1 << 32) - 100: [True, False, True],
        (1 << 64) - 30: [False, True, True],
    }
    if block in expect:
        assert variants == expect[block]
