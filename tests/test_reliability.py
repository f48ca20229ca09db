"""Reliability: int64 edges, storage-less buffers, fork, Ctrl-C, interpreter exit.

The process-level scenarios (fork, signals, exit) run in a subprocess with a timeout, so that
a regression fails instead of hanging the test run.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastinit
from fastinit import _core

from .dlpack_ctypes import DLDataType, DLDevice, DLManagedTensor, PyCapsule_New

I64_MAX = 2**63 - 1
SENTINEL = -7.0


def run_python(code: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the tests' environment), failing on a hang."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------- int64 edges


def guarded(n: int, dtype: type = np.float32, pad: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """A buffer of ``n`` elements inside sentinels: (whole, view)."""
    whole = np.full(n + 2 * pad, SENTINEL, dtype)
    return whole, whole[pad : pad + n]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("dist", ["uniform_", "normal_", "trunc_normal_"])
def test_last_element_of_the_int64_range(dist: str, dtype: type) -> None:
    # R1: the group after the last element used to start beyond 2^63 - 1 (signed overflow):
    # the kernel wrote thousands of elements past the buffer, then crashed.
    whole, x = guarded(1, dtype)
    getattr(fastinit, dist)(x, seed=1, global_shape=(I64_MAX,), global_offset=(I64_MAX - 1,))
    assert np.isfinite(x).all()
    assert (np.delete(whole, 4096) == SENTINEL).all()


@settings(max_examples=60, deadline=None)
@given(
    back=st.integers(1, 300),
    n=st.integers(1, 300),
    total_back=st.integers(0, 40),
    dtype=st.sampled_from(["float32", "float64", "float16"]),
    dist=st.sampled_from(["uniform_", "normal_"]),
    isa=st.sampled_from(list(_core.supported_isas())),
)
def test_runs_near_the_int64_end_equal_their_elements(
    back: int, n: int, total_back: int, dtype: str, dist: str, isa: str
) -> None:
    """Shards ending within a few hundred elements of 2^63 - 1 write exactly their elements,
    and each equals the same element filled on its own."""
    total = I64_MAX - total_back
    n = min(n, back)
    offset = total - back
    before = _core.get_isa()
    _core.set_isa(isa)
    try:
        whole, x = guarded(n, dtype, pad=512)
        fill = getattr(fastinit, dist)
        fill(x, seed=3, global_shape=(total,), global_offset=(offset,))
        assert (whole[:512] == SENTINEL).all() and (whole[512 + n :] == SENTINEL).all()
        for i in {0, n // 2, n - 1}:
            one = np.full(1, SENTINEL, dtype)
            fill(one, seed=3, global_shape=(total,), global_offset=(offset + i,))
            assert one.view(np.uint8).tobytes() == x[i : i + 1].view(np.uint8).tobytes()
    finally:
        _core.set_isa(before)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    slack=st.integers(0, 3),
    data=st.data(),
)
def test_2d_shards_at_the_int64_end(rows: int, cols: int, slack: int, data: st.DataObject) -> None:
    """A 2-D global tensor with (nearly) 2^63 - 1 elements, sharded at its last rows."""
    gcols = data.draw(st.sampled_from([cols, cols + 1, 7, 2**31 - 1]), label="gcols")
    grows = I64_MAX // gcols - slack
    whole = np.full((rows + 2, cols + 2), SENTINEL, np.float32)
    x = whole[1 : 1 + rows, 1 : 1 + cols]
    off = (grows - rows, gcols - cols)
    fastinit.normal_(x, seed=9, global_shape=(grows, gcols), global_offset=off)
    assert np.isfinite(x).all()
    mask = np.ones(whole.shape, bool)
    mask[1 : 1 + rows, 1 : 1 + cols] = False
    assert (whole[mask] == SENTINEL).all()
    one = np.empty((1, 1), np.float32)
    fastinit.normal_(
        one, seed=9, global_shape=(grows, gcols), global_offset=(off[0] + rows - 1, off[1])
    )
    assert one[0, 0] == x[rows - 1, 0]


@pytest.mark.parametrize(
    ("gs", "go"),
    [
        ((2**63,), (0,)),
        ((2**64 + 5,), (0,)),
        ((I64_MAX,), (2**63,)),
        ((-1,), (0,)),
        ((2**62, 4), (0, 0)),
    ],
)
def test_global_shapes_beyond_int64_are_value_errors(gs: tuple, go: tuple) -> None:
    # R13: entries >= 2^63 used to raise "RuntimeError: Unable to cast Python instance".
    x = np.full((1,) * len(gs), SENTINEL, np.float32)
    with pytest.raises(ValueError, match="global"):
        fastinit.normal_(x, seed=1, global_shape=gs, global_offset=go)
    with pytest.raises(ValueError, match="global"):
        fastinit.constant_(x, 1.0, global_shape=gs, global_offset=go)
    assert (x == SENTINEL).all()


# ----------------------------------------------------------------------------- no big temporaries


def test_eye_and_dirac_shards_of_huge_global_shapes_allocate_nothing() -> None:
    # R8: the diagonal of the *global* matrix used to be materialized before the shard was
    # checked: 1 GiB of indices here (NumPy reports its allocations to tracemalloc).
    x = np.full((4, 6), SENTINEL, np.float32)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="does not fit"):
            fastinit.eye_(x, global_shape=(2**27, 2**27), global_offset=(0, 2**27))
        assert (x == SENTINEL).all()
        fastinit.eye_(x, global_shape=(2**27, 2**27), global_offset=(2**26, 2**26 + 1))
        w = np.full((3, 2, 3), SENTINEL, np.float32)
        fastinit.dirac_(w, global_shape=(2**26, 2**26, 3), global_offset=(5, 4, 0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert np.array_equal(x, np.eye(4, 6, k=-1, dtype=np.float32))
    ref = np.zeros((3, 2, 3), np.float32)
    ref[0, 1, 1] = 1  # (5, 5, 1) of the global tensor is on its diagonal
    assert np.array_equal(w, ref)


def test_eye_and_dirac_shards_equal_the_whole() -> None:
    full = fastinit.eye_(np.empty((7, 9), np.float32))
    for r0, c0, r, c in [(0, 0, 7, 9), (2, 3, 3, 4), (5, 0, 2, 9), (0, 8, 7, 1)]:
        x = np.full((r, c), SENTINEL, np.float32)
        fastinit.eye_(x, global_shape=(7, 9), global_offset=(r0, c0))
        assert np.array_equal(x, full[r0 : r0 + r, c0 : c0 + c])
    wd = fastinit.dirac_(np.empty((6, 4, 3, 3), np.float32), groups=2)
    x = np.full((3, 2, 3, 2), SENTINEL, np.float32)
    fastinit.dirac_(x, groups=2, global_shape=(6, 4, 3, 3), global_offset=(2, 1, 0, 1))
    assert np.array_equal(x, wd[2:5, 1:3, :, 1:3])


@pytest.mark.parametrize("shape", [(2**40, 0), (0, 2**40), (2**20, 0, 2**20)])
def test_orthogonal_of_an_empty_huge_matrix_is_a_no_op(shape: tuple[int, ...]) -> None:
    # R8: offsets for every row used to be built before the empty matrix was noticed.
    fastinit.orthogonal_(np.empty(shape, np.float32), seed=1)


class _EmptyHugeProducer:
    """Exports a float32 tensor of shape (0, 2**40, 2**40) over a real (unused) buffer: NumPy
    and torch refuse such shapes, a DLPack producer need not (fed to the native module, which
    sees capsules from any producer)."""

    def __init__(self) -> None:
        self.backing = np.zeros(1, np.float32)
        self.keep: list[object] = []

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)

    def __dlpack__(self, **kwargs: object) -> object:
        shape = (0, 2**40, 2**40)
        shp = (ctypes.c_int64 * 3)(*shape)
        m = DLManagedTensor()
        m.dl_tensor.data = self.backing.ctypes.data
        m.dl_tensor.device = DLDevice(1, 0)
        m.dl_tensor.ndim = 3
        m.dl_tensor.dtype = DLDataType(2, 32, 1)
        m.dl_tensor.shape = shp
        self.keep += [m, shp]
        return PyCapsule_New(ctypes.addressof(m), b"dltensor", None)


@pytest.mark.parametrize("column_axis", [None, 0, 2])
def test_orthogonal_of_an_empty_dlpack_tensor_with_huge_extents(column_axis: int | None) -> None:
    # The other extents of an empty tensor are unchecked: their product (2^80) must not be
    # formed (signed overflow; the sanitizer job runs this).
    from fastinit import _blas

    producer = _EmptyHugeProducer()  # owns the structures the capsule points to
    _blas.orthogonal(producer.__dlpack__(), 1.0, 1, 0, column_axis, 1)


def test_orthogonal_rejects_zero_threads() -> None:
    # threads sized the slices: 0 looped forever.
    from fastinit import _blas

    with pytest.raises(ValueError, match="threads"):
        _blas.orthogonal(np.zeros((4, 4), np.float32), 1.0, 1, 0, None, 0)


def test_set_num_threads_while_orthogonal_runs_does_not_deadlock() -> None:
    # orthogonal_ holds fastinit's BLAS lock and takes the GIL between slices; the BLAS thread
    # setter held the GIL while waiting for that lock.
    r = run_python(
        """
