"""``import reid`` makes OpenMP's idle threads wait passively (a shared CPU) unless the
user chose a policy or a spin count, and does so before OpenMP loads with torch: GNU
OpenMP's own report (OMP_DISPLAY_ENV) says which spin count it took."""

import os
import subprocess
import sys

PROBE = "import reid, torch; torch.ones(4).add_(1)"


def spin(env: dict) -> str:
    """The GOMP_SPINCOUNT line GNU OpenMP reports when it starts under ``env``."""
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    lines = [x.strip() for x in (out.stderr + out.stdout).splitlines()]
    return next(x for x in lines if x.startswith("GOMP_SPINCOUNT"))


def test_passive_by_default_and_an_explicit_choice_is_kept():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}  # fmt: skip
    assert spin(env) == "GOMP_SPINCOUNT = '0'"  # passive: no spinning
    assert spin({**env, "OMP_WAIT_POLICY": "ACTIVE"}) != "GOMP_SPINCOUNT = '0'"
    assert spin({**env, "GOMP_SPINCOUNT": "300000"}) == "GOMP_SPINCOUNT = '300000'"
