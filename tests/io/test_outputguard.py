"""Every command that writes files, and every one of its output options, under the one output
guard (:mod:`varscore.io.outputguard`): an output naming an input or another output is refused before
any work, a special file is never replaced, an unwritable folder is a one-line error before any
work, and what a killed run left beside the output is removed.

"Before any work" is shown by the inputs: they are placeholder files no command can read, so a
command that reached its work would fail on them instead of on its output."""

from __future__ import annotations

import importlib.util
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from varscore.cli import cli
from varscore.errors import InputError
from varscore.io.outputguard import (
    LOCK_SUFFIX,
    OUTPUT_KINDS,
    Target,
    atomic_directory,
    atomic_file,
    check_targets,
    guarded_outputs,
    leftovers,
    replace_file,
)

MODEL = "variformer-demo"  # the packaged bundle: found by name, so calibrate can resolve it
COHORT = ["--expression", "{expr}", "--genes", "{genes}", "--fasta", "{fasta}"]

#: (command, output option) -> argv; {out} is the output under test, {other} another output,
#: {in} an input file the command reads, {indir} an input folder
COMMANDS: dict[tuple[str, str], list[str]] = {
    ("simulate", "-o"): ["simulate", "--fasta", "{in}", "-o", "{out}"],
    ("annotate", "-o"): ["annotate", "{in}", "-m", MODEL, "-o", "{out}", "--detail", "{other}"],
    ("annotate", "--detail"): [
        "annotate",
        "{in}",
        "-m",
        MODEL,
        "--mode",
        "variant",
        "-o",
        "{other}",
        "--detail",
        "{out}",
    ],
    ("track", "-o"): ["track", "{in}", "-m", MODEL, "-o", "{out}"],
    ("merge", "-o"): ["merge", "{in}", "-o", "{out}", "--detail", "{other}"],
    ("merge", "--detail"): ["merge", "{in}", "-o", "{other}", "--detail", "{out}"],
    ("plugin new", "-o"): ["plugin", "new", "probe", "-o", "{out}"],
    ("models calibrate", "-o"): ["models", "calibrate", MODEL, "--vcf", "{in}", "-o", "{out}"],
    ("models import", "-o"): ["models", "import", "{indir}", "-o", "{out}"],
    ("models fetch", "-o"): [
        "models",
        "fetch",
        "enformer",
        "--genes",
        "{in}",
        "-o",
        "{out}",
        "--pretrained-dir",
        "{other}",
    ],
    ("models fetch", "--pretrained-dir"): [
        "models",
        "fetch",
        "enformer",
        "--genes",
        "{in}",
        "-o",
        "{other}",
        "--pretrained-dir",
        "{out}",
    ],  # fmt: skip
    ("finetune", "-o"): ["finetune", "--vcf", "{in}", *COHORT, "-o", "{out}"],
    ("evaluate", "-o"): ["evaluate", "--vcf", "{in}", *COHORT, "-m", MODEL, "-o", "{out}"],
    ("plot-coverage", "-o"): [
        "plot-coverage",
        "--vcf",
        "{in}",
        *COHORT,
        "--gene",
        "G",
        "-m",
        MODEL,
        "--coverage",
        "{expr}",
        "--people",
        "p1",
        "-o",
        "{out}",
    ],  # fmt: skip
    ("rank-genes", "-o"): ["rank-genes", "-m", MODEL, "--tpm", "{in}", "--genes", "{genes}", "-o", "{out}"],
    ("ism", "-o"): ["ism", "-m", MODEL, "--vcf", "{in}", "-o", "{out}", "--track", "{other}"],
    ("ism", "--track"): ["ism", "-m", MODEL, "--vcf", "{in}", "-o", "{other}", "--track", "{out}"],
    ("hsv", "-o"): ["hsv", "-m", MODEL, "--vcf", "{in}", "-o", "{out}", "--controls", "{other}"],
    ("hsv", "--controls"): ["hsv", "-m", MODEL, "--vcf", "{in}", "-o", "{other}", "--controls", "{out}"],
    ("drivers", "-o"): ["drivers", "-m", MODEL, "--vcf", "{in}", "-o", "{out}", "--summary", "{other}"],
    ("drivers", "--summary"): ["drivers", "-m", MODEL, "--vcf", "{in}", "-o", "{other}", "--summary", "{out}"],
    ("attribute", "-o"): ["attribute", "-m", MODEL, "--vcf", "{in}", "-o", "{out}"],
    ("enrichment", "-o"): [
        "enrichment",
        "{in}",
        "--bed",
        "{expr}",
        "--genes",
        "{genes}",
        "-o",
        "{out}",
        "--per-gene",
        "{other}",
    ],
    ("enrichment", "--per-gene"): [
        "enrichment",
        "{in}",
        "--bed",
        "{expr}",
        "--genes",
        "{genes}",
        "-o",
        "{other}",
        "--per-gene",
        "{out}",
    ],
    ("finemap-eval", "-o"): [
        "finemap-eval",
        "{in}",
        "--finemap",
        "{expr}",
        "--genes",
        "{genes}",
        "-o",
        "{out}",
        "--per-gene",
        "{other}",
    ],
    ("finemap-eval", "--per-gene"): [
        "finemap-eval",
        "{in}",
        "--finemap",
        "{expr}",
        "--genes",
        "{genes}",
        "-o",
        "{other}",
        "--per-gene",
        "{out}",
    ],
    ("models export", "-o"): ["models", "export", "{indir}", "-o", "{out}"],
    ("models export", "--covariance"): [
        "models",
        "export",
        "{indir}",
        "-o",
        "{other}",
        "--covariance",
        "{out}",
        "--vcf",
        "{in}",
    ],
    ("models from-enformer", "-o"): ["models", "from-enformer", "{indir}", "--genes", "{genes}", "-o", "{out}"],
    ("models import-predictdb", "-o"): ["models", "import-predictdb", "{in}", "--genes", "{genes}", "-o", "{out}"],
    ("basenji2 convert", "-o"): ["basenji2", "convert", "{in}", "-o", "{out}"],
    ("report", "-o"): [
        "report",
        "-m",
        MODEL,
        "--vcf",
        "{in}",
        "--expression",
        "{expr}",
        "--genes",
        "{genes}",
        "-o",
        "{out}",
    ],
}
#: commands whose output options take no input path (nothing an output could overwrite)
NO_INPUTS = {("plugin new", "-o")}


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    if group is cli:
        cli.add_plugin_commands()  # the built-in plugins' commands and any installed plugin's
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _declared() -> dict[tuple[str, str], str]:
    """(command, option) -> kind, as each command declares its outputs with ``writes``."""
    found = {}
    for name, command in _commands(cli):
        for param, option, kind in getattr(command.callback, "varscore_outputs", ()):
            assert kind in OUTPUT_KINDS
            assert any(p.name == param and option in p.opts for p in command.params), (name, param, option)
            found[(name, option)] = kind
    return found


