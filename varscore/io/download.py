"""The download guard: every network fetch of ``varscore models fetch`` goes through :func:`fetch`.

It speaks the Hugging Face Hub's resolve protocol with the standard library and checks every name
the server sends before anything touches disk:

1. ``HEAD {endpoint}/{repo}/resolve/{revision}/{filename}`` (redirects not followed) gives the
   commit (``X-Repo-Commit``: 40 hex digits), the ETag (``X-Linked-Etag`` else ``ETag``: a sha256
   or a Git blob SHA-1) and the size (``X-Linked-Size`` else ``Content-Length``). A 3xx answer
   that carries them sends the GET to its ``Location`` (http/https only, at most
   :data:`MAX_REDIRECTS` hops). ``HF_TOKEN`` is sent only to the endpoint's own origin.
2. Each file is capped at the size the catalogue records for it, else at ``max_bytes`` (default
   :data:`DEFAULT_MAX_BYTES`): an announced size over the cap (or other than the catalogue's) is
   refused before the body is read, and a body that grows past the cap is cut off and removed.
   The free disk space is checked against the announced size first.
3. Every socket operation times out (``timeout=``, else ``HF_HUB_DOWNLOAD_TIMEOUT``, else 30 s),
   so a stalled server ends in a one-line :class:`DownloadError` instead of a hang.
4. The file lands in the Hub cache layout shared with other tools: ``models--{owner}--{name}/
   blobs/{etag}`` (downloaded to ``{etag}.incomplete``, resumed with a Range request),
   ``snapshots/{commit}/{filename}`` (a relative link to the blob; a copy where links fail) and
   ``refs/{revision}``. The file is verified (the catalogue's sha256, else the ETag) before it is
   moved into place.
5. ``HF_HUB_OFFLINE=1`` makes no request: the file comes from the cache, and only if it resolves
   inside the repository's cache folder to a blob named by a valid ETag.

Nothing is written, moved or removed outside the repository's cache folder: every such path is
first resolved and proved to lie inside it (:func:`inside_cache`, :func:`remove_inside`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any

from varscore.errors import InputError, VarscoreError
from varscore.io.integrity import sha256 as _sha256

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_TIMEOUT_S = 30.0
MAX_REDIRECTS = 5
CHUNK = 1 << 16
PROGRESS_EVERY_S = 10.0

SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
COMMIT = GIT_SHA1
PLAIN = re.compile(r"[A-Za-z0-9._-]+")
SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGT])(?:I?B)?|B)?", re.IGNORECASE)
UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


class DownloadError(VarscoreError):
    """A download was refused, failed or did not verify."""


@dataclass(frozen=True)
class Limits:
    """Bounds of a download: ``max_bytes`` caps each file (default :data:`DEFAULT_MAX_BYTES`; a
    size the catalogue records caps it too), ``timeout`` bounds every socket operation (default
    ``HF_HUB_DOWNLOAD_TIMEOUT``, else 30 s) and ``offline`` (default ``HF_HUB_OFFLINE``) makes no
    request at all."""

    max_bytes: int | None = None
    timeout: float | None = None
    offline: bool | None = None


@dataclass(frozen=True)
class Fetched:
    """A verified file in the Hub cache: ``path`` is ``snapshots/{commit}/{filename}``."""

    path: Path
    sha256: str
    commit: str
    etag: str | None


# ---------------------------------------------------------------- settings


def parse_size(text: str) -> int:
    """Bytes from ``"4096"``, ``"512K"``, ``"1.5M"``, ``"8G"`` or ``"1T"`` (powers of 1024; case
    and a trailing ``B``/``iB`` are ignored; a fraction needs a unit). Must be at least 1 byte."""
    match = SIZE.fullmatch(str(text).strip())
    if match is None or ("." in match.group(1) and not match.group(2)):
        raise InputError(f"Invalid size {text!r}: give bytes or a number with K, M, G or T (e.g. 4096, 1.5M, 8G).")
    size = int(float(match.group(1)) * 1024 ** UNITS[(match.group(2) or "").upper()])
    if size < 1:
        raise InputError(f"Invalid size {text!r}: it must be at least 1 byte.")
    return size


def _human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= 1024 ** UNITS[unit]:
            return f"{size / 1024 ** UNITS[unit]:.1f} {unit}iB"
    return f"{size} bytes"


def default_timeout() -> float:
    """``HF_HUB_DOWNLOAD_TIMEOUT`` in seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    value = os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise InputError(f"HF_HUB_DOWNLOAD_TIMEOUT must be a number of seconds above 0, got {value!r}.")
    return seconds


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``), as huggingface_hub does."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