import threading, time
import numpy as np
import fastinit
done = threading.Event()
def work():
    x = np.empty((1500, 1500), np.float32)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        fastinit.orthogonal_(x, seed=1)
    done.set()
t = threading.Thread(target=work)
t.start()
while not done.is_set():
    fastinit.set_num_threads(1)
    fastinit.set_num_threads(2)
t.join()
print("ok")
""",
        timeout=60,
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# ----------------------------------------------------------------------------- NULL data pointers


def null_capsule(shape: tuple[int, ...]) -> tuple[object, list[object]]:
    """A legacy DLPack capsule of float32 ``shape`` whose data pointer is NULL."""
    shp = (ctypes.c_int64 * len(shape))(*shape)
    m = DLManagedTensor()  # zeroed: NULL data, strides and deleter
    m.dl_tensor.device = DLDevice(1, 0)
    m.dl_tensor.ndim = len(shape)
    m.dl_tensor.dtype = DLDataType(2, 32, 1)
    m.dl_tensor.shape = shp
    cap = PyCapsule_New(ctypes.addressof(m), b"dltensor", None)
    return cap, [m, shp]  # keep the structures alive as long as the capsule


@pytest.mark.parametrize("call", ["fill", "constant", "scatter", "orthogonal"])
def test_null_data_pointer_is_a_buffer_error(call: str) -> None:
    # R2: a storage-less tensor's export (NULL data) used to be written through: SIGSEGV.
    cap, keep = null_capsule((4, 4))
    with pytest.raises(BufferError, match="NULL data pointer"):
        if call == "fill":
            _core.fill(cap, "normal", [0.0, 1.0], 1, 0)
        elif call == "constant":
            _core.constant(cap, 1.0)
        elif call == "scatter":
            _core.scatter_constant(cap, 1.0, np.arange(3))
        else:
            fastinit._orthogonal.load_blas().orthogonal(cap, 1.0, 1, 0)
    del keep
    empty, keep2 = null_capsule((0, 4))  # an empty tensor may have no data: nothing to write
    _core.fill(empty, "normal", [0.0, 1.0], 1, 0)
    del keep2


# ----------------------------------------------------------------------------- fork


def _under_asan() -> bool:
    """True when AddressSanitizer's runtime is loaded (tools/sanitize.sh preloads it)."""
    try:
        with open("/proc/self/maps") as maps:
            return "libasan" in maps.read()
    except OSError:
        return False