def test_every_option_that_writes_is_declared_and_tested() -> None:
    """An option whose help says it writes, or an -o, is a declared output; every declared output
    has a case below (a new writer without a guard, or without a test, fails here)."""
    declared = _declared()
    writers = set()
    for name, command in _commands(cli):
        for param in command.params:
            help_text = (getattr(param, "help", "") or "").lower()
            if isinstance(param, click.Option) and ("-o" in param.opts or "write" in help_text):
                if isinstance(param.type, click.Path):
                    writers.add((name, next(o for o in param.opts if o.startswith("-"))))
    writers = {(n, "-o" if o == "--output" or o == "--out" else o) for n, o in writers}
    assert writers - set(declared) == set()
    assert set(declared) == set(COMMANDS) - _NOT_INSTALLED


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Placeholder inputs (readable by no command) and a folder for outputs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # models fetch: the cache only, never the network
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    files = {}
    for key, name in (("in", "cohort.vcf"), ("expr", "expr.bed"), ("genes", "genes.tsv"), ("fasta", "ref.fa")):
        files[key] = tmp_path / name
        files[key].write_text(f"not a {name}\n")
    files["indir"] = tmp_path / "checkpoint"
    files["indir"].mkdir()
    (files["indir"] / "config.json").write_text("{}")
    (tmp_path / "out").mkdir()
    return files


