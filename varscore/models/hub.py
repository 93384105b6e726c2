"""``varscore models fetch NAME``: download a published checkpoint from the Hugging Face Hub, verify
every file's sha256, and import it as a model bundle (:mod:`varscore.models.checkpoints`).

The known models are listed in ``published_models.json`` beside this module: for each, the Hub
repositories (one per replicate) with a pinned revision and the files to fetch. A file's entry is its
sha256 (or null where none is publicly documented), or ``{"sha256": ..., "size": ...}`` to also
record its size in bytes, which then caps the download and must match the size the server
announces. Where the registry records no sha256, the file is checked against the sha256 the Hub
reports for it (the ETag of a Git LFS file is its sha256; a small file stored in Git has its Git blob
id, the SHA-1 of ``"blob <size>\\0" + content``, which is checked instead). The Hub cache names each
downloaded file by that ETag, so the same check runs offline from the cache.

Downloads go through the download guard :mod:`varscore.io.download` (names the server sends are
validated before anything touches disk; sizes and socket operations are bounded; partial files are
resumed; the Hub cache ``HF_HUB_CACHE`` / ``HF_HOME`` is shared with other tools).
``HF_HUB_OFFLINE=1`` uses the cache only; ``HF_ENDPOINT`` (or ``endpoint=``) points at another Hub
server; ``HF_TOKEN`` is sent to that server only. Nothing is downloaded unless :func:`fetch_model`
is called.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from varscore.errors import InputError
from varscore.io import download
from varscore.io.download import GIT_SHA1 as GIT_SHA1
from varscore.io.download import SHA256 as SHA256
from varscore.io.download import DownloadError as DownloadError
from varscore.io.download import verify_file as verify_file

logger = logging.getLogger(__name__)

REGISTRY_FILE = Path(__file__).with_name("published_models.json")


@cache
def _catalogue() -> dict[str, Any]:
    """``published_models.json``, read once."""
    return dict(json.loads(REGISTRY_FILE.read_text()))


def registry() -> dict[str, dict[str, Any]]:
    """The known published models by name."""
    return dict(_catalogue()["models"])


@dataclass(frozen=True)
class Recipe:
    """Named settings for a tissue (the paper's, e.g. ``variformer-blood``): ``settings`` (window,
    lr, batch_size, accumulate, grad_clip, patience, people_per_epoch, max_epochs, tissue) sit under
    the job's own; ``pretrained`` names the model it starts from and ``pretrained_form`` the local
    directory ``--pretrained`` must hold."""

    name: str
    description: str
    pretrained: str
    pretrained_form: str
    trained_on: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class FinetuneDefaults:
    """The catalogue's fine-tuning defaults: the backbone trained when none is named, the recipes
    by name, and each backbone's full-size weight count (for the from-scratch refusal)."""

    backbone: str
    recipes: dict[str, Recipe]
    full_size_weights: dict[str, str]


@cache
def finetune_defaults() -> FinetuneDefaults:
    """The ``finetuning`` section of ``varscore/models/published_models.json``."""
    section = _catalogue()["finetuning"]
    recipes = {
        name: Recipe(
            name=name,
            description=str(entry["description"]),
            pretrained=str(entry["pretrained"]),
            pretrained_form=str(entry["pretrained_form"]),
            trained_on=str(entry["trained_on"]),
            settings=dict(entry["settings"]),
        )
        for name, entry in section["recipes"].items()
    }
    return FinetuneDefaults(
        backbone=str(section["default_backbone"]),
        recipes=recipes,
        full_size_weights={str(k): str(v) for k, v in section["full_size_weights"].items()},
    )


def default_backbone() -> str:
    """The backbone ``varscore finetune`` trains without ``--backbone`` (the catalogue's)."""
    return finetune_defaults().backbone


def recipe_names() -> list[str]:
    """The recipes ``--recipe`` accepts, sorted."""
    return sorted(finetune_defaults().recipes)


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


@dataclass
class FetchedFile:
    filename: str
    path: Path
    sha256: str
    commit: str | None


def file_spec(repo: str, filename: str, value: Any) -> tuple[str | None, int | None]:
    """``(sha256, size)`` of a registry file entry: a sha256 string or null, or an object
    ``{"sha256": str | null, "size": int}`` (either key may be left out)."""
    if value is None or isinstance(value, str):
        return value, None
    if isinstance(value, dict) and set(value) <= {"sha256", "size"}:
        sha, size = value.get("sha256"), value.get("size")
        if (sha is None or isinstance(sha, str)) and (size is None or (type(size) is int and size > 0)):
            return sha, size
    raise InputError(
        f"{REGISTRY_FILE.name}: {repo}/{filename} must map to a sha256 string, null, or "
        f'{{"sha256": ..., "size": bytes}}; got {value!r}.'
    )


def fetch_file(
    repo: str,
    filename: str,
    revision: str,
    expected_sha256: str | None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    expected_size: int | None = None,
    limits: download.Limits | None = None,
) -> FetchedFile:
    """One file of a Hub repository through the Hub cache, verified (a bad file is removed), by
    :func:`varscore.io.download.fetch` (``expected_size`` and ``limits`` bound it)."""
    fetched = download.fetch(
        repo,
        filename,
        revision,
        expected_sha256=expected_sha256,
        expected_size=expected_size,
        endpoint=endpoint,
        cache_dir=cache_dir,
        limits=limits,
    )
    return FetchedFile(filename, fetched.path, fetched.sha256, fetched.commit)


def fetch_model(
    name: str,
    output: str | Path | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    genes_path: Path | None = None,
    reference_fasta: Path | None = None,
    window_size: int | None = None,
    limits: download.Limits | None = None,
) -> Path:
    """Download (or take from the Hub cache) every file of the published model ``name``, verify
    them, and import them as a bundle at ``output`` (default: the user model cache, so that
    ``--model NAME`` finds it). ``limits`` (:class:`varscore.io.download.Limits`) cap each file
    whose size the registry does not record and bound each socket operation. Returns the bundle
    directory."""
    from varscore.models.bundle import user_cache
    from varscore.models.checkpoints import ImportOptions, import_checkpoints

    entry = model_entry(name)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    directories: list[Path] = []
    sources: list[dict[str, Any]] = []
    for replicate in entry["replicates"]:
        repo, revision = replicate["repo"], replicate.get("revision", "main")
        fetched = []
        for filename, spec in replicate["files"].items():
            sha, size = file_spec(repo, filename, spec)
            fetched.append(
                fetch_file(
                    repo,
                    filename,
                    revision,
                    sha,
                    endpoint=endpoint,
                    cache_dir=cache_dir,
                    expected_size=size,
                    limits=limits,
                )
            )
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
        window_size=entry.get("window_size") if window_size is None else window_size,
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
