"""``varscore plugin new``: each kind of skeleton installs with pip, registers through its entry point
and passes its own generated tests unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import optional_import
from varscore.cli import cli
from varscore.errors import InputError
from varscore.plugin.template import KINDS, write_plugin


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VARSCORE_LOAD_PLUGINS")}
    return {**env, **extra}


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=_env(**env), timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_generated_plugin_installs_registers_and_passes_its_tests(kind: str, tmp_path: Path) -> None:
    name = f"demo-{kind.split('-')[0]}"
    result = CliRunner().invoke(cli, ["plugin", "new", name, "--kind", kind, "-o", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    package = tmp_path / "src" / f"varscore-{name}"
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()) == sorted(
        [
            "pyproject.toml",
            "README.md",
            f"varscore_demo_{kind.split('-')[0]}/__init__.py",
            f"tests/test_varscore_demo_{kind.split('-')[0]}.py",
        ]
    )

    # a real (non-editable) pip install into a private directory: builds the wheel, writes the entry point
    site = tmp_path / "site"
    install = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(package),
        ],
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"  # not the source tree: tests import the installed copy
    elsewhere.mkdir()

    listed = _run([sys.executable, "-m", "varscore", "plugins"], cwd=elsewhere, PYTHONPATH=str(site))
    assert listed.returncode == 0, listed.stderr
    plural = {
        "backbone": "backbones",
        "genotype-backbone": "backbones",
        "output-mode": "output modes",
        "annotator": "annotators",
    }[kind]
    assert f"{name}\t{plural}: {name}" in listed.stdout.splitlines()

    tests = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(package / "tests")],
        cwd=elsewhere,
        PYTHONPATH=str(site),
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    summary = tests.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary

    # the same tests also pass from the source tree alone (the plugin registered by hand)
    uninstalled = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package)
    assert uninstalled.returncode == 0, uninstalled.stdout[-3000:]


def test_generated_files_name_the_plugin(tmp_path: Path) -> None:
    made = write_plugin("my-cnn", tmp_path)
    assert (made.distribution, made.package, made.registered_name) == ("varscore-my-cnn", "varscore_my_cnn", "my-cnn")
    pyproject = (made.directory / "pyproject.toml").read_text()
    assert '[project.entry-points.varscore]\nmy-cnn = "varscore_my_cnn"' in pyproject
    module = (made.directory / "varscore_my_cnn" / "__init__.py").read_text()
    assert "class MyCnnBackbone(SequenceBackbone)" in module and 'name: ClassVar[str] = "my-cnn"' in module
    assert "$" not in module + pyproject  # every placeholder filled


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("My_Plugin", "backbone", "not valid"),
        ("9lives", "backbone", "not valid"),
        ("ok", "model", "Unknown plugin kind"),
    ],
)
def test_bad_names_and_kinds(tmp_path: Path, name: str, kind: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        write_plugin(name, tmp_path, kind=kind)


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    write_plugin("again", tmp_path)
    result = CliRunner().invoke(cli, ["plugin", "new", "again", "-o", str(tmp_path)])
    assert result.exit_code == 1 and "--force" in result.output and "Traceback" not in result.output
    assert CliRunner().invoke(cli, ["plugin", "new", "again", "-o", str(tmp_path), "--force"]).exit_code == 0


def _guide_blocks() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_plugin_guide_examples_run(tmp_path: Path) -> None:
    """docs/plugins.md's Python blocks, as a reader would run them: files saved, the rest in order."""
    script = []
    for block in _guide_blocks():
        first, _, body = block.partition("\n")
        if first.startswith("# file: "):
            (tmp_path / first.removeprefix("# file: ").strip()).write_text(body)
        else:
            script.append(block)
    assert len(script) >= 6 and len(list(tmp_path.glob("my_*.py"))) == 4
    (tmp_path / "guide.py").write_text("\n".join(script))
    run = _run([sys.executable, "guide.py"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for expected in (
        "(1, 8, 2)",
        "(1,) (2, 1) (2, 1)",
        "(1, 1)",
        "0.750",
        "GENEA:-10",
        "GENEA:30",
        "VARSCORE_TSSDIST=GENEA:5",
        "conformance: ok",
    ):
        assert expected in out, (expected, out)
    scored = next(line for line in out.splitlines() if line.startswith("chr1\t205"))
    delta = float(scored.split("VARSCORE=")[1].split(";")[0].split("|")[5])
    assert "|GENEA|my-model|" in scored and delta != 0.0  # the variant lies in the scored centre bin


@pytest.mark.parametrize("kind", KINDS)
def test_generated_code_passes_ruff(kind: str, tmp_path: Path) -> None:
    optional_import("ruff", "pip install -e .[test]")
    made = write_plugin("my-model", tmp_path, kind=kind)
    lint = _run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--line-length", "120", "--select", "E,F,W,I,B,UP", "."],
        cwd=made.directory,
    )
    assert lint.returncode == 0, lint.stdout