def _argv(case: tuple[str, str], world: dict[str, Path], out: Path, other: Path) -> list[str]:
    values = {k: str(v) for k, v in world.items()} | {"out": str(out), "other": str(other)}
    return [arg.format(**values) for arg in COMMANDS[case]]


def _run(argv: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, argv)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    return result.exit_code, result.output.strip()


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error:"), output
    return lines[-1]


def _kind(case: tuple[str, str]) -> str:
    return _declared()[case]


def _other(case: tuple[str, str], world: dict[str, Path]) -> Path:
    suffix = ".bedGraph" if case == ("ism", "-o") else ".parquet" if case[1] == "-o" and case[0] == "annotate" else ""
    return world["in"].parent / "out" / f"second{suffix}"


#: the example third-party plugin's command, present where it is installed (always on CI)
_NOT_INSTALLED = set() if importlib.util.find_spec("varscore_basenji2") else {("basenji2 convert", "-o")}
CASES = sorted(set(COMMANDS) - _NOT_INSTALLED)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}:{c[1]}")
def test_an_output_naming_an_input_is_refused_before_work(case: tuple[str, str], world: dict[str, Path]) -> None:
    if case in NO_INPUTS:
        pytest.skip(f"{case[0]} reads no input path")
    victim = world["indir"] if case[0] in ("models import", "models export", "models from-enformer") else world["in"]
    before = sorted((p.name, p.read_bytes()) for p in [victim, *victim.rglob("*")] if p.is_file())
    code, output = _run(_argv(case, world, victim, _other(case, world)))
    assert code != 0
    line = _one_line_error(output)
    refusal = (
        f"would overwrite the input {victim}" in line
        or f"{victim} exists and is not a directory" in line
        or f"Directory '{victim}' is a file" in line  # click's own check of a directory option
        or f"File '{victim}' is a directory" in line  # ... and of a file option
    )
    assert refusal, line
    assert sorted((p.name, p.read_bytes()) for p in [victim, *victim.rglob("*")] if p.is_file()) == before


@pytest.mark.parametrize("case", [c for c in CASES if "{other}" in COMMANDS[c]], ids=lambda c: f"{c[0]}:{c[1]}")
def test_two_outputs_naming_one_file_are_refused(case: tuple[str, str], world: dict[str, Path]) -> None:
    out = world["in"].parent / "out" / "same"
    code, output = _run(_argv(case, world, out, out))
    assert code != 0
    assert "name the same file" in _one_line_error(output)
    assert not out.exists()


def _special_files(folder: Path) -> Iterator[Path]:
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    yield fifo
    device = folder / "null-device"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null (root only)
    except (PermissionError, OSError):
        return
    yield device


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}:{c[1]}")
def test_a_special_file_is_never_replaced(case: tuple[str, str], world: dict[str, Path]) -> None:
    for special in _special_files(world["in"].parent / "out"):
        node = os.lstat(special)
        reader = os.open(special, os.O_RDONLY | os.O_NONBLOCK)  # a pipe's writer never blocks
        try:
            code, output = _run(_argv(case, world, special, _other(case, world)))
        finally:
            os.close(reader)
        assert code != 0  # the placeholder inputs stop every command
        _one_line_error(output)
        after = os.lstat(special)
        assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (node.st_ino, stat.S_IFMT(node.st_mode))
        if _kind(case) != "file":
            assert "not a directory" in output


