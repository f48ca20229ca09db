"""fastinit's OpenMP runtime next to torch's, in one process, both import orders.

A repaired wheel bundles its own libgomp under a hashed name, and torch's wheel does the same,
so a process that imports both has two OpenMP runtimes, each with its own thread pool. This
checks, in a fresh interpreter per import order, that

- both import without error, whichever comes first;
- fastinit's threaded fills equal its single-threaded fills (numpy arrays and torch tensors),
  before and after torch has run parallel work, and torch's own parallel results are right;
- what threadpoolctl sees: every OpenMP runtime loaded, its file and thread count.

Run it in an environment with fastinit, torch and threadpoolctl installed:
``python tools/check_openmp.py`` (tools/build_wheel.sh --torch does). Exit status 0 when
every check passes.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys
order = sys.argv[1].split(",")
mods = {}
for name in order:
    mods[name] = __import__(name)
import numpy as np
import fastinit, torch
from threadpoolctl import threadpool_info

def fill(threads, make):
    fastinit.set_num_threads(threads)
    x = make()
    fastinit.normal_(x, 0.0, 1.0, seed=11)
    return np.asarray(x).copy()

make_np = lambda: np.empty((512, 4099), np.float32)
make_t = lambda: torch.empty(512, 4099, dtype=torch.float32)
serial = fill(1, make_np)
results = {"numpy fill before torch work": bool((fill(2, make_np) == serial).all())}
torch.set_num_threads(2)
a = torch.randn(600, 700, dtype=torch.float64)
b = torch.randn(700, 500, dtype=torch.float64)
ok = bool(np.allclose((a @ b).numpy(), a.numpy() @ b.numpy()))
results["torch matmul"] = ok
results["torch tensor fill after torch work"] = bool((fill(2, make_t) == serial).all())
results["numpy fill after torch work"] = bool((fill(2, make_np) == serial).all())
results["torch matmul after fastinit"] = bool(np.allclose((a @ b).numpy(), a.numpy() @ b.numpy()))
pools = [
    {k: p.get(k) for k in ("user_api", "internal_api", "filepath", "num_threads", "version")}
    for p in threadpool_info()
]
print(json.dumps({"results": results, "pools": pools}))
"""


def main() -> int:
    failed = False
    for order in ("torch,fastinit", "fastinit,torch"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, order], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            print(f"import order {order}: the process failed ({out.returncode})\n{out.stderr}")
            failed = True
            continue
        report = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"import order {order}:")
        for name, ok in report["results"].items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
            failed |= not ok
        for p in report["pools"]:
            api = f"{p['user_api']}/{p['internal_api']}"
            print(f"  pool {api} threads={p['num_threads']} {p['filepath']}")
        openmp = [p for p in report["pools"] if p["user_api"] == "openmp"]
        print(f"  {len(openmp)} OpenMP runtime(s) loaded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
