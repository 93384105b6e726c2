"""The output side of a run: the output path checked before any work, an exclusive lock held on it
for the run's duration (two runs never write the same ``-o``), the temporary files a killed run
left removed, and run provenance for every output (VCF header lines or a JSON sidecar)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from varscore.errors import InputError
from varscore.infotext import header_text, header_value

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".varscore-lock"


def check_output_path(output: str | Path) -> None:
    """Refuse, before any scoring, an output that cannot be written: a directory, a folder that
    cannot be created, or one that is read-only (probed by creating a temporary file there)."""
    if str(output) == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise InputError(f"Output {path} is a directory: give a file name (e.g. -o {path / 'scored.vcf.gz'}).")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise InputError(
            f"Cannot write output {path}: folder {parent} cannot be written ({exc.strerror or exc}). Choose another -o."
        ) from exc
    os.close(fd)
    os.unlink(probe)


def _leftovers(path: Path) -> list[Path]:
    """Temporary files of earlier runs writing ``path`` (``.NAME.XXXXXXXX.part`` and its ``.tbi``)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.part(\.tbi)?$")
    try:
        return [p for p in path.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return []


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``output`` (file ``OUTPUT.varscore-lock``) for the block; another
    run holding it is an :class:`InputError`. Once the lock is held, the temporary files a killed
    run of the same output left behind are removed. ``-`` (stdout) takes no lock."""
    if str(output) == "-":
        yield
        return
    from filelock import FileLock, Timeout

    path = Path(output)
    lock = FileLock(f"{path}{LOCK_SUFFIX}", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(
            f"another varscore run is writing {path} (it holds {path}{LOCK_SUFFIX}): wait for it to finish, "
            "or choose another -o."
        ) from None
    except OSError as exc:
        raise InputError(f"Cannot lock output {path}: {exc.strerror or exc}.") from exc
    try:
        for stale in _leftovers(path):
            logger.info("removing %s, left by an interrupted run", stale)
            with contextlib.suppress(OSError):
                stale.unlink()
        yield
    finally:
        lock.release()


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
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    return path