def _unwritable_folder(tmp: Path) -> Path:
    """A folder this process cannot write: read-only by mode, or for root (whom modes do not stop)
    a folder of /proc, where nobody can create files."""
    if os.geteuid() == 0:
        return Path("/proc/self")
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}:{c[1]}")
def test_an_unwritable_folder_is_a_one_line_error_before_work(case: tuple[str, str], world: dict[str, Path]) -> None:
    folder = _unwritable_folder(world["in"].parent)
    out = folder / "result"
    code, output = _run(_argv(case, world, out, _other(case, world)))
    assert code != 0
    line = _one_line_error(output)
    assert "cannot be written" in line and case[1] in line, line


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}:{c[1]}")
def test_what_a_killed_run_left_is_removed(case: tuple[str, str], world: dict[str, Path]) -> None:
    out = world["in"].parent / "out" / "result"
    stale = [out.parent / ".result.k1Ll3d0x.part", out.parent / ".result.k1Ll3d0x.part.tbi"]
    stale.append(out.parent / ".result.provenance.json.A2b4C6d8.part")
    for path in stale:
        path.write_text("left by a killed run")
    folder_stale = out.parent / ".result.Zz9Yy8Xx.part"
    folder_stale.mkdir()
    (folder_stale / "weights.safetensors").write_text("half")
    keep = out.parent / ".result.part.notes"  # not a temporary name: kept
    keep.write_text("mine")
    _run(_argv(case, world, out, _other(case, world)))
    assert [p for p in [*stale, folder_stale] if p.exists()] == []
    assert keep.read_text() == "mine"
    assert not Path(f"{out}{LOCK_SUFFIX}").exists()  # the lock goes with the run


# --- the guard itself ------------------------------------------------------------------------------


def test_two_names_of_one_file_are_one_output(tmp_path: Path) -> None:
    data = tmp_path / "in.vcf"
    data.write_text("x")
    (tmp_path / "link.vcf").symlink_to(data)
    os.link(data, tmp_path / "hard.vcf")
    for name in ("link.vcf", "hard.vcf", "./sub/../in.vcf"):
        with pytest.raises(InputError, match="would overwrite the input"):
            check_targets([Target("-o", tmp_path / name)], [data])
    check_targets([Target("-o", tmp_path / "x.vcf.gz")], [tmp_path / "x.vcf.gz.tbi", data])  # no such index yet
    (tmp_path / "x.vcf.gz.tbi").write_text("index")
    with pytest.raises(InputError, match="would overwrite the input"):  # the index written beside the output
        check_targets([Target("-o", tmp_path / "x.vcf.gz")], [tmp_path / "x.vcf.gz.tbi"])
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "genes.tsv").write_text("g")
    with pytest.raises(InputError, match="would overwrite the input"):  # a replaced folder holding an input
        check_targets([Target("-o", bundle, directory=True)], [bundle / "genes.tsv"])
    check_targets([Target("-o", bundle, directory=True, replaced=False)], [bundle / "genes.tsv"])
    check_targets([Target("-o", bundle, directory=True)], [bundle / "genes.tsv"], in_place=[bundle / "genes.tsv"])


def test_an_output_naming_an_inputs_index_or_sidecar_is_refused(tmp_path: Path) -> None:
    """An input's index and provenance sidecar belong to it: 'merge ism.1.tsv ... -o
    ism.1.tsv.provenance.json' or 'hsv --ism t.tsv -o t.tsv.provenance.json' replaced the sidecar
    that names the table's model and shard."""
    table = tmp_path / "ism.tsv"
    table.write_text("x")
    (tmp_path / "ism.tsv.provenance.json").write_text("{}")
    (tmp_path / "in.vcf.gz").write_text("x")
    (tmp_path / "in.vcf.gz.tbi").write_text("index")
    for output, source in [("ism.tsv.provenance.json", table), ("in.vcf.gz.tbi", tmp_path / "in.vcf.gz")]:
        with pytest.raises(InputError, match=f"would overwrite {tmp_path / output}, which belongs to the input"):
            check_targets([Target("-o", tmp_path / output)], [source])
    check_targets([Target("-o", tmp_path / "other.tsv.provenance.json")], [table])  # no input's companion


