"""File integrity for model bundles: sha256 checksums (with a cached verdict), plain names, paths
that stay inside their directory, and directories holding only regular files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from varscore.errors import BundleError, InputError
from varscore.io.outputguard import write_text

PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
SHA256 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plain_name(name: str, what: str = "bundle name") -> str:
    """``name`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``),
    so that joining it to a directory never leaves that directory."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or name in (".", "..") or len(name) > 200:
        raise InputError(
            f"Invalid {what} {name!r}: use letters, digits, '.', '_' and '-' only (not '.' or '..', no '/')."
        )
    return name


def inside(directory: Path, relative: str, what: str) -> Path:
    """``directory / relative`` when that path stays inside ``directory`` (no absolute path, no
    ``..``, no link out); else :class:`BundleError` naming ``what``."""
    if not isinstance(relative, str) or not relative:
        raise BundleError(f"{directory}: {what} must be a file name inside the bundle, got {relative!r}.")
    candidate = Path(relative)
    root = directory.resolve()
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or ".." in candidate.parts or not resolved.is_relative_to(root):
        raise BundleError(
            f"{directory}: {what} {relative!r} lies outside the bundle directory; a bundle names only its own files."
        )
    return resolved


def check_regular_files(directory: Path) -> None:
    """Refuse a directory holding symbolic links or special files (devices, pipes, sockets)."""
    for root, dirs, files in os.walk(directory, followlinks=False):
        for entry in (*dirs, *files):
            path = Path(root) / entry
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(
                    f"{path} is a symbolic link; a bundle holds only regular files (copy the file in instead)."
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BundleError(f"{path} is not a regular file; a bundle holds only regular files.")


def file_checksums(directory: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """The sha256 of every regular file below ``directory`` (POSIX relative paths), except ``exclude``."""
    check_regular_files(directory)
    return {
        path.relative_to(directory).as_posix(): sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() not in exclude
    }


def _cache_file(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "varscore" / name


def cached_by_stat(cache_name: str, path: Path, compute: Callable[[Path], T], valid: Callable[[object], bool]) -> T:
    """``compute(path)``, remembered in the user cache file ``cache_name`` under the file's size,
    mtime, inode and device, so an unchanged large file is processed once; any change to the file
    computes again. ``valid`` checks a remembered value before it is trusted."""
    cache = _cache_file(cache_name)
    key = str(path.resolve())
    try:
        known = json.loads(cache.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    info = path.stat()
    stamp = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev]
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("stat") == stamp and valid(entry.get("value")):
        return entry["value"]
    value = compute(path)
    known[key] = {"stat": stamp, "value": value}
    with contextlib.suppress(OSError, InputError):  # a read-only home only costs a recomputation next time
        write_text(cache, json.dumps(known))
    return value


def verified_sha256(path: Path) -> str:
    """``sha256(path)``, remembered by (size, mtime, inode, device) in the user cache
    (``verified.json``) so a large unchanged file is hashed once; any change forces a new hash."""
    return cached_by_stat("verified.json", path, lambda p: sha256(p), lambda v: bool(SHA256.fullmatch(str(v))))