# ---------------------------------------------------------------- names


def _plain(part: str) -> bool:
    return bool(PLAIN.fullmatch(part)) and part not in (".", "..")


def check_repo(repo: str) -> tuple[str, str]:
    """``(owner, name)`` of ``owner/name`` whose parts are plain names."""
    owner, sep, name = str(repo).partition("/")
    if not sep or not _plain(owner) or not _plain(name):
        raise DownloadError(
            f"Invalid Hub repository {repo!r}: expected 'owner/name' of letters, digits, '.', '_', '-'."
        )
    return owner, name


def _check_path(value: str, what: str) -> str:
    parts = str(value).split("/")
    if not value or "\\" in value or not all(_plain(part) for part in parts):
        raise DownloadError(
            f"Invalid {what} {value!r}: use '/'-separated names of letters, digits, '.', '_', '-' (no '..')."
        )
    return value


def check_revision(revision: str) -> str:
    return _check_path(revision, "revision")


def check_filename(filename: str) -> str:
    return _check_path(filename, "file name")


def _etag(value: str) -> str:
    return value.strip().removeprefix("W/").strip('"').lower()


def _is_etag(value: str) -> bool:
    return bool(SHA256.fullmatch(value) or GIT_SHA1.fullmatch(value))


# ---------------------------------------------------------------- paths inside the cache


def inside_cache(path: Path, root: Path) -> Path:
    """``path`` with its folder resolved, once proved to lie inside ``root`` (resolved), else a
    :class:`DownloadError`. The last part is kept as is: unlinking, replacing or opening with
    ``O_NOFOLLOW`` acts on that entry itself, never on what a link there points to."""
    located = path.parent.resolve() / path.name
    if path.name in ("", ".", "..") or not located.is_relative_to(root.resolve()):
        raise DownloadError(f"Refusing to touch {path}: it lies outside the Hub cache folder {root}.")
    return located


def remove_inside(path: Path, root: Path) -> None:
    """Unlink ``path`` (a file, or a link itself) after proving it lies inside ``root``; gone is fine."""
    located = inside_cache(path, root)
    try:
        located.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise DownloadError(f"Cannot remove {located}: {err.strerror or err}; remove it by hand.") from err