def test_an_output_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / "varscore.json").write_text("{}")
    with pytest.raises(InputError, match="lies inside the input folder"):
        check_targets([Target("-o", bundle / "varscore.json")], [bundle])
    with pytest.raises(InputError, match="lies inside the input folder"):
        check_targets([Target("-o", bundle / "sub" / "new.tsv")], [bundle])
    check_targets([Target("-o", tmp_path / "model.tsv")], [bundle])  # beside it is fine


def test_a_block_device_or_socket_is_refused(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(InputError, match="special file"):
            check_targets([Target("-o", path)])
        with pytest.raises(InputError, match="special file"), atomic_file(path):
            pass
    finally:
        server.close()


def test_a_pipe_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with atomic_file(fifo) as where:
            assert where == fifo
            with open(where, "w") as handle:
                handle.write("streamed")
        assert os.read(reader, 100) == b"streamed"
        staged = tmp_path / "staged"
        staged.write_text("copied")
        replace_file(staged, fifo)
        assert os.read(reader, 100) == b"copied" and not staged.exists()
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "t.tsv"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(out) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("killed")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv"]
    with atomic_file(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv"]


def test_a_directory_is_replaced_only_when_it_holds_the_marker(tmp_path: Path) -> None:
    target = tmp_path / "b"
    target.mkdir()
    (target / "notes.txt").write_text("someone's")
    with (
        pytest.raises(InputError, match="is not a model bundle"),
        atomic_directory(target, "varscore.json", "a model bundle"),
    ):
        pass
    (target / "varscore.json").write_text("{}")
    with atomic_directory(target, "varscore.json", "a model bundle") as tmp:
        (tmp / "varscore.json").write_text('{"new": 1}')
    assert sorted(p.name for p in target.iterdir()) == ["varscore.json"]
    assert leftovers(target) == []


def test_a_second_run_is_refused_but_the_same_run_may_lock_again(tmp_path: Path) -> None:
    import threading

    out = tmp_path / "o.vcf"
    errors: list[str] = []
    with guarded_outputs([Target("-o", out)]):
        with guarded_outputs([Target("-o", out)]):  # a library call inside a guarded command
            pass

        def other_run() -> None:
            try:
                with guarded_outputs([Target("--detail", out)]):
                    pass
            except InputError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=other_run)
        thread.start()
        thread.join()
    assert errors == [
        f"another varscore run is writing {out} (it holds {out}{LOCK_SUFFIX}): wait for it to finish, "
        "or choose another --detail."
    ]
    assert not Path(f"{out}{LOCK_SUFFIX}").exists()


def test_the_lock_file_goes_after_a_failed_run_too(tmp_path: Path) -> None:
    out = tmp_path / "o.vcf"
    with pytest.raises(RuntimeError), guarded_outputs([Target("-o", out)]):
        assert Path(f"{out}{LOCK_SUFFIX}").exists()
        raise RuntimeError("the run failed")
    assert not Path(f"{out}{LOCK_SUFFIX}").exists()
    with guarded_outputs([Target("-o", out)]):  # and the next run locks afresh
        pass
    assert os.listdir(tmp_path) == []


def test_a_run_that_opened_a_removed_lock_file_does_not_share_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run opens the lock file, the run holding it ends and removes it, a third run creates and
    locks a new one: the run that opened the old file must not count its lock on the removed file."""
    out = tmp_path / "o.vcf"
    lock_path = f"{out}{LOCK_SUFFIX}"
    stale = tmp_path / "removed-lock"
    stale.write_text("")
    real_open = os.open
    opened: list[str] = []

    def open_removed_first(path: object, flags: int, mode: int = 0o777) -> int:
        if not str(path).endswith(LOCK_SUFFIX):
            return real_open(path, flags, mode)  # type: ignore[arg-type]
        opened.append(str(path))
        if len(opened) == 1:  # the file this run opened before the previous holder removed it
            fd = real_open(stale, os.O_RDWR)
            stale.unlink()
            return fd
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    thread_errors: list[str] = []

    def second_run() -> None:
        try:
            with guarded_outputs([Target("--detail", out)]):
                pass
        except InputError as exc:
            thread_errors.append(str(exc))

    with guarded_outputs([Target("-o", out)]):  # the third run, holding the new lock file
        monkeypatch.setattr("varscore.io.outputguard.os.open", open_removed_first)
        thread = threading.Thread(target=second_run)  # another thread: the lock is not this run's own
        thread.start()
        thread.join()
        monkeypatch.undo()
    assert opened == [lock_path, lock_path]  # locked the removed file, saw it gone, tried the real one
    assert thread_errors == [
        f"another varscore run is writing {out} (it holds {lock_path}): wait for it to finish, "
        "or choose another --detail."
    ]
    assert not Path(lock_path).exists()


@pytest.fixture
def locked_folder(tmp_path: Path) -> Iterator[Path]:
    """A real folder this process cannot create files in: read-only by mode, or for root (whom modes
    do not stop) immutable (``chattr +i``)."""
    import shutil
    import subprocess

    folder = tmp_path / "locked"
    folder.mkdir()
    yield folder  # filled by the test first, then locked by ``lock``
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
    folder.chmod(0o755)


def _lock(folder: Path) -> None:
    import shutil
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root on a file system without chattr +i: no folder is read-only to root here")


def test_calibrating_in_place_a_bundle_whose_folder_is_read_only_stops_before_scoring(
    world: dict[str, Path], locked_folder: Path
) -> None:
    import shutil

    from varscore.models.bundle import resolve_model

    bundle = locked_folder / "demo"
    shutil.copytree(resolve_model(MODEL), bundle)
    before = sorted((p.name, p.read_bytes()) for p in bundle.rglob("*") if p.is_file())
    _lock(locked_folder)
    code, output = _run(["models", "calibrate", str(bundle), "--vcf", str(world["in"])])
    assert code == 1
    line = _one_line_error(output)
    assert line.startswith(f"Error: Cannot write NAME (in place) {bundle}: folder {locked_folder} cannot be written")
    assert sorted((p.name, p.read_bytes()) for p in bundle.rglob("*") if p.is_file()) == before


def test_only_the_guards_move_files_into_place() -> None:
    """Renames into place (``os.replace``/``os.rename``/``shutil.move``, ``Path.replace``/``rename``
    of a temporary) happen only in the output guard and the download guard."""
    import ast

    import varscore

    root = Path(varscore.__file__).resolve().parent
    allowed = {root / "io" / "outputguard.py", root / "io" / "download.py"}
    sources = [*root.rglob("*.py"), *(root.parent / "varscore_plugins").rglob("*.py")]
    sources += (root.parent / "examples" / "plugins").rglob("*.py")
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner, name = ast.unparse(node.func.value), node.func.attr
            moves = (owner, name) in {("os", "replace"), ("os", "rename"), ("shutil", "move")}
            path_move = name in ("replace", "rename") and len(node.args) == 1 and not node.keywords
            path_move = path_move and any(w in ast.unparse(node.args[0]) for w in ("path", "target", "dest", "out"))
            if (moves or path_move) and path not in allowed:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("option", ["-o", "--detail"])
def test_a_full_device_is_one_line_and_stays_a_device(option: str, tmp_path: Path) -> None:
    """``/dev/full`` accepts the open and fails every write with ENOSPC, as a full disk does."""
    import gzip

    from varscore.examples import data_dir
    from varscore.models.bundle import resolve_model

    lines = gzip.decompress((data_dir() / "cohort.vcf.gz").read_bytes()).decode().splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#")]
    vcf = tmp_path / "few.vcf"
    vcf.write_text("".join(header + body[:2]))
    args = ["annotate", str(vcf), "-m", str(resolve_model(MODEL)), "--mode", "variant", "--stats", "SUM"]
    outputs = ["-o", "/dev/full"] if option == "-o" else ["-o", str(tmp_path / "o.vcf"), "--detail", "/dev/full"]
    code, output = _run([*args, *outputs])
    assert code == 1
    assert _one_line_error(output).startswith(f"Error: Cannot write {'--detail ' if option != '-o' else ''}/dev/full")
    assert "No space left on device" in output
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert not (tmp_path / "o.vcf").exists()