FORK_PRELUDE = """
import os, sys, signal
import numpy as np
import fastinit
signal.alarm(50)  # a hang fails this process, not the test run
fastinit.set_num_threads(2)
x = np.empty(1 << 21, np.float32)
fastinit.normal_(x, seed=1)          # the parent's OpenMP pool is running now
ref = x.copy()
m = np.empty((300, 200), np.float32)
fastinit.orthogonal_(m, seed=4)
mref = m.copy()

def child_work():
    y = np.empty(1 << 21, np.float32)
    fastinit.normal_(y, seed=1)
    q = np.empty((300, 200), np.float32)
    fastinit.orthogonal_(q, seed=4)
    return bool(np.array_equal(y, ref)) and float(np.abs(q - mref).max()) < 1e-5
"""


def test_fork_after_parallel_fills() -> None:
    # R3: the child's first parallel region waited for the parent's OpenMP threads forever.
    r = run_python(
        FORK_PRELUDE
        + """
pid = os.fork()
if pid == 0:
    os._exit(0 if child_work() else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
print("ok")
"""
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_multiprocessing_fork_pool() -> None:
    r = run_python(
        FORK_PRELUDE
        + """
import multiprocessing as mp

def work(i):
    return child_work()

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        assert all(pool.map(work, range(4)))
    print("ok")
"""
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_torch_dataloader_workers() -> None:
    pytest.importorskip("torch")
    r = run_python(
        FORK_PRELUDE
        + """
import torch
from torch.utils.data import DataLoader, Dataset

fastinit.set_num_threads(2)
t = torch.empty(1 << 20)
fastinit.normal_(t, seed=2)

class D(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        w = torch.empty(1 << 20)
        fastinit.normal_(w, seed=2)
        return torch.equal(w, t)

if __name__ == "__main__":
    dl = DataLoader(D(), num_workers=2, multiprocessing_context="fork")
    assert all(bool(v) for v in dl)
    print("ok")
"""
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.skipif(
    _under_asan(),
    reason="GCC's ASan allocator is not fork-safe: a child forked while another thread is inside "
    "malloc waits forever on the allocator's lock (seen in the child's first allocation, in "
    "Python's own unmarshal, before any fastinit code runs)",
)
def test_fork_while_another_thread_holds_the_generator() -> None:
    # R3: a Generator's lock held by another thread at fork time stayed locked in the child.
    r = run_python(
        """
import os, signal, threading
import numpy as np
import fastinit
signal.alarm(50)
fastinit.set_num_threads(2)
g = fastinit.Generator(5)
stop = False
big = np.empty(1 << 23, np.float32)

def spin():
    while not stop:
        fastinit.normal_(big)                 # the default generator, locked while filling
        fastinit.normal_(big, seed=g)

t = threading.Thread(target=spin, daemon=True)
t.start()
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        y = np.empty(1000, np.float32)
        fastinit.normal_(y)
        fastinit.normal_(y, seed=g)
        fastinit.orthogonal_(np.empty((64, 64), np.float32))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
stop = True
t.join()
print("ok")
"""
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.skipif(_under_asan(), reason="GCC's ASan allocator is not fork-safe (see above)")
def test_fork_while_another_thread_runs_orthogonal() -> None:
    # OpenBLAS's pre-fork handler joins its idle workers; one that was just going to sleep
    # missed the signal and the parent waited in fork() forever (2 of 3 runs of this loop hung
    # before fastinit made forks wait for BLAS calls in flight and the workers' spin time).
    r = run_python(
        """
import faulthandler, os, sys, threading, time
import numpy as np
import fastinit
faulthandler.dump_traceback_later(50, exit=True)
fastinit.set_num_threads(2)
stop = False

def spin():
    x = np.empty((200, 200), np.float32)
    while not stop:
        fastinit.orthogonal_(x, seed=1)

t = threading.Thread(target=spin, daemon=True)
t.start()
start = time.monotonic()
forks = 0
while time.monotonic() - start < 6:
    time.sleep(0.004)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    forks += 1
stop = True
t.join()
print("ok", forks)
""",
        timeout=90,
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


# ----------------------------------------------------------------------------- interpreter exit


# Not for torch tensors: torch's own in-place calls abort the same way (a daemon thread
# looping `x.normal_()` on a 2**24 torch tensor while the main thread exits: std::terminate in
# 12 of 12 runs, torch 2.13.0), and fastinit's torch path makes such calls around the kernel
# (`__dlpack__`, the version bump), so that variant would test torch.
@pytest.mark.parametrize("kind", ["numpy", "orthogonal", "cuda-emulated"])
def test_interpreter_exit_during_a_kernel(kind: str) -> None:
    # R9: a daemon thread inside a kernel at exit ended in std::terminate (exit code 134).
    # "cuda-emulated": the CUDA module's bindings, through its CPU emulation of the kernels
    # (the same GIL release as its launches; no GPU needed).
    if kind == "cuda-emulated":
        pytest.importorskip("fastinit._cuda", reason="fastinit was built without its CUDA module")
    for delay in (0.05, 0.2, 0.4):
        r = run_python(
            f"""
import threading, time
import numpy as np
import fastinit
kind = {kind!r}
if kind == "torch":
    import torch
    x = torch.empty(1 << 24)
else:
    x = np.empty(1 << 24, np.float32)

def loop():
    while True:
        if kind == "orthogonal":
            fastinit.orthogonal_(np.empty((1024, 1024), np.float32))
        elif kind == "cuda-emulated":
            from fastinit import _cuda
            _cuda._emulate_fill(x, "normal", [0.0, 1.0], 1, 0)
        else:
            fastinit.normal_(x)

threading.Thread(target=loop, daemon=True).start()
time.sleep({delay})
"""
        )
        assert r.returncode == 0, (delay, r.returncode, r.stderr)


# ----------------------------------------------------------------------------- Ctrl-C

INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time
import numpy as np
import fastinit
what = sys.argv[1]
if what == "fill":
    x = np.empty(1 << 25, np.float64)
    call = lambda: fastinit.trunc_normal_(x, seed=g)
else:
    x = np.empty((4096, 4096), np.float32)
    call = lambda: fastinit.orthogonal_(x, seed=g)
g = fastinit.Generator(1)
x[...] = 5.0
t0 = time.perf_counter()
call()                     # warm up (pages, BLAS); its time scales the signal delays
took = time.perf_counter() - t0
state = g.get_state()
x[...] = 5.0
lat = []
for k in range(int(sys.argv[2])):
    delay = took * (0.2 + 0.25 * k)  # inside the call, whatever the machine's speed
    sent = []
    timer = threading.Timer(delay, lambda: (sent.append(time.perf_counter()),
                                            os.kill(os.getpid(), signal.SIGINT)))
    timer.start()
    try:
        try:
            call()
        except KeyboardInterrupt:
            lat.append(time.perf_counter() - sent[0])
        else:
            timer.cancel()
            timer.join()
            continue
    except KeyboardInterrupt:  # the signal came just after the call returned
        continue
    assert g.get_state() == state, (g.get_state(), state)   # no stream taken
print("LAT", " ".join(f"{v:.4f}" for v in lat))
"""


@pytest.mark.parametrize("what", ["fill", "orthogonal"])
def test_ctrl_c_interrupts_a_long_call(what: str) -> None:
    # R10: KeyboardInterrupt used to arrive only after the kernel returned (seconds).
    r = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT, what, "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lat = [float(v) for v in r.stdout.split("LAT")[1].split()]
    if not lat:
        pytest.skip("every call finished before its signal")
    assert max(lat) < 1.0, lat


def test_interrupted_fill_leaves_whole_slices_and_the_rest_untouched() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            """
import os, signal, threading, time
import numpy as np
import fastinit
fastinit.set_num_threads(1)
x = np.full(1 << 25, 5.0, np.float64)
done = threading.Event()
def on_sigint(signum, frame):
    if not done.is_set():  # a signal that comes after the fill is not the one under test
        raise KeyboardInterrupt
signal.signal(signal.SIGINT, on_sigint)
def interrupt():
    # Once the fill has written its first element (one thread fills in order), so the signal
    # lands inside the fill however slow the machine (a fixed delay could land before it).
    while x[0] == 5.0 and not done.is_set():
        time.sleep(0.0002)
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
try:
    fastinit.normal_(x, seed=7)
    done.set()
    print("DONE")
except KeyboardInterrupt:
    done.set()
    written = x != 5.0
    n = int(written.sum())
    ref = np.empty(n, np.float64)
    fastinit.normal_(ref, seed=7, global_shape=x.shape, global_offset=(0,))
    print("PART", n, bool(written[:n].all()), bool(np.array_equal(x[:n], ref)))
""",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    if "DONE" in r.stdout:
        pytest.skip("the fill finished before the signal (a very fast machine)")
    _, n, prefix, equal = r.stdout.split()
    if int(n) == 1 << 25:  # the signal came between the fill's last slice and its return
        pytest.skip("the fill completed before the signal was handled")
    assert 0 < int(n) < 1 << 25
    assert prefix == "True" and equal == "True"


@pytest.mark.parametrize("shape", [(1500, 1400), (1400, 1500), (3000, 700), (700, 3000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_orthogonal_slicing_changes_only_rounding(shape: tuple[int, int], dtype: type) -> None:
    """float32 updates the trailing columns in fixed slices (2048 columns; here narrower, to
    slice these shapes). Another width gives the same matrix up to rounding, and the same bits
    on OpenBLAS's AVX-512 core types, whose sgemm rounds a column alike for any width; its AVX2
    kernels do not (measured), which is why the width is fixed rather than chosen per call."""
    blas = fastinit._orthogonal.load_blas()
    threads = fastinit.get_num_threads()
    ref = np.empty(shape, dtype)
    blas.orthogonal(ref, 1.0, 7, 3, None, threads, True, 0, 1 << 40)
    atol = 1e-6 if dtype == np.float32 else 2.0**-12  # float16: 1 ulp below 1/2
    same_bits = blas.info()["corename"].lower() in {"skylakex", "cooperlake", "sapphirerapids"}
    for cols in (512, 300, 64):
        x = np.empty(shape, dtype)
        blas.orthogonal(x, 1.0, 7, 3, None, threads, True, 0, cols)
        np.testing.assert_allclose(x.astype(np.float64), ref, rtol=0, atol=atol, err_msg=str(cols))
        if same_bits:
            assert x.tobytes() == ref.tobytes(), cols


# ----------------------------------------------------------------------------- torch at the core


def test_core_fill_bumps_the_version_counter() -> None:
    # R5: the core API wrote behind autograd's back; backward silently used stale values.
    torch = pytest.importorskip("torch")
    a = torch.full((4, 4), 3.0, requires_grad=True)
    b = a * 1
    c = (b * b).sum()
    v = b._version
    fastinit.normal_(b, seed=1)
    assert b._version > v
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.backward()
    for call in (
        lambda t: fastinit.constant_(t, 2.0),
        lambda t: fastinit.eye_(t),
        lambda t: fastinit.orthogonal_(t, seed=1),
    ):
        t = torch.empty(3, 3)
        v = t._version
        call(t)
        assert t._version > v


@pytest.mark.parametrize("fill", ["uniform", "constant", "normal", "orthogonal"])
def test_negative_views_read_the_values_written(fill: str) -> None:
    # R11: a negative view (c.conj().imag) read back the negated values.
    torch = pytest.importorskip("torch")
    c = torch.zeros(8, 8, dtype=torch.complex64)
    view = c.conj().imag
    assert view.is_neg()
    plain = torch.empty(8, 8)
    if fill == "uniform":
        fastinit.uniform_(view, 0.0, 1.0, seed=3)
        fastinit.uniform_(plain, 0.0, 1.0, seed=3)
        assert float(view.min()) >= 0.0
    elif fill == "constant":
        fastinit.constant_(view, 3.0)
        fastinit.constant_(plain, 3.0)
    elif fill == "normal":
        fastinit.normal_(view, seed=3)
        fastinit.normal_(plain, seed=3)
    else:
        fastinit.orthogonal_(view, seed=3)
        fastinit.orthogonal_(plain, seed=3)
    assert torch.equal(view.resolve_neg(), plain)
    assert torch.equal(c.imag, -plain)


def test_fake_tensors_are_a_no_op_and_storage_less_tensors_an_error() -> None:
    # R2: a FakeTensor's export had a NULL data pointer: SIGSEGV.
    torch = pytest.importorskip("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        t = torch.empty(16, 16)
        assert fastinit.normal_(t, seed=1) is t
        assert fastinit.constant_(t, 1.0) is t
        assert fastinit.orthogonal_(t, seed=1) is t
    from torch._subclasses.functional_tensor import FunctionalTensor, FunctionalTensorMode

    with FunctionalTensorMode():
        f = torch.empty(4, 4)
    if isinstance(f, FunctionalTensor):
        with pytest.raises((BufferError, TypeError)):
            fastinit.normal_(f, seed=1)


def test_dtensor_at_the_core_api_is_a_clear_error() -> None:
    torch = pytest.importorskip("torch")
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        pytest.skip("a process group is already initialized")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        d = distribute_tensor(torch.zeros(8, 4), mesh, [Shard(0)])
        with pytest.raises(TypeError, match="DTensor"):
            fastinit.normal_(d, seed=1)
        assert torch.equal(d.to_local(), torch.zeros(8, 4))
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:.*(beta|prototype) (state|stage):UserWarning")
@pytest.mark.parametrize("layout", ["coo", "csr", "nested"])
def test_sparse_and_nested_tensors(layout: str) -> None:
    # R12: fastinit.torch raised where torch works; the core API gives a clear TypeError.
    torch = pytest.importorskip("torch")
    import fastinit.torch as ft

    if layout == "nested":
        t = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)])
    else:
        t = torch.ones(4, 4).to_sparse() if layout == "coo" else torch.ones(4, 4).to_sparse_csr()
    with pytest.raises(TypeError, match=r"layout|nested"):
        fastinit.normal_(t, seed=1)
    if layout != "nested":
        ft.zeros_(t)
        assert float(t.to_dense().abs().sum()) == 0.0
    else:
        ft.zeros_(t)
        assert all(float(c.abs().sum()) == 0.0 for c in t.unbind())


@pytest.mark.filterwarnings("ignore:mean is more than 2 std:UserWarning")
def test_torch_drop_in_accepts_what_torch_accepts() -> None:
    # R12: parameters torch accepts and the kernels cannot honour fall back to torch.
    torch = pytest.importorskip("torch")
    import fastinit.torch as ft

    t = torch.empty(1000)
    ft.trunc_normal_(t, 0.0, 1.0, 40.0, 41.0)
    assert float(t.min()) >= 40.0 and float(t.max()) <= 41.0
    ft.normal_(t, mean=float("inf"))
    assert bool(torch.isinf(t).all())


def test_argument_messages() -> None:
    # R13
    x = np.full((4, 4), SENTINEL, np.float32)
    with pytest.raises(ValueError, match="overflows the float32"):
        fastinit.orthogonal_(x, gain=1e39, seed=1)
    fastinit.orthogonal_(np.empty((4, 4)), gain=1e39, seed=1)  # float64 holds it
    with pytest.raises(TypeError, match="real number"):
        fastinit.normal_(x, "1.0", seed=1)
    with pytest.raises(TypeError, match="real number"):
        fastinit.constant_(x, "2")
    for bad in ([1.0, 2.0], None, "w"):
        with pytest.raises(TypeError, match="expected a NumPy array"):
            fastinit.xavier_uniform_(bad)
        with pytest.raises(TypeError, match="expected a NumPy array"):
            fastinit.eye_(bad)
    with pytest.raises(ValueError, match="groups"):
        fastinit.dirac_(np.empty((4, 4, 3), np.float32), groups=0)
    assert (x == SENTINEL).all()
    fastinit.truncated_normal_(x, stddev=0.0, mean=0.5, lower=-np.inf)
    assert (x == 0.5).all()