def _mkdir(directory: Path, root: Path) -> None:
    if not directory.resolve().is_relative_to(root.resolve()):
        raise DownloadError(f"Refusing to write to {directory}: it lies outside the Hub cache folder {root}.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"Cannot create {directory}: {err.strerror or err}.") from err


def _resolved_inside(path: Path, root: Path, what: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DownloadError(
            f"{what}: the cached {path} leads out of the Hub cache (to {resolved}); refusing to use or remove "
            "it. Delete that link by hand and run again."
        )
    return resolved


# ---------------------------------------------------------------- checksums


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str | None, hub_etag: str | None, name: str | None = None) -> str:
    """Check a downloaded file against the registry's sha256, else the Hub's ETag (sha256 for LFS
    files, Git blob SHA-1 for others); return its sha256. Raises :class:`DownloadError` on a
    mismatch or when there is nothing to check against. ``name`` names the file in messages."""
    name = name or path.name
    actual = _sha256(path)
    if expected_sha256:
        if actual != expected_sha256.lower():
            raise DownloadError(
                f"sha256 mismatch for {name}: the registry says {expected_sha256}, the file is {actual}."
            )
        return actual
    etag = _etag(hub_etag or "")
    if SHA256.fullmatch(etag):
        if actual != etag:
            raise DownloadError(f"sha256 mismatch for {name}: the Hub says {etag}, the file is {actual}.")
        return actual
    if GIT_SHA1.fullmatch(etag):
        blob = _git_blob_sha1(path)
        if blob != etag:
            raise DownloadError(f"Checksum mismatch for {name}: the Hub's Git blob id is {etag}, the file's is {blob}.")
        return actual
    raise DownloadError(f"No checksum to verify {name} against (the registry has none and the Hub sent {hub_etag!r}).")


# ---------------------------------------------------------------- HTTP


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    """HTTP(S) only (no file:, ftp:, data:), proxies from the environment, no redirects followed."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _NoRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _http_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"{what}: refusing the address {_shown(url)}: only http:// and https:// are fetched.")
    return url


def _shown(value: str) -> str:
    """A header value as quoted in a message (cut short: a server may send anything)."""
    return repr(value if len(value) <= 100 else value[:100] + "...")


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass
class _Reply:
    status: int
    headers: Message
    body: IO[bytes]

    def close(self) -> None:
        self.body.close()


@dataclass
class _Remote:
    url: str  # where the GET goes
    commit: str
    etag: str
    size: int | None


@dataclass
class _Session:
    what: str  # repo/filename@revision, for messages
    endpoint: str
    timeout: float
    token: str | None = field(default_factory=lambda: os.environ.get("HF_TOKEN", "").strip() or None)
    opener: urllib.request.OpenerDirector = field(default_factory=_opener)

    def host(self, url: str) -> str:
        return urllib.parse.urlsplit(url).netloc

    def open(self, url: str, method: str, headers: dict[str, str]) -> _Reply:
        headers = {"User-Agent": "varscore", "Accept-Encoding": "identity", **headers}
        if self.token and _origin(url) == _origin(self.endpoint):
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            return _Reply(err.code, err.headers, err)
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise self.network_error(url, err) from err
        return _Reply(response.status, response.headers, response)

    def network_error(self, url: str, err: BaseException) -> DownloadError:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        if isinstance(reason, TimeoutError):
            return DownloadError(f"{self.what}: no data from {self.host(url)} for {self.timeout:g} s; try again later.")
        detail = _one_line(reason) if isinstance(reason, BaseException) else str(reason)
        return DownloadError(
            f"{self.what}: cannot reach {self.host(url)} ({detail}); check the network or HF_ENDPOINT, "
            "or set HF_HUB_OFFLINE=1 to use the Hub cache."
        )

    def status_error(self, url: str, reply: _Reply) -> DownloadError:
        reply.close()
        host, code = self.host(url), reply.status
        if code in (401, 403):
            return DownloadError(
                f"{self.what}: {host} refused access (HTTP {code}); set HF_TOKEN to a token that may read it."
            )
        if code == 404:
            kind = reply.headers.get("X-Error-Code") or "not found"
            return DownloadError(
                f"{self.what}: {host} answered 404 ({kind}); check the repository, revision and file name."
            )
        return DownloadError(f"{self.what}: {host} answered HTTP {code}; try again later.")

    def location(self, url: str, reply: _Reply) -> str:
        reply.close()
        target = reply.headers.get("Location")
        if not target:
            raise DownloadError(f"{self.what}: {self.host(url)} answered {reply.status} without a Location to go to.")
        try:
            return _http_url(urllib.parse.urljoin(url, target), self.what)
        except ValueError as err:
            raise DownloadError(
                f"{self.what}: {self.host(url)} redirected to a malformed address {_shown(target)}."
            ) from err

    def head(self, url: str) -> _Remote:
        """The file's metadata; a 3xx without it (a renamed repository) is followed with HEAD."""
        for _ in range(MAX_REDIRECTS + 1):
            reply = self.open(url, "HEAD", {})
            if 300 <= reply.status < 400:
                target = self.location(url, reply)
                if reply.headers.get("X-Repo-Commit") is None:
                    url = target
                    continue
                return self.remote(url, reply, target, redirected=True)
            if reply.status != 200:
                raise self.status_error(url, reply)
            reply.close()
            return self.remote(url, reply, url, redirected=False)
        raise DownloadError(f"{self.what}: more than {MAX_REDIRECTS} redirects from {self.host(url)}; refusing.")

    def remote(self, url: str, reply: _Reply, target: str, redirected: bool) -> _Remote:
        headers, host = reply.headers, self.host(url)
        commit = (headers.get("X-Repo-Commit") or "").strip()
        if not COMMIT.fullmatch(commit):
            raise DownloadError(
                f"The server at {host} sent an X-Repo-Commit that is not a commit id ({_shown(commit)}); refusing to download."
            )
        raw_etag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
        etag = _etag(raw_etag)
        if not _is_etag(etag):
            raise DownloadError(
                f"The server at {host} sent an ETag that is not a checksum ({_shown(raw_etag)}); refusing to download."
            )
        size_header = headers.get("X-Linked-Size") or (None if redirected else headers.get("Content-Length"))
        return _Remote(target, commit, etag, _size_value(size_header, host))

    def get(self, url: str, start: int) -> tuple[str, _Reply]:
        """The GET's final URL and its 200/206/416 reply, following redirects."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        for _ in range(MAX_REDIRECTS + 1):
            reply = self.open(url, "GET", headers)
            if 300 <= reply.status < 400:
                url = self.location(url, reply)
                continue
            if reply.status not in (200, 206, 416):
                raise self.status_error(url, reply)
            return url, reply
        raise DownloadError(f"{self.what}: more than {MAX_REDIRECTS} redirects from {self.host(url)}; refusing.")

    def read(self, url: str, reply: _Reply) -> bytes:
        try:
            read1 = getattr(reply.body, "read1", reply.body.read)
            return bytes(read1(CHUNK))
        except (OSError, http.client.HTTPException) as err:
            raise self.network_error(url, err) from err


def _size_value(value: str | None, host: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]+", value.strip()):
        raise DownloadError(
            f"The server at {host} sent a size that is not a number ({_shown(value)}); refusing to download."
        )
    return int(value)


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes ([0-9]+)-[0-9]+/([0-9]+|\*)", (value or "").strip())
    return None if match is None else int(match.group(1))


# ---------------------------------------------------------------- the cache


@dataclass
class _Target:
    """Where one file of one repository goes in the cache."""

    what: str
    folder: Path  # models--{owner}--{name}
    filename: str
    expected_sha256: str | None

    @property
    def root(self) -> Path:
        return self.folder.resolve()

    def snapshot(self, commit: str) -> Path:
        return self.folder / "snapshots" / commit / self.filename


def _verified_or_removed(target: _Target, file: Path, etag: str | None, remove: list[Path], note: str) -> str:
    """``verify_file``; on a mismatch every path in ``remove`` is removed (inside the cache only)."""
    try:
        return verify_file(file, target.expected_sha256, etag, name=target.filename)
    except OSError as err:
        raise DownloadError(f"{target.what}: cannot read {file}: {err.strerror or err}.") from err
    except DownloadError as err:
        for path in remove:
            remove_inside(path, target.root)
        raise DownloadError(f"{target.what}: {err} {note}") from err


def _link(target: _Target, commit: str, blob: Path) -> Path:
    """``snapshots/{commit}/{filename}`` as a relative link to ``blob`` (a copy where links fail)."""
    snapshot = target.snapshot(commit)
    _mkdir(snapshot.parent, target.root)
    located = inside_cache(snapshot, target.root)
    relative = "../" * (target.filename.count("/") + 2) + f"blobs/{blob.name}"
    if located.is_symlink() and os.readlink(located) == relative:
        return snapshot
    temporary = inside_cache(located.with_name(f".{located.name}.{os.getpid()}.tmp"), target.root)
    remove_inside(temporary, target.root)
    try:
        try:
            os.symlink(relative, temporary)
        except OSError:
            shutil.copyfile(blob, temporary)
        os.replace(temporary, located)
    except OSError as err:
        remove_inside(temporary, target.root)
        raise DownloadError(f"{target.what}: cannot write {snapshot}: {err.strerror or err}.") from err
    return snapshot


def _write_ref(target: _Target, revision: str, commit: str) -> None:
    ref = target.folder / "refs" / revision
    _mkdir(ref.parent, target.root)
    located = inside_cache(ref, target.root)
    if not located.is_symlink() and located.is_file() and located.read_text(errors="replace").strip() == commit:
        return
    temporary = inside_cache(located.with_name(f".{located.name}.{os.getpid()}.tmp"), target.root)
    try:
        temporary.write_text(commit)
        os.replace(temporary, located)
    except OSError as err:
        remove_inside(temporary, target.root)
        raise DownloadError(f"{target.what}: cannot write {ref}: {err.strerror or err}.") from err


def _read_ref(target: _Target, revision: str) -> str:
    if COMMIT.fullmatch(revision):
        return revision
    ref = target.folder / "refs" / revision
    if not ref.is_file():
        raise DownloadError(
            f"{target.what} is not in the Hub cache {target.folder.parent} (HF_HUB_OFFLINE is set); "
            "fetch it once online or unset HF_HUB_OFFLINE."
        )
    with open(_resolved_inside(ref, target.root, target.what), errors="replace") as handle:
        commit = handle.read(100).strip()
    if not COMMIT.fullmatch(commit):
        raise DownloadError(
            f"{target.what}: the cached {ref} holds {commit!r}, not a commit id; delete it and run again."
        )
    return commit


def _from_cache(target: _Target, revision: str) -> Fetched:
    """Offline: the cached file, proved to lie inside the cache, verified (a bad copy is removed)."""
    commit = _read_ref(target, revision)
    snapshot = target.snapshot(commit)
    if not os.path.lexists(snapshot):
        raise DownloadError(
            f"{target.what} is not in the Hub cache {target.folder.parent} (HF_HUB_OFFLINE is set); "
            "fetch it once online or unset HF_HUB_OFFLINE."
        )
    resolved = _resolved_inside(snapshot, target.root, target.what)
    if not resolved.is_file():
        raise DownloadError(f"{target.what}: the cached {snapshot} is not a file; delete it and fetch again.")
    etag: str | None = None
    if snapshot.is_symlink():
        if resolved.parent != target.root / "blobs" or not _is_etag(resolved.name):
            raise DownloadError(
                f"{target.what}: the cached {snapshot} leads to {resolved}, not to a blob named by its checksum; "
                "delete it and fetch again."
            )
        etag = resolved.name
    note = "The cached copy was removed; run the command again to download it afresh."
    digest = _verified_or_removed(target, resolved, etag, [snapshot, resolved], note)
    return Fetched(snapshot, digest, commit, etag)


# ---------------------------------------------------------------- downloading


def _cap(expected_size: int | None, max_bytes: int | None) -> int:
    """The catalogue's size (lowered by an explicit ``max_bytes``), else ``max_bytes``, else the default."""
    if max_bytes is not None and max_bytes < 1:
        raise InputError(f"The maximum file size must be at least 1 byte, got {max_bytes}.")
    if expected_size is not None:
        return expected_size if max_bytes is None else min(expected_size, max_bytes)
    return DEFAULT_MAX_BYTES if max_bytes is None else max_bytes


def _check_announced(target: _Target, remote: _Remote, expected_size: int | None, cap: int, host: str) -> None:
    size = remote.size
    if size is None:
        return
    if expected_size is not None and size != expected_size:
        raise DownloadError(
            f"{target.what}: the catalogue records {expected_size} bytes but {host} announces {size}; refusing to "
            "download (update the catalogue if the file really changed)."
        )
    if size > cap:
        raise DownloadError(
            f"{target.what}: {host} announces {size} bytes ({_human(size)}), over the {_human(cap)} limit; refusing "
            "to download (raise max_bytes / --max-file-size if that is expected)."
        )


def _check_disk(target: _Target, directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(
            f"{target.what}: needs {_human(needed)} but only {_human(free)} is free in {directory}; free some space "
            "or point HF_HUB_CACHE / --cache-dir elsewhere."
        )


def _existing_partial(partial: Path, target: _Target, size: int | None, cap: int) -> int:
    """Bytes to resume from (0: none, or a partial file that cannot be resumed, now removed)."""
    located = inside_cache(partial, target.root)
    if not os.path.lexists(located):
        return 0
    done = located.stat().st_size if not located.is_symlink() and located.is_file() else -1
    if done < 0 or done > cap or (size is not None and done >= size):
        remove_inside(located, target.root)
        return 0
    return done


def _open_partial(partial: Path, target: _Target, append: bool) -> IO[bytes]:
    located = inside_cache(partial, target.root)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if append else os.O_TRUNC)
    try:
        return os.fdopen(os.open(located, flags, 0o644), "ab" if append else "wb")
    except OSError as err:
        raise DownloadError(f"{target.what}: cannot write {located}: {err.strerror or err}.") from err


def _body_start(session: _Session, target: _Target, url: str, reply: _Reply, start: int) -> int:
    """Where the body of ``reply`` starts in the file: ``start`` for a matching 206, 0 for a 200."""
    if reply.status == 200:
        return 0
    content_range = reply.headers.get("Content-Range") or ""
    if reply.status == 206 and _content_range_start(content_range) == start:
        return start
    reply.close()
    raise DownloadError(
        f"{target.what}: {session.host(url)} answered the resumed download with {reply.status} "
        f"{_shown(content_range)}; removed the partial file, run the command again."
    )


def _stream(session: _Session, target: _Target, remote: _Remote, partial: Path, cap: int, start: int) -> None:
    url, reply = session.get(remote.url, start)
    host = session.host(url)
    try:
        start = _body_start(session, target, url, reply, start)
    except DownloadError:
        remove_inside(partial, target.root)
        raise
    length = _size_value(reply.headers.get("Content-Length"), host)
    total = remote.size if remote.size is not None else (None if length is None else start + length)
    if length is not None and start + length != total:
        reply.close()
        raise DownloadError(f"{target.what}: {host} sends {start + length} bytes, not the {total} announced; refusing.")
    if length is not None and start + length > cap:
        reply.close()
        raise DownloadError(
            f"{target.what}: {host} sends {start + length} bytes, over the {_human(cap)} limit; refusing to download "
            "(raise max_bytes / --max-file-size if that is expected)."
        )
    done = _copy(session, target, url, reply, partial, start, total, cap)
    if total is not None and done != total:
        raise DownloadError(
            f"{target.what}: the connection to {host} closed after {done} of {total} bytes; run the command again "
            "to resume."
        )


def _copy(
    session: _Session,
    target: _Target,
    url: str,
    reply: _Reply,
    partial: Path,
    start: int,
    total: int | None,
    cap: int,
) -> int:
    """Append the body to ``partial`` up to ``cap`` bytes in all; returns the file's size."""
    done, last, over = start, time.monotonic(), False
    try:
        with _open_partial(partial, target, append=start > 0) as out:
            while chunk := session.read(url, reply):
                over = done + len(chunk) > cap
                if over:
                    break
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last > PROGRESS_EVERY_S:
                    last = time.monotonic()
                    logger.info("%s: %s of %s", target.what, _human(done), _human(total) if total else "?")
    except OSError as err:  # the network's errors arrive as DownloadError: this is the disk
        raise DownloadError(f"{target.what}: cannot write {partial}: {err.strerror or err}.") from err
    finally:
        reply.close()
    if not over:
        return done
    remove_inside(partial, target.root)
    raise DownloadError(
        f"{target.what}: {session.host(url)} sent more than the {_human(cap)} limit; stopped and removed the "
        "partial file (raise max_bytes / --max-file-size if that is expected)."
    )


def _download(session: _Session, target: _Target, remote: _Remote, cap: int) -> str:
    """Download into ``blobs/{etag}.incomplete`` (resumed), verify, move to ``blobs/{etag}``."""
    blobs = target.folder / "blobs"
    _mkdir(blobs, target.root)
    blob, partial = blobs / remote.etag, blobs / f"{remote.etag}.incomplete"
    start = _existing_partial(partial, target, remote.size, cap)
    if remote.size is not None:
        _check_disk(target, blobs, remote.size - start)
    logger.info("downloading %s (%s)", target.what, _human(remote.size) if remote.size is not None else "size unknown")
    try:
        _stream(session, target, remote, partial, cap, start)
    except DownloadError:
        if os.path.lexists(partial) and os.lstat(partial).st_size == 0:
            remove_inside(partial, target.root)
        raise
    note = "The partial download was removed; run the command again to download it afresh."
    digest = _verified_or_removed(target, partial, remote.etag, [partial], note)
    os.replace(inside_cache(partial, target.root), inside_cache(blob, target.root))
    return digest


def _cached_blob(target: _Target, blob: Path, etag: str) -> str:
    """Verify a blob already in the cache (removed when bad)."""
    resolved = _resolved_inside(blob, target.root, target.what)
    note = "The cached copy was removed; run the command again to download it afresh."
    return _verified_or_removed(target, resolved, etag, [blob, resolved], note)


def fetch(
    repo: str,
    filename: str,
    revision: str = "main",
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    limits: Limits | None = None,
) -> Fetched:
    """One file of a Hub repository through the Hub cache, verified against ``expected_sha256``
    (else the Hub's ETag). ``expected_size`` (the catalogue's) must match the announced size and
    caps the download; ``limits`` bound it further (:class:`Limits`). Every failure is a one-line
    :class:`DownloadError`."""
    limits = limits or Limits()
    offline, max_bytes, timeout = limits.offline, limits.max_bytes, limits.timeout
    owner, name = check_repo(repo)
    check_revision(revision)
    check_filename(filename)
    what = f"{repo}/{filename}@{revision}"
    if expected_sha256 is not None and not SHA256.fullmatch(expected_sha256.lower()):
        raise DownloadError(f"{what}: the catalogue's sha256 {expected_sha256!r} is not 64 hex digits.")
    target = _Target(what, cache_root(cache_dir) / f"models--{owner}--{name}", filename, expected_sha256)
    try:
        if offline_mode() if offline is None else offline:
            return _from_cache(target, revision)
        base = _http_url((endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"), what)
        session = _Session(what, base, default_timeout() if timeout is None else timeout)
        url = f"{base}/{repo}/resolve/{urllib.parse.quote(revision, safe='')}/{urllib.parse.quote(filename)}"
        return _fetch_online(session, target, url, revision, expected_size, _cap(expected_size, max_bytes))
    except OSError as err:  # a cache folder that cannot be read or written
        raise DownloadError(f"{what}: {err.strerror or err} ({err.filename or target.folder}).") from err


def _fetch_online(
    session: _Session, target: _Target, url: str, revision: str, expected_size: int | None, cap: int
) -> Fetched:
    """HEAD, check, then take the blob from the cache or download it; link the snapshot and ref."""
    remote = session.head(url)
    if COMMIT.fullmatch(revision) and remote.commit != revision:
        raise DownloadError(f"{target.what}: {session.host(url)} answered with commit {remote.commit}; refusing it.")
    _check_announced(target, remote, expected_size, cap, session.host(url))
    target.folder.mkdir(parents=True, exist_ok=True)
    blob = target.folder / "blobs" / remote.etag
    if os.path.lexists(blob):
        digest = _cached_blob(target, blob, remote.etag)
    else:
        digest = _download(session, target, remote, cap)
    snapshot = _link(target, remote.commit, blob)
    if revision != remote.commit:
        _write_ref(target, revision, remote.commit)
    return Fetched(snapshot, digest, remote.commit, remote.etag)
