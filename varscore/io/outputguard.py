"""Every file a run writes goes through this module: targets checked against the run's inputs and
other outputs before any work, special files never replaced, an exclusive lock per target for the
run, temporary files beside the target moved into place atomically, leftovers of killed runs
removed, and run provenance for every output (VCF header lines or a JSON sidecar).

Temporary names are ``.NAME.XXXXXXXX.part`` (files and directories) beside the target ``NAME``,
so a later run of the same target recognises and removes what a killed run left."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from varscore.errors import InputError
from varscore.io.infotext import header_text, header_value

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".varscore-lock"
STAGING = "staging"  # .staging.XXXXXXXX.part inside a directory output: entries not yet moved in
#: files written beside an output that count as part of it (index, provenance, resumable genes)
COMPANION_SUFFIXES = (".tbi", ".csi", ".provenance.json", ".varscore-partial")


@dataclass(frozen=True)
class Target:
    """One output of a run: the option that names it (for messages), its path (``None`` or ``-``:
    standard output) and whether it is a directory the run writes (replaced as a whole)."""

    option: str
    path: str | Path | None
    directory: bool = False
    #: a directory output replaced as a whole (a bundle), so no input may lie inside it
    replaced: bool = True

    @property
    def file(self) -> Path | None:
        return None if self.path is None or str(self.path) == "-" else Path(self.path)


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    """The resolved path and, when it exists, its (device, inode): two names of one file match."""
    resolved = path.resolve()
    try:
        info = os.stat(path)
    except OSError:
        return resolved, None
    return resolved, (info.st_dev, info.st_ino)


def _same(a: Path, b: Path) -> bool:
    (path_a, node_a), (path_b, node_b) = _identity(a), _identity(b)
    return path_a == path_b or (node_a is not None and node_a == node_b)


def _within(inner: Path, outer: Path) -> bool:
    return inner.resolve().is_relative_to(outer.resolve())


def is_direct(path: str | Path) -> bool:
    """True for an existing character device or named pipe: written in place (like standard output),
    never replaced by a renamed temporary file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _refuse_unwritable_kind(target: Target, path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        if path.is_symlink():
            raise InputError(
                f"{target.option} {path} is a broken symbolic link; remove it or choose another {target.option}."
            ) from None
        return
    if target.directory:
        if not stat.S_ISDIR(mode):
            raise InputError(f"{target.option} {path} exists and is not a directory; choose another {target.option}.")
        return
    if stat.S_ISDIR(mode):
        raise InputError(
            f"{target.option} {path} is a directory: give a file name (e.g. {target.option} {path / 'out'})."
        )
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        raise InputError(
            f"{target.option} {path} is a special file (block device or socket); varscore writes only regular "
            f"files, character devices and named pipes. Choose another {target.option}."
        )


def _probe_folder(target: Target, path: Path) -> None:
    """Create the target's folder if needed and prove it writable by creating a file there."""
    if is_direct(path):
        if not os.access(path, os.W_OK):
            raise InputError(f"Cannot write {target.option} {path}: permission denied.")
        return
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise InputError(
            f"Cannot write {target.option} {path}: folder {parent} cannot be written ({exc.strerror or exc}). "
            f"Choose another {target.option}."
        ) from exc
    os.close(fd)
    os.unlink(probe)


def _companions(source: Path) -> list[Path]:
    """The files beside the input ``source`` that belong to it (index, provenance sidecar)."""
    return [c for c in (Path(f"{source}{s}") for s in COMPANION_SUFFIXES) if os.path.lexists(c)]


def check_targets(
    outputs: Sequence[Target], inputs: Iterable[str | Path | None] = (), *, in_place: Iterable[str | Path] = ()
) -> None:
    """Refuse, before any work, outputs that would destroy an input or each other: an output that
    is an input (by resolved path or by device and inode, its index and sidecars included), a
    directory output that holds an input, an output inside an input folder (a bundle, a checkpoint),
    two outputs that are one file, a special file other than a character device or pipe, or a folder
    that cannot be written. ``in_place`` names inputs that
    an output may replace by design (``models calibrate`` without ``-o``)."""
    allowed = [Path(p) for p in in_place]
    sources = [Path(p) for p in inputs if p is not None and str(p) != "-" and os.path.lexists(p)]
    sources = [p for p in sources if not any(_same(p, a) for a in allowed)]
    named = [(t, t.file) for t in outputs if t.file is not None]
    for target, path in named:
        _refuse_unwritable_kind(target, path)
        written = [path] + ([] if target.directory else [Path(f"{path}{s}") for s in COMPANION_SUFFIXES])
        for source in sources:
            clash = any(_same(source, w) for w in written) or (
                target.directory and target.replaced and source.exists() and _within(source, path)
            )
            if clash:
                raise InputError(
                    f"{target.option} {path} would overwrite the input {source}; choose another {target.option}."
                )
            # an input's index or provenance sidecar is part of it (an --ism table's sidecar names its model)
            companion = next((c for c in _companions(source) if any(_same(c, w) for w in written)), None)
            if companion is not None:
                raise InputError(
                    f"{target.option} {path} would overwrite {companion}, which belongs to the input {source}; "
                    f"choose another {target.option}."
                )
            if source.is_dir() and _within(path, source):
                raise InputError(
                    f"{target.option} {path} lies inside the input folder {source}; write outside it "
                    f"(choose another {target.option})."
                )
    for i, (first, a) in enumerate(named):
        for second, b in named[i + 1 :]:
            nested = (first.directory and _within(b, a)) or (second.directory and _within(a, b))
            if _same(a, b) or nested:
                raise InputError(
                    f"{first.option} {a} and {second.option} {b} name the same file; give each output its own path."
                )
    for target, path in named:
        _probe_folder(target, path)


# --- locks and leftovers ------------------------------------------------------------------------


def _leftover_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}(\.[A-Za-z0-9_]{{8}}\.part(\.[A-Za-z0-9]+)?|\.part)$")


