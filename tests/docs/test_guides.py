"""Every command shown in the guides (``docs/*.md``) runs, in order, and succeeds.

The commands are those of the fenced ``console`` blocks (lines starting with ``$ ``,
continued by a trailing backslash) and ``bash`` blocks (every line). The blocks of a
guide run top to bottom in one bash shell (``set -e``: a failing command fails the
test), in a fresh folder with the data home ``$REID_HOME`` inside it and ``training/``
of this checkout beside it, as if the reader stood in the repository. ``reid`` is the
real command line with a tiny model release, made on the fly, as the shipped default.

A block that cannot run in a test (a multi-machine cluster, an hours-long training run)
is marked on the line just above its fence::

    <!-- docs-test: skip (why it cannot run here) -->

and the guides keep such blocks few (:data:`MAX_SKIPPED` per guide).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
GUIDES = sorted(p for p in DOCS.glob("*.md"))
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
MAX_SKIPPED = 3
TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    """One fenced shell block of a guide."""

    line: int  # 1-based line of the opening fence
    lang: str
    commands: tuple[str, ...]
    skip: str | None  # the reason, for a block marked to be skipped


def shell_blocks(text: str) -> list[Block]:
    """The ``console`` and ``bash`` blocks of a Markdown text, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m["lang"]
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = lines[i + 1 : j]
        i = j + 1
        if lang not in ("console", "bash"):
            continue
        marker = SKIP.search(lines[start - 1]) if start else None
        reason = marker["reason"] if marker else None
        blocks.append(Block(start + 1, lang, tuple(_commands(body, lang)), reason))
    return blocks


def _commands(body: list[str], lang: str) -> list[str]:
    """Commands of a block: ``$ `` lines (console) or all lines (bash), continuations
    joined; output lines of console blocks are dropped."""
    out: list[str] = []
    current: list[str] | None = None
    for raw in body:
        if current is not None:  # continuation of the previous line
            current.append(raw)
        elif lang == "bash" and raw.strip() and not raw.lstrip().startswith("#"):
            current = [raw]
        elif lang == "console" and raw.startswith("$ "):
            current = [raw[2:]]
        else:
            continue
        if not raw.endswith("\\"):
            out.append("\n".join(current))
            current = None
    if current is not None:
        out.append("\n".join(current))
    return out


def guide_script(path: Path) -> tuple[str, list[Block]]:
    """The bash script that runs a guide's commands, and the blocks it left out."""
    blocks = shell_blocks(path.read_text(encoding="utf-8"))
    parts = [
        "set -eo pipefail",
        # background jobs (a server the guide starts) end with the guide
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    ]
    for b in blocks:
        if b.skip:
            continue
        for cmd in b.commands:
            shown = cmd.replace("'", "'\\''").replace("\n", " ")
            parts.append(f"echo '>>> {path.name}:{b.line}: {shown}'")
            parts.append(cmd)
    return "\n".join(parts) + "\n", [b for b in blocks if b.skip]


def test_blocks_are_read_as_a_reader_types_them():
    text = "\n".join([
        "Intro", "```console", "$ reid synth --out demo \\", "    --preset demo",
        "wrote 96 images", "$ reid info", "```", "<!-- docs-test: skip (needs a cluster) -->",
        "```bash", "# a comment", "ray start --head", "```", "```python", "print(1)", "```",
    ])  # fmt: skip
    blocks = shell_blocks(text)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (2, "console", None),
        (9, "bash", "needs a cluster"),
    ]
    assert blocks[0].commands == ("reid synth --out demo \\\n    --preset demo", "reid info")
    assert blocks[1].commands == ("ray start --head",)


def test_every_guide_is_indexed_and_skips_little():
    assert {"researcher.md", "ml-engineer.md", "monitoring-centre.md", "operator.md"} <= {
        p.name for p in GUIDES
    }
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        if guide.name == "index.md":
            continue
        assert f"({guide.name})" in index, f"docs/index.md does not link {guide.name}"
        script, skipped = guide_script(guide)
        assert ">>> " in script, f"{guide.name} shows no command"
        assert len(skipped) <= MAX_SKIPPED, f"{guide.name} skips {len(skipped)} blocks"
        assert all(b.skip.strip() for b in skipped)


@pytest.mark.slow
@pytest.mark.parametrize(
    "guide", [g for g in GUIDES if g.name != "index.md"], ids=lambda p: p.stem
)
def test_guide_commands_run(guide, tmp_path, docs_env):
    work = tmp_path / "work"
    work.mkdir()
    (work / "training").symlink_to(REPO / "training", target_is_directory=True)
    env = {**docs_env, "REID_HOME": str(tmp_path / "home")}
    script, _ = guide_script(guide)
    (tmp_path / "guide.sh").write_text(script, encoding="utf-8")
    done = subprocess.run(
        ["bash", str(tmp_path / "guide.sh")],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    if done.returncode != 0:
        ran = [line for line in done.stdout.splitlines() if line.startswith(">>> ")]
        pytest.fail(
            f"{ran[-1] if ran else guide.name} failed (exit {done.returncode}):\n"
            + done.stdout[-4000:]
        )
