"""Fixtures of the documentation tests: a tiny model release made on the fly, standing in
for the shipped default model, so that the guides and notebooks run in seconds and never
depend on ``models/`` or ``runs/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from reid.model import ModelConfig, build_model
from reid.release import save_release

REPO = Path(__file__).resolve().parents[2]
TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)

#: The ``reid`` that the guides' commands call: the real command line, with the shipped
#: default model (``reid.methods.embedding.DEFAULT_MODEL``) pointed at the tiny release.
SHIM = """#!{python}
import os
import sys
from pathlib import Path

import reid.methods.embedding

reid.methods.embedding.DEFAULT_MODEL = Path(os.environ["REID_DOCS_TEST_MODEL"])

if __name__ == "__main__":  # worker processes (spawn) import this file too
    from reid.cli import app

    sys.exit(app())
"""


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory) -> Path:
    """A randomly initialised ``test_efficientnet`` release (16-d, 32x64 input)."""
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    return save_release(
        model,
        tmp_path_factory.mktemp("release") / "tiny-default",
        name="tiny-default",
        training_data="none (documentation tests)",
        metrics={},
    )


@pytest.fixture(scope="session")
def docs_env(tmp_path_factory, tiny_release) -> dict[str, str]:
    """Environment of a guide's shell: the shimmed ``reid`` first on PATH, then this
    virtualenv's tools; no registry URL or service settings from the caller."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "reid"
    shim.write_text(SHIM.format(python=sys.executable), encoding="utf-8")
    shim.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REID_", "PYTEST_")) or k == "REID_TEST_POSTGRES_URL"
    }
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]])
    env["REID_DOCS_TEST_MODEL"] = str(tiny_release)
    env["MPLBACKEND"] = "Agg"
    return env