def leftovers(path: str | Path) -> list[Path]:
    """Temporary files and folders of earlier runs writing ``path`` or its companions
    (``.NAME.XXXXXXXX.part``, ``.NAME.part``, with any suffix such as ``.tbi``)."""
    target = Path(path)
    names = [target.name] + [f"{target.name}{s}" for s in COMPANION_SUFFIXES]
    patterns = [_leftover_pattern(n) for n in names]
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found += [p for p in target.parent.iterdir() if any(pat.match(p.name) for pat in patterns)]
    if target.is_dir() and not target.is_symlink():
        staging = _leftover_pattern(STAGING)
        with contextlib.suppress(OSError):
            found += [p for p in target.iterdir() if staging.match(p.name)]
    return sorted(found)


def remove_leftovers(path: str | Path) -> None:
    for stale in leftovers(path):
        logger.info("removing %s, left by an interrupted run", stale)
        with contextlib.suppress(OSError):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()


#: locks this process holds, by (thread, lock file): a library call inside a guarded command
#: takes the command's lock again instead of refusing its own run
_held: dict[tuple[int, Path], int] = {}


def _lock_file(lock_path: Path) -> int | None:
    """A descriptor holding an exclusive ``flock`` on ``lock_path``, or None when another run holds
    it. A run removes its lock file when it ends, so a run that opened the file just before may lock
    a file no longer at ``lock_path``: the lock counts only if the path still names the locked file,
    and otherwise the file now there is locked instead (no two runs ever hold the same path)."""
    import fcntl

    for _ in range(64):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            return fd
        os.close(fd)  # removed (or replaced) by the run that held it: lock what the path names now
    raise OSError(f"{lock_path} keeps being replaced")


