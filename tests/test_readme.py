"""Every fenced ``bash`` command of README.md runs as written on the bundled example.

The convention (stated in the README): a block fenced ``bash`` runs on the bundled example; the
blocks run in README order in one folder (a later block may read what an earlier one wrote, as a
reader following the README does), with ``pip install`` steps left out (the test runs in the
installed environment). ``bash slow`` blocks run on the example too but take minutes to hours on a
CPU: they run here only with ``VARSCORE_README_SLOW=1``. ``sh`` blocks (external data, published
models, clusters) and untagged blocks (output, synopses) are not run. Whatever the README says is
what runs: a changed command is tested as changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BCFTOOLS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    tags: tuple[str, ...]
    body: str

    @property
    def slow(self) -> bool:
        return "slow" in self.tags[1:]


def readme_blocks(text: str) -> list[Block]:
    """The fenced ``bash`` blocks of ``text``, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        tags = tuple(match.group("info").split())
        if tags[:1] == ("bash",):
            blocks.append(Block(text.count("\n", 0, match.start()) + 1, tags, match.group("body")))
    return blocks


def without_pip(body: str) -> str:
    """``body`` with each ``pip install ...`` step of a ``&&`` chain left out."""
    lines = []
    for line in body.splitlines():
        steps = [step for step in line.split("&&") if not step.strip().startswith("pip install")]
        if any(step.strip() for step in steps):
            lines.append("&&".join(steps).strip() if len(steps) < len(line.split("&&")) else line)
    return "\n".join(lines) + "\n"


def test_blocks_are_found_and_pip_steps_dropped():
    text = (
        "x\n```bash\npip install a && pip install -e . && varscore x -o y\n```\n```sh\nno\n```\n```bash slow\nz\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.line, b.slow) for b in blocks] == [(2, False), (8, True)]
    assert without_pip(blocks[0].body) == "varscore x -o y\n"
    assert without_pip("a \\\n  --b\n") == "a \\\n  --b\n"


def _run(blocks: list[Block], folder: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "HOME": str(folder / "home"),  # caches (verified checksums, models) stay in the test's folder
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    env.pop("VARSCORE_MODELS", None)
    (folder / "home").mkdir(exist_ok=True)
    if not (folder / "examples").exists():  # a reader runs the README in the clone: examples/ is there
        (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    for block in blocks:
        script = folder / f"readme_line{block.line}.sh"
        script.write_text("set -euo pipefail\n" + without_pip(block.body))
        done = subprocess.run(["bash", str(script)], cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"README.md line {block.line} ({' '.join(block.tags)}) failed with exit status "
            f"{done.returncode}:\n{block.body}\n--- stderr (end) ---\n{done.stderr[-3000:]}"
        )


@pytest.mark.slow
def test_readme_bash_blocks_run_on_the_example(tmp_path):
    if BCFTOOLS is None:
        pytest.skip("bcftools is not installed (apt-get install bcftools): README commands use it")
    blocks = [b for b in readme_blocks(README.read_text()) if not b.slow]
    assert len(blocks) >= 3  # the quick start, tracks, the linear baselines at least
    _run(blocks, tmp_path)
    assert (tmp_path / "out.vcf.gz").is_file() and (tmp_path / "tracks" / "igv.html").is_file()


@pytest.mark.slow
@pytest.mark.opt_in("VARSCORE_README_SLOW")
def test_readme_slow_bash_blocks_run_on_the_example(tmp_path):
    """All ``bash`` blocks, the slow ones included, in README order."""
    _run(readme_blocks(README.read_text()), tmp_path)
