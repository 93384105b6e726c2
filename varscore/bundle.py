"""Model bundles: a directory with ``varscore.json`` (the manifest) and ``weights.safetensors``.

Names resolve in order: an existing path; ``$VARSCORE_MODELS``; the user cache
(``~/.cache/varscore/models``); the bundled demo models (package data, ``varscore/examples/models``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varscore import __version__
from varscore.errors import BundleError, ModelNotFoundError
from varscore.types import Gene

MANIFEST = "varscore.json"
WEIGHTS = "weights.safetensors"
SCHEMA_VERSION = 1
RECIPE_HINTS = {
    "variformer-blood": (
        "Train it with the paper's recipe on GTEx v8 WGS + Whole Blood expression (dbGaP phs000424): "
        "'varscore finetune --recipe variformer-blood ...'"
    ),
}


def user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "varscore" / "models"


def bundled_models() -> Path:
    from varscore.examples import models_dir

    return models_dir()


def search_path() -> list[Path]:
    """Directories searched for model names, in order."""
    dirs = [Path(p) for p in os.environ.get("VARSCORE_MODELS", "").split(os.pathsep) if p]
    return [*dirs, user_cache(), bundled_models()]


def resolve_model(name: str | Path) -> Path:
    """The bundle directory for a path or a name; :class:`ModelNotFoundError` says what to do."""
    candidate = Path(name)
    if candidate.exists():
        if not (candidate / MANIFEST).exists():
            raise BundleError(f"{candidate} is not a model bundle: it has no {MANIFEST}.")
        return candidate
    for directory in search_path():
        path = directory / str(name)
        if (path / MANIFEST).exists():
            return path
    searched = ", ".join(str(d) for d in search_path())
    from varscore.hub import model_hint

    hint = RECIPE_HINTS.get(str(name)) or model_hint(str(name)) or "Train one with 'varscore finetune'"
    raise ModelNotFoundError(
        f"Unknown model '{name}' (searched {searched}). {hint}, or install a bundle with "
        "'varscore models install PATH', or pass a bundle directory. 'varscore models list' shows "
        "the installed ones."
    )


@dataclass
class ModelBundle:
    """A loaded manifest; :meth:`backbone` and :meth:`output_mode` build the plugin objects."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def genes(self) -> list[Gene]:
        return [Gene(**g) for g in self.manifest.get("genes", [])]

    @property
    def reference_fasta(self) -> Path | None:
        reference = self.manifest.get("reference") or {}
        candidates = [reference.get("fasta"), reference.get("fasta_absolute")]
        paths = [Path(c) if Path(c).is_absolute() else (self.path / c).resolve() for c in candidates if c]
        return next((p for p in paths if p.exists()), paths[0] if paths else None)

    def backbone(self) -> Any:
        """The backbone with its weights loaded."""
        from varscore.plugins import get_backbone

        spec = self.manifest["backbone"]
        cls = get_backbone(spec["name"], distribution=spec.get("distribution"))
        return cls(**spec.get("params", {})).load(self.path)

    def sequence_backbone(self, device: str = "auto", bf16: bool = False) -> Any:
        """The backbone loaded and placed on ``device``, for scoring windows of sequence by ISM;
        genotype models (linear backbones) are refused."""
        from varscore.errors import InputError

        backbone = self.backbone()
        if backbone.input_kind != "sequence":
            raise InputError(f"Model '{self.name}' takes genotypes, not sequence; it cannot score a VCF by ISM.")
        backbone.configure(device=device, bf16=bf16)
        return backbone

    def output_mode(self) -> Any:
        from varscore.plugins import check_output_mode, get_backbone, get_output_mode, manager

        spec = self.manifest.get("output_mode", {"name": "scalar"})
        backbone = self.manifest["backbone"]
        if backbone["name"] in manager.registry.entries["backbones"]:
            check_output_mode(get_backbone(backbone["name"]), spec["name"])
        return get_output_mode(spec["name"])(**spec.get("params", {}))