@contextlib.contextmanager
def _locked(target: Target) -> Iterator[None]:
    path = target.file
    if path is None or is_direct(path):
        yield
        return
    lock_path = Path(f"{path}{LOCK_SUFFIX}")
    key = (threading.get_ident(), lock_path.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        fd = _lock_file(lock_path)
    except OSError as exc:
        raise InputError(f"Cannot lock {target.option} {path}: {exc.strerror or exc}.") from exc
    if fd is None:
        raise InputError(
            f"another varscore run is writing {path} (it holds {lock_path}): wait for it to finish, "
            f"or choose another {target.option}."
        )
    _held[key] = 1
    try:
        remove_leftovers(path)
        yield
    finally:
        del _held[key]
        # removed while still held, whether the run succeeded or failed: a run that opened it
        # meanwhile finds it gone and locks a new file (:func:`_lock_file`)
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(fd)


@contextlib.contextmanager
def guarded_outputs(
    outputs: Sequence[Target],
    inputs: Iterable[str | Path | None] = (),
    *,
    in_place: Iterable[str | Path] = (),
    lock: bool = True,
) -> Iterator[None]:
    """Check every output of a run (:func:`check_targets`), then hold a lock on each for the block
    (another run writing one of them is an :class:`InputError`) and remove what killed runs left.
    ``lock`` false checks only (the non-writing ranks of a sharded run)."""
    check_targets(outputs, inputs, in_place=in_place)
    with contextlib.ExitStack() as stack:
        for target in sorted(outputs, key=lambda t: str(t.file or "")) if lock else ():
            stack.enter_context(_locked(target))
        yield


# --- commands ---------------------------------------------------------------------------------

Command = TypeVar("Command", bound=Callable[..., Any])
#: how a command writes an output: a file, a directory replaced as a whole, or one written into
OUTPUT_KINDS = ("file", "bundle", "folder")


def _named_paths(value: Any) -> list[Path]:
    """The existing files and folders a parameter value names (paths, names that exist, lists)."""
    if isinstance(value, (tuple, list)):
        return [p for v in value for p in _named_paths(v)]
    if isinstance(value, Path) or (isinstance(value, str) and value not in ("", "-") and "\n" not in value):
        path = Path(value)
        return [path] if os.path.lexists(path) else []
    return []


def is_writing_process() -> bool:
    """False in the other ranks of a distributed run (``torchrun`` sets ``RANK``; Lightning's
    launcher starts its extra ranks as copies of the command with ``LOCAL_RANK``): rank 0 alone
    writes, so it alone locks the outputs."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK"))


def writes(*outputs: tuple[str, str, str]) -> Callable[[Command], Command]:
    """Guard a command's outputs before its body runs (:func:`varscore.io.outputguard.guarded_outputs`):
    each ``(parameter, option, kind)`` with a kind of :data:`OUTPUT_KINDS`. Every other parameter
    that names an existing path is an input no output may overwrite. In a distributed run only
    rank 0 locks (:func:`is_writing_process`)."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            names = {name for name, _, _ in outputs}
            targets = [
                Target(option, kwargs.get(name), directory=kind != "file", replaced=kind == "bundle")
                for name, option, kind in outputs
            ]
            inputs = [p for name, value in kwargs.items() if name not in names for p in _named_paths(value)]
            with guarded_outputs(targets, inputs, lock=is_writing_process()):
                return command(*args, **kwargs)

        guarded.varscore_outputs = outputs  # type: ignore[attr-defined]  # read by the output tests
        return guarded  # type: ignore[return-value]

    return decorate


# --- atomic writes ------------------------------------------------------------------------------


def _usual_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private modes; outputs get the mode the umask gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if directory else 0o666) & ~umask)


