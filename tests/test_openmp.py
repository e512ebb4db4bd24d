"""``import reid`` makes OpenMP's idle threads wait passively (a shared CPU), unless the
user chose otherwise, and does so before torch starts its thread pool."""

import os
import subprocess
import sys

PROBE = "import os, reid, torch; print(os.environ['OMP_WAIT_POLICY'])"


def run(env: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.split()


def test_passive_by_default_and_an_explicit_choice_is_kept():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert run(env)[0] == "PASSIVE"
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"})[0] == "ACTIVE"