def load_bundle(name: str | Path) -> ModelBundle:
    path = resolve_model(name)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / MANIFEST} is not valid JSON: {exc}.") from exc
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{path} has manifest schema version {version}; this varscore reads version {SCHEMA_VERSION}. "
            "Upgrade varscore or re-export the bundle."
        )
    for key in ("backbone",):
        if key not in manifest:
            raise BundleError(f"{path / MANIFEST} lacks the '{key}' field.")
    return ModelBundle(path, manifest)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``target`` that replaces it when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp/mkstemp create private modes; bundles are shared
        for child in tmp.rglob("*"):
            child.chmod((0o777 if child.is_dir() else 0o666) & ~umask)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _provider(backbone_name: str) -> dict[str, str]:
    """The installed package that provides a backbone, recorded so a missing plugin can be named."""
    from varscore.plugins import manager

    found = manager.distribution_of("backbones", backbone_name)
    return {"distribution": found[0], "distribution_version": found[1]} if found else {}


def save_bundle(
    directory: str | Path,
    *,
    name: str,
    backbone: Any,
    output_mode: Any,
    genes: list[Gene],
    reference_fasta: str | Path | None = None,
    tissue: str | None = None,
    genome_build: str | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, str | Path] | None = None,
) -> Path:
    """Write a bundle atomically: a temporary directory renamed into place when complete.

    ``files`` maps names inside the bundle to files copied in (e.g. ``{"folds.tsv": path}``).

    ``reference_fasta`` is stored relative to the bundle when it lies beside it (so a copied
    example keeps working), otherwise absolute.
    """
    target = Path(directory)
    with _atomic_directory(target) as tmp:
        backbone.save(tmp)
        fasta_entry = None
        if reference_fasta is not None:
            fasta = Path(reference_fasta).resolve()
            try:
                fasta_entry = os.path.relpath(fasta, target.resolve())
            except ValueError:
                fasta_entry = str(fasta)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "varscore_version": __version__,
            "backbone": {"name": backbone.name, "params": backbone.params, **_provider(backbone.name)},
            "output_mode": {"name": output_mode.name, "params": output_mode.params},
            "window_size": backbone.window_size,
            "bin_size": backbone.bin_size,
            "tissue": tissue,
            "genome_build": genome_build,
            "reference": {
                "fasta": fasta_entry,
                "fasta_absolute": str(Path(reference_fasta).resolve()) if reference_fasta else None,
            },
            "genes": [g.__dict__ for g in genes],
            "metrics": metrics or {},
            "provenance": {**(provenance or {}), "weights_sha256": sha256(tmp / WEIGHTS)},
            **(extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        for inside, source in (files or {}).items():
            shutil.copyfile(source, tmp / inside)
    return target


def list_models() -> list[tuple[str, Path]]:
    """Every bundle on the search path as ``(name, path)``; earlier directories shadow later ones."""
    seen: dict[str, Path] = {}
    for directory in search_path():
        if not directory.is_dir():
            continue
        for child in sorted(directory.iterdir()):
            if (child / MANIFEST).exists() and child.name not in seen:
                seen[child.name] = child
    return sorted(seen.items())


def install_bundle(source: str | Path, expected_sha256: str | None = None, name: str | None = None) -> Path:
    """Copy a bundle directory into the user cache, verifying its weights' checksum."""
    src = resolve_model(source)
    manifest = json.loads((src / MANIFEST).read_text())
    actual = sha256(src / WEIGHTS)
    recorded = manifest.get("provenance", {}).get("weights_sha256")
    for label, expected in (("--sha256", expected_sha256), ("the manifest", recorded)):
        if expected and expected != actual:
            raise BundleError(
                f"Checksum mismatch for {src / WEIGHTS}: {label} says {expected}, the file is {actual}. "
                "The download is incomplete or the bundle was altered."
            )
    dest = user_cache() / (name or src.name)
    with _atomic_directory(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return dest