def replace_file(staged: str | Path, target: str | Path) -> None:
    """Move a complete temporary file over ``target`` (atomic on one filesystem). A character
    device or pipe at ``target`` is written through instead of replaced."""
    staged, target = Path(staged), Path(target)
    if is_direct(target):
        with open(staged, "rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        staged.unlink()
        return
    _usual_mode(staged)
    os.replace(staged, target)


def temporary_beside(target: str | Path, directory: bool = False, make_folder: bool = True) -> Path:
    """A new temporary file (or folder) ``.NAME.XXXXXXXX.part`` beside ``target`` (its folder
    created unless ``make_folder`` is false); OSError when the folder cannot be written."""
    path = Path(target)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: str | Path, make_folder: bool = True) -> Iterator[Path]:
    """Yield where to write ``path``: a temporary file beside it, moved into place only if the block
    succeeds (removed otherwise). A character device or named pipe is yielded itself and written in
    place, never replaced; a directory, block device or socket is refused."""
    target = Path(path)
    _refuse_unwritable_kind(Target("output", target), target)
    if is_direct(target):
        yield target
        return
    tmp = temporary_beside(target, make_folder=make_folder)
    try:
        yield tmp
        _usual_mode(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`); one-line error on failure."""
    try:
        with atomic_file(path) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    return Path(path)


@contextlib.contextmanager
def atomic_directory(target: str | Path, marker: str, what: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``target`` that replaces it when the block succeeds.
    An existing ``target`` is replaced only when it is empty or holds the file ``marker`` (it is
    ``what``, e.g. a model bundle), never another directory, file or link."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"{target} exists and is not a directory; choose another output path.")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).is_file():
        raise InputError(f"{target} exists and is not {what}; refusing to replace it. Choose a new or empty directory.")
    tmp = temporary_beside(target, directory=True)
    try:
        yield tmp
        _usual_mode(tmp, directory=True)
        for child in tmp.rglob("*"):
            _usual_mode(child, directory=child.is_dir())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def staging_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder ``.staging.XXXXXXXX.part`` inside ``target`` (a directory written
    into, not replaced); on success each of its entries replaces the entry of that name."""
    target = Path(target)
    tmp = temporary_beside(target / STAGING, directory=True)
    try:
        yield tmp
        for name in sorted(os.listdir(tmp)):
            _usual_mode(tmp / name, directory=(tmp / name).is_dir())
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- provenance -------------------------------------------------------------------------------


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as run (``varscore`` and its arguments), shell-quoted, on one line."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = "varscore" if args[0].endswith(("varscore", "__main__.py", "-c")) else Path(args[0]).name
    return header_text(shlex.join(args))


def model_provenance(bundle: Any) -> dict[str, str]:
    """ID, backbone, build and weights checksum of a loaded bundle (``.`` where unrecorded)."""
    manifest = bundle.manifest if isinstance(getattr(bundle, "manifest", None), dict) else {}
    backbone = manifest.get("backbone")
    provenance = manifest.get("provenance")
    return {
        "ID": str(getattr(bundle, "name", None) or "."),
        "Backbone": str(backbone.get("name") if isinstance(backbone, dict) and backbone.get("name") else "."),
        "Build": str(manifest.get("genome_build") or "."),
        "SHA256": str(
            provenance.get("weights_sha256")
            if isinstance(provenance, dict) and provenance.get("weights_sha256")
            else "."
        ),
    }


def provenance_header_lines(bundle: Any | None, argv: Sequence[str] | None = None) -> list[str]:
    """``##varscore_version``, ``##varscore_command`` and (with a model) ``##varscore_model`` lines."""
    from varscore import __version__

    lines = [f"##varscore_version={header_value(__version__)}", f"##varscore_command={command_line(argv)}"]
    if bundle is not None:
        fields = ",".join(f"{k}={header_value(v)}" for k, v in model_provenance(bundle).items())
        lines.append(f"##varscore_model=<{fields}>")
    return lines


def write_provenance_sidecar(
    output: str | Path,
    bundle: Any | None = None,
    argv: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``OUTPUT.provenance.json`` beside a table output (TSV, Parquet): version, command, model."""
    from varscore import __version__

    path = Path(f"{output}.provenance.json")
    record: dict[str, Any] = {"varscore_version": __version__, "varscore_command": command_line(argv)}
    if bundle is not None:
        record["varscore_model"] = model_provenance(bundle)
    record.update(extra or {})
    return write_text(path, json.dumps(record, indent=2) + "\n")
