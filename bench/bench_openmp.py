"""OpenMP's wait policy on a shared CPU: the network's throughput with its idle threads
spinning (GNU OpenMP's default, 300,000 spins: ``SPIN:300000``; any count: ``SPIN:N``;
``ACTIVE``: far longer) or sleeping (``PASSIVE``, what ``import reid`` sets unless told
otherwise), on a free CPU and beside ``--load`` other busy processes (each a Python busy
loop, as another job on the machine would be).

Each measurement runs in a fresh process (the policy is read when OpenMP starts): the
default model's bare forward at its input size (batch 32, channels_last, batch norms
folded; images/s, best of 3 rounds of 4 batches) and the flank head locating 20 nyala-dev
photos (s/photo; skipped without ../shared/data/nyala-dev).

    .venv/bin/python bench/bench_openmp.py --load 0 1 \
        --policies SPIN:300000 SPIN:10000 PASSIVE ACTIVE
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NYALA = ROOT.parent / "shared" / "data" / "nyala-dev" / "labels.csv"

CHILD = r"""
import json, sys, time
import reid  # sets OMP_WAIT_POLICY=PASSIVE unless the environment has one
import torch
from pathlib import Path
from reid.release import load_release
net, manifest = load_release(Path(sys.argv[1]))
h, w = manifest["input_size"]
x = torch.randn(32, 3, h, w).contiguous(memory_format=torch.channels_last)
out = {}
with torch.inference_mode():
    net(x)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(4):
            net(x)
        best = max(best, 128 / (time.perf_counter() - t))
out["forward_images_per_s"] = round(best, 1)
if Path(sys.argv[2]).is_file():
    from reid.boxhead import boxer_of
    from reid.data.load import load_catalogue
    records = load_catalogue(Path(sys.argv[2]))[:20]
    boxer = boxer_of(net, manifest)
    t = time.perf_counter()
    boxer.locate_records(records)
    out["locate_s_per_photo"] = round((time.perf_counter() - t) / len(records), 3)
print(json.dumps(out))
"""


def _busy(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def measure(policy: str, load: int, model: Path) -> dict:
    stop = mp.Event()
    hogs = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
    for p in hogs:
        p.start()
    time.sleep(1.0)
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}  # fmt: skip
        if policy.startswith("SPIN:"):  # GNU OpenMP's default policy with N spins
            env["GOMP_SPINCOUNT"] = policy[5:]
        else:
            env["OMP_WAIT_POLICY"] = policy
        run = subprocess.run([sys.executable, "-c", CHILD, str(model), str(NYALA)], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return {"policy": policy, "busy_processes": load, **json.loads(run.stdout)}
    finally:
        stop.set()
        for p in hogs:
            p.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bigcat-default")
    ap.add_argument("--load", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--policies", nargs="+", default=["SPIN:300000", "PASSIVE", "ACTIVE"])
    args = ap.parse_args()
    for load in args.load:
        for policy in args.policies:
            print(json.dumps(measure(policy, load, args.model)), flush=True)


if __name__ == "__main__":
    main()
