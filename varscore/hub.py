"""``varscore models fetch NAME``: download a published checkpoint from the Hugging Face Hub, verify
every file's sha256, and import it as a model bundle (:mod:`varscore.checkpoints`).

The known models are listed in ``published_models.json`` beside this module: for each, the Hub
repositories (one per replicate) with a pinned revision and the files to fetch, each with its sha256
where it is publicly documented. Where the registry records no sha256, the file is checked against
the sha256 the Hub reports for it (the ETag of a Git LFS file is its sha256; a small file stored in
Git has its Git blob id, the SHA-1 of ``"blob <size>\\0" + content``, which is checked instead). The
Hub cache names each downloaded file by that ETag, so the same check runs offline from the cache.

Downloads go through ``huggingface_hub`` (resumed from a partial file, cached in the Hub cache
shared with other tools: ``HF_HUB_CACHE`` / ``HF_HOME``). ``HF_HUB_OFFLINE=1`` uses the cache only;
``HF_ENDPOINT`` (or ``endpoint=``) points at another Hub server. Nothing is downloaded unless
:func:`fetch_model` is called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from varscore.errors import InputError, VarscoreError

logger = logging.getLogger(__name__)

REGISTRY_FILE = Path(__file__).with_name("published_models.json")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class DownloadError(VarscoreError):
    """A download failed or did not verify."""


@cache
def registry() -> dict[str, dict[str, Any]]:
    """The known published models by name."""
    data = json.loads(REGISTRY_FILE.read_text())
    return dict(data["models"])


def model_entry(name: str) -> dict[str, Any]:
    models = registry()
    if name not in models:
        raise InputError(f"Unknown published model '{name}'. Known: {', '.join(sorted(models))}.")
    entry = models[name]
    if not entry.get("replicates"):
        raise InputError(f"'{name}' cannot be downloaded: {entry.get('hint', 'it has no published weights')}.")
    return entry


def model_hint(name: str) -> str | None:
    """What to run to get the model ``name`` when it is not installed (None: not a known name)."""
    entry = registry().get(name)
    if entry is None:
        return None
    if entry.get("replicates"):
        return f"Download it with 'varscore models fetch {name}'"
    return str(entry.get("hint") or "")


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    from varscore.bundle import sha256

    return sha256(path)


def verify_file(path: Path, expected_sha256: str | None, hub_etag: str | None) -> str:
    """Check a downloaded file against the registry's sha256, else the Hub's ETag (sha256 for LFS
    files, Git blob SHA-1 for others); return its sha256. Raises :class:`DownloadError` on a
    mismatch or when there is nothing to check against."""
    actual = _sha256(path)
    if expected_sha256:
        if actual != expected_sha256.lower():
            raise DownloadError(
                f"sha256 mismatch for {path.name}: the registry says {expected_sha256}, the file is {actual}."
            )
        return actual
    etag = (hub_etag or "").strip('"').lower().removeprefix("w/")
    if SHA256.match(etag):
        if actual != etag:
            raise DownloadError(f"sha256 mismatch for {path.name}: the Hub says {etag}, the file is {actual}.")
        return actual
    if GIT_SHA1.match(etag):
        blob = _git_blob_sha1(path)
        if blob != etag:
            raise DownloadError(
                f"Checksum mismatch for {path.name}: the Hub's Git blob id is {etag}, the file's is {blob}."
            )
        return actual
    raise DownloadError(
        f"No checksum to verify {path.name} against (the registry has none and the Hub sent {hub_etag!r})."
    )


@dataclass
class FetchedFile:
    filename: str
    path: Path
    sha256: str
    commit: str | None


def _blob_of(path: Path) -> Path:
    """The Hub cache's blob behind a snapshot path (named by the file's ETag)."""
    return Path(os.path.realpath(path))


def _remove_cached(path: Path) -> None:
    blob = _blob_of(path)
    for p in {path, blob}:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def fetch_file(
    repo: str,
    filename: str,
    revision: str,
    expected_sha256: str | None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    offline: bool = False,
) -> FetchedFile:
    """One file of a Hub repository through the Hub cache, verified (a bad file is removed)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RevisionNotFoundError

    try:
        path = Path(
            hf_hub_download(
                repo, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint, local_files_only=offline
            )
        )
    except LocalEntryNotFoundError as err:
        where = "in the Hub cache (HF_HUB_OFFLINE is set)" if offline else "and the Hub cannot be reached"
        raise DownloadError(f"{repo}/{filename}@{revision} is not {where}: {str(err).splitlines()[0]}") from err
    except (EntryNotFoundError, RevisionNotFoundError) as err:
        raise DownloadError(f"{repo} has no {filename} at revision {revision}: {str(err).splitlines()[0]}") from err
    except OSError as err:  # requests' errors derive from OSError
        raise DownloadError(f"Downloading {repo}/{filename}@{revision} failed: {str(err).splitlines()[0]}") from err
    # snapshots/<commit>/<filename> -> blobs/<etag>
    commit = path.parent.name if path.parent.parent.name == "snapshots" else None
    etag = _blob_of(path).name
    try:
        digest = verify_file(path, expected_sha256, etag)
    except DownloadError as err:
        _remove_cached(path)
        raise DownloadError(
            f"{repo}/{filename}@{revision}: {err} The cached copy was removed; run the command again "
            "to download it afresh."
        ) from err
    return FetchedFile(filename, path, digest, commit)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_model(
    name: str,
    output: str | Path | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    genes_path: Path | None = None,
    reference_fasta: Path | None = None,
    window_size: int | None = None,
) -> Path:
    """Download (or take from the Hub cache) every file of the published model ``name``, verify
    them, and import them as a bundle at ``output`` (default: the user model cache, so that
    ``--model NAME`` finds it). Returns the bundle directory."""
    from varscore.bundle import user_cache
    from varscore.checkpoints import ImportOptions, import_checkpoints

    entry = model_entry(name)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    offline = _offline()
    directories: list[Path] = []
    sources: list[dict[str, Any]] = []
    for replicate in entry["replicates"]:
        repo, revision = replicate["repo"], replicate.get("revision", "main")
        fetched = [
            fetch_file(repo, filename, revision, sha, endpoint=endpoint, cache_dir=cache_dir, offline=offline)
            for filename, sha in replicate["files"].items()
        ]
        folders = {f.path.parent for f in fetched}
        if len(folders) != 1:
            raise DownloadError(f"{repo}: the files came from different snapshots ({', '.join(map(str, folders))}).")
        directories.append(folders.pop())
        sources.append(
            {
                "repo": repo,
                "revision": revision,
                "commit": fetched[0].commit,
                "files": {f.filename: f.sha256 for f in fetched},
            }
        )
        logger.info("verified %s@%s: %s", repo, fetched[0].commit or revision, ", ".join(f.filename for f in fetched))
    output = Path(output) if output is not None else user_cache() / name
    output_spec = entry.get("output", {})
    options = ImportOptions(
        name=name,
        window_size=window_size or entry.get("window_size"),
        use_tf_gamma=bool(entry.get("use_tf_gamma", False)) and (window_size in (None, entry.get("window_size"))),
        track=output_spec.get("track"),
        center_bins=output_spec.get("center_bins"),
        stat=output_spec.get("stat"),
        genes_path=genes_path,
        reference_fasta=reference_fasta,
        genome_build=entry.get("genome_build"),
        licence=entry.get("licence"),
        citation=entry.get("citation"),
        source={
            "registry": name,
            "hub": sources,
            "endpoint": endpoint or "https://huggingface.co",
            "tracks": entry.get("tracks"),
        },
    )
    return import_checkpoints(directories, output, options, format=entry.get("format"))
