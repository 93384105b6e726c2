"""Model bundles: a directory with ``varscore.json`` (the manifest) and ``weights.safetensors``.

Names resolve in order: an existing path; ``$VARSCORE_MODELS``; the user cache
(``~/.cache/varscore/models``); the bundled demo models (package data, ``varscore/examples/models``).

Security model: the manifest records the sha256 of every file in the bundle and every load verifies
them (a bundle without checksums is refused unless the user trusts it explicitly); a bundle holds only
regular files and names only files inside itself; model sizes are bounded before anything is
allocated; no path of the machine that made a bundle is recorded (the reference is named by build,
contig lengths and MD5s). Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varscore import __version__
from varscore.errors import BundleError, InputError, ModelNotFoundError
from varscore.genome.reference import ReferenceRecord, fasta_search_path
from varscore.io.integrity import check_regular_files, file_checksums, inside, plain_name, sha256, verified_sha256
from varscore.io.outputguard import atomic_directory
from varscore.types import Gene

if TYPE_CHECKING:
    from varscore.plugin.contracts import Backbone, GenotypeBackbone, OutputMode, SequenceBackbone

__all__ = [
    "FoldsRecord",
    "LoadSettings",
    "Manifest",
    "ModelBundle",
    "PluginSpec",
    "configure_loading",
    "install_bundle",
    "list_models",
    "load_bundle",
    "loading_settings",
    "loading_with",
    "resolve_model",
    "save_bundle",
    "sha256",
]

MANIFEST = "varscore.json"
WEIGHTS = "weights.safetensors"
SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20
TRUST_ENV = "VARSCORE_TRUST_UNVERIFIED"
RECIPE_HINTS = {
    "variformer-blood": (
        "Train it with the paper's recipe on GTEx v8 WGS + Whole Blood expression (dbGaP phs000424): "
        "'varscore models fetch enformer --pretrained-dir enformer-pretrained', then 'varscore finetune "
        "--recipe variformer-blood --pretrained enformer-pretrained --replicates 3 ...'"
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
    from varscore.models.hub import model_hint

    hint = RECIPE_HINTS.get(str(name)) or model_hint(str(name)) or "Train one with 'varscore finetune'"
    raise ModelNotFoundError(
        f"Unknown model '{name}' (searched {searched}). {hint}, or install a bundle with "
        "'varscore models install PATH', or pass a bundle directory. 'varscore models list' shows "
        "the installed ones."
    )


@dataclass(frozen=True)
class PluginSpec:
    """A backbone or output mode a manifest names: its registered ``name`` and ``params``; a
    backbone also records the distribution that provided it."""

    name: str
    params: dict[str, Any]
    distribution: str | None = None
    distribution_version: str | None = None


@dataclass(frozen=True)
class FoldsRecord:
    """The fold file a bundle carries (inside the bundle) and the replicate it was trained on."""

    file: str | None
    replicate: int


@dataclass(frozen=True)
class Manifest:
    """A bundle manifest (``varscore.json``) as typed fields, from the one validating loader
    :meth:`from_dict` (what :func:`validate_manifest` accepts). ``raw`` keeps every field as read,
    including those this version does not type (metrics, provenance, calibration, replicates)."""

    name: str | None
    backbone: PluginSpec
    output_mode: PluginSpec
    window_size: int | None
    bin_size: int | None
    genome_build: str | None
    tissue: str | None
    genes: tuple[Gene, ...]
    train_genes: tuple[str, ...]
    people: dict[str, tuple[str, ...]]
    folds: FoldsRecord | None
    files: dict[str, str]
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, manifest: Any, where: str = MANIFEST) -> Manifest:
        data = validate_manifest(manifest, where)
        backbone, output = data["backbone"], data.get("output_mode", {"name": "scalar"})
        folds = data.get("folds")
        return cls(
            name=data.get("name"),
            backbone=PluginSpec(
                backbone["name"],
                dict(backbone.get("params", {})),
                backbone.get("distribution"),
                backbone.get("distribution_version"),
            ),
            output_mode=PluginSpec(output["name"], dict(output.get("params", {}))),
            window_size=data.get("window_size"),
            bin_size=data.get("bin_size"),
            genome_build=data.get("genome_build"),
            tissue=data.get("tissue"),
            genes=tuple(Gene(**g) for g in data.get("genes", [])),
            train_genes=tuple(data.get("train_genes") or ()),
            people={split: tuple(people) for split, people in (data.get("people") or {}).items()},
            folds=FoldsRecord(folds.get("file"), int(folds.get("replicate", 0))) if folds else None,
            files=dict(data.get("files") or {}),
            raw=data,
        )

    def held_out(self, split: str = "test") -> list[str]:
        """The people the manifest records for ``split`` (``train``, ``tune`` or ``test``)."""
        return list(self.people.get(split, ()))

    @property
    def trained_genes(self) -> set[str]:
        """Gene ids the model was trained on (``train_genes``, else every gene it records)."""
        return set(self.train_genes) or {g.gene_id for g in self.genes}


@dataclass
class ModelBundle:
    """A loaded manifest; :meth:`backbone` and :meth:`output_mode` build the plugin objects."""

    path: Path
    manifest: dict[str, Any]

    @functools.cached_property
    def spec(self) -> Manifest:
        """The manifest as typed fields (validated)."""
        return Manifest.from_dict(self.manifest, str(self.path / MANIFEST))

    @property
    def window_size(self) -> int:
        """Input length in bp (a one-line error when the manifest lacks it)."""
        if self.spec.window_size is None:
            raise BundleError(f"{self.path / MANIFEST} records no window_size.")
        return self.spec.window_size

    def carried_folds(self) -> tuple[Path, int] | None:
        """The fold file the bundle carries (inside its directory) and the replicate it was trained
        on, or None when it carries none."""
        record = self.spec.folds
        if record is None or not record.file:
            return None
        path = inside(self.path, record.file, "folds.file")
        return (path, record.replicate) if path.exists() else None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def genes(self) -> list[Gene]:
        return [Gene(**g) for g in self.manifest.get("genes", [])]

    @property
    def genome_build(self) -> str | None:
        build = self.manifest.get("genome_build")
        return str(build) if build else None

    @property
    def reference(self) -> ReferenceRecord | None:
        """The reference the model was trained on, by identity (name, build, contigs)."""
        data = self.manifest.get("reference")
        if isinstance(data, dict) and "contigs" in data:
            return ReferenceRecord.from_json(data, str(self.path / MANIFEST))
        return None

    @property
    def reference_fasta(self) -> Path | None:
        """The model's reference FASTA found on this machine (see :func:`resolve_reference`), or None."""
        record = self.reference
        if record is not None:
            return record.find(fasta_search_path(self.path), self.path)
        legacy = (self.manifest.get("reference") or {}).get("fasta")
        if isinstance(legacy, str) and legacy:
            with contextlib.suppress(BundleError):
                found = inside(self.path, legacy, "reference.fasta")
                return found if found.exists() else None
        return None

    def resolve_reference(self, fasta: str | Path | None = None, check: bool = True) -> Path:
        """The FASTA to score with: ``fasta`` when given, else the model's reference found on the
        search path; checked against the recorded contig lengths (another build is an error) unless
        ``check`` is False (then call :meth:`check_reference` later)."""
        record = self.reference
        path = Path(fasta) if fasta is not None else self.reference_fasta
        if path is None:
            where = ", ".join(str(d) for d in fasta_search_path(self.path))
            wanted = f"{record.name} ({record.build or 'build not recorded'})" if record else "its reference FASTA"
            raise InputError(
                f"Model '{self.name}' needs {wanted}: pass it with --fasta, or put it in $VARSCORE_FASTA_DIR "
                f"(searched {where})."
            )
        if not path.exists():
            raise InputError(f"FASTA file not found: {path}. Pass an existing file with --fasta.")
        if check:
            self.check_reference(path)
        return path

    def check_reference(self, fasta: Path) -> None:
        """Raise :class:`InputError` when ``fasta`` is not the model's recorded reference."""
        record = self.reference
        if record is not None:
            record.check(fasta)

    def backbone(self) -> Backbone:
        """The backbone with its weights loaded."""
        return self.backbone_class()(**self.manifest["backbone"].get("params", {})).load(self.path)

    def backbone_class(self) -> type[Backbone]:
        """The class of the manifest's backbone (a one-line error names the missing plugin)."""
        from varscore.plugin.manager import get_backbone

        spec = self.manifest["backbone"]
        return get_backbone(spec["name"], distribution=spec.get("distribution"))

    @property
    def takes_genotypes(self) -> bool:
        """Whether the model is a :class:`~varscore.plugin.contracts.GenotypeBackbone` (variant dosages in)."""
        from varscore.plugin.contracts import GenotypeBackbone

        return issubclass(self.backbone_class(), GenotypeBackbone)

    def genotype_backbone(self) -> GenotypeBackbone:
        """The backbone loaded, for scoring variants by a genotype model's variant effects;
        sequence models are refused."""
        from varscore.errors import InputError
        from varscore.plugin.contracts import GenotypeBackbone

        backbone = self.backbone()
        if not isinstance(backbone, GenotypeBackbone):
            raise InputError(f"Model '{self.name}' takes sequence, not genotypes.")
        return backbone

    def sequence_backbone(self, device: str = "auto", bf16: bool = False) -> SequenceBackbone:
        """The backbone loaded and placed on ``device``, for scoring windows of sequence by ISM;
        genotype models are refused."""
        from varscore.errors import InputError
        from varscore.plugin.contracts import SequenceBackbone

        backbone = self.backbone()
        if not isinstance(backbone, SequenceBackbone):
            raise InputError(f"Model '{self.name}' takes genotypes, not sequence; it cannot score a VCF by ISM.")
        backbone.configure(device=device, bf16=bf16)
        return backbone

    def output_mode(self) -> Any:
        from varscore.plugin.manager import check_output_mode, get_backbone, get_output_mode, manager

        spec = self.manifest.get("output_mode", {"name": "scalar"})
        backbone = self.manifest["backbone"]
        if backbone["name"] in manager.registry.entries["backbones"]:
            check_output_mode(get_backbone(backbone["name"]), spec["name"])
        return get_output_mode(spec["name"])(**spec.get("params", {}))


def load_bundle(name: str | Path, trust_unverified: bool | None = None) -> ModelBundle:
    """The bundle for a name or path, its manifest validated and every file verified against the
    checksums the manifest records (see :func:`verify_files`)."""
    path = resolve_model(name)
    check_regular_files(path)
    manifest = read_manifest(path)
    verify_files(path, manifest, trust_unverified)
    return ModelBundle(path, manifest)


def _type_name(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _require(where: str, field: str, value: Any, kinds: tuple[type, ...], label: str) -> None:
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        shown = f" {value!r}" if isinstance(value, (str, int, float)) else ""
        raise BundleError(f"{where}: '{field}' must be {label}; got {_type_name(value)}{shown}.")


def validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """``manifest`` when every field a loader reads has the right type; else a one-line
    :class:`BundleError` naming the field, what it must be and what was found."""
    _require(where, "manifest", manifest, (dict,), "a JSON object")
    version = manifest.get("schema_version")
    _require(where, "schema_version", version, (int,), "an integer")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{where} has manifest schema version {version}; this varscore reads version {SCHEMA_VERSION}. "
            "Upgrade varscore or re-export the bundle."
        )
    for key in ("backbone", "output_mode"):
        if key not in manifest and key == "backbone":
            raise BundleError(f"{where} lacks the 'backbone' field.")
        spec = manifest.get(key, {"name": "scalar"})
        _require(where, key, spec, (dict,), "an object with 'name' and 'params'")
        _require(where, f"{key}.name", spec.get("name"), (str,), "a string")
        _require(where, f"{key}.params", spec.get("params", {}), (dict,), "an object")
    for key in ("window_size", "bin_size"):
        if key in manifest:
            _require(where, key, manifest[key], (int,), "a positive integer")
            if manifest[key] <= 0:
                raise BundleError(f"{where}: '{key}' must be a positive integer; got {manifest[key]}.")
    for key in ("name", "genome_build", "tissue"):
        if manifest.get(key) is not None:
            _require(where, key, manifest[key], (str,), "a string or null")
    for key in ("metrics", "provenance", "files", "folds", "reference"):
        if manifest.get(key) is not None:
            _require(where, key, manifest[key], (dict,), "an object")
    genes = manifest.get("genes", [])
    _require(where, "genes", genes, (list,), "a list of genes")
    fields = {"gene_id": (str,), "chrom": (str,), "tss": (int,), "strand": (str,), "name": (str,)}
    for i, gene in enumerate(genes):
        _require(where, f"genes[{i}]", gene, (dict,), "an object with gene_id, chrom, tss, strand")
        unknown = sorted(set(gene) - set(fields))
        if unknown or any(k not in gene for k in ("gene_id", "chrom", "tss", "strand")):
            raise BundleError(
                f"{where}: genes[{i}] must have gene_id, chrom, tss, strand (and name); got {sorted(gene)}."
            )
        for key, kinds in fields.items():
            if key in gene:
                _require(where, f"genes[{i}].{key}", gene[key], kinds, "an integer" if key == "tss" else "a string")
        if gene["tss"] <= 0 or gene["strand"] not in ("+", "-"):
            raise BundleError(f"{where}: genes[{i}] needs a 1-based tss > 0 and strand + or -; got {gene}.")
    for name, digest in (manifest.get("files") or {}).items():
        _require(where, f"files[{name!r}]", digest, (str,), "a sha256 hex string")
    if manifest.get("train_genes") is not None:
        _require(where, "train_genes", manifest["train_genes"], (list,), "a list of gene ids")
    if manifest.get("people") is not None:
        _require(where, "people", manifest["people"], (dict,), "an object of train/tune/test lists")
        for split, people in manifest["people"].items():
            _require(where, f"people[{split!r}]", people, (list,), "a list of person ids")
    if manifest.get("folds") is not None and manifest["folds"].get("replicate") is not None:
        _require(where, "folds.replicate", manifest["folds"]["replicate"], (int,), "an integer")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The validated manifest of the bundle directory ``path``."""
    file = path / MANIFEST
    try:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{file} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; it is not a bundle manifest.")
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file} is not valid JSON: {exc}.") from exc
    except OSError as exc:
        raise BundleError(f"Cannot read {file}: {exc.strerror or exc}.") from exc
    return validate_manifest(manifest, str(file))


def recorded_checksums(manifest: dict[str, Any]) -> dict[str, str]:
    """``{file inside the bundle: sha256}`` as the manifest records it (``files``; older bundles
    recorded only ``provenance.weights_sha256``)."""
    files = manifest.get("files")
    if files:
        return {str(k): str(v) for k, v in files.items()}
    legacy = (manifest.get("provenance") or {}).get("weights_sha256")
    return {WEIGHTS: str(legacy)} if legacy else {}


@dataclass(frozen=True)
class LoadSettings:
    """How this process loads model bundles, set once by the CLI (``--trust-unverified``,
    ``--allow-large-models``) or a Python caller through :func:`configure_loading`, and handed to the
    worker processes that load a bundle themselves. ``trust_unverified``: accept a bundle whose
    manifest records no checksums; ``allow_large_models``: build models above the size limits that
    protect against bad manifests. ``$VARSCORE_TRUST_UNVERIFIED=1`` and
    ``$VARSCORE_ALLOW_LARGE_MODELS=1`` set either for a whole environment."""

    trust_unverified: bool = False
    allow_large_models: bool = False


_trusted = [False]  # this process's LoadSettings.trust_unverified


def configure_loading(settings: LoadSettings) -> LoadSettings:
    """Make ``settings`` this process's way of loading bundles; returns the previous settings
    (environment overrides not included)."""
    from varscore.plugin.contracts import allow_large_models

    previous_trust, _trusted[0] = _trusted[0], settings.trust_unverified
    return LoadSettings(previous_trust, allow_large_models(settings.allow_large_models))


@contextlib.contextmanager
def loading_with(settings: LoadSettings) -> Iterator[LoadSettings]:
    """:func:`configure_loading` while active (one CLI command), the previous settings restored after."""
    previous = configure_loading(settings)
    try:
        yield settings
    finally:
        configure_loading(previous)


def loading_settings() -> LoadSettings:
    """This process's :class:`LoadSettings`, environment overrides included."""
    from varscore.plugin.contracts import large_models_allowed

    return LoadSettings(trusting_unverified(), large_models_allowed())


def trusting_unverified(trust_unverified: bool | None = None) -> bool:
    """Whether a bundle without checksums loads: ``trust_unverified``, this process's
    :class:`LoadSettings`, or ``$VARSCORE_TRUST_UNVERIFIED=1``."""
    return bool(trust_unverified) or _trusted[0] or os.environ.get(TRUST_ENV, "") not in ("", "0")


def verify_files(path: Path, manifest: dict[str, Any], trust_unverified: bool | None = None) -> None:
    """Check every file the manifest names against its recorded sha256 (the verdict is cached by
    size, mtime and inode, so an unchanged file is hashed once). A bundle recording no checksum, or
    holding a weights file it does not cover, is refused unless ``trust_unverified`` (or
    :func:`trusting_unverified`: the CLI's ``--trust-unverified``, ``$VARSCORE_TRUST_UNVERIFIED=1``)."""
    expected = recorded_checksums(manifest)
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    unlisted = sorted(n for n in present - set(expected) if n.endswith(".safetensors"))
    if not expected or unlisted:
        if trusting_unverified(trust_unverified):
            return
        what = (
            "records no checksums"
            if not expected
            else f"has weights its manifest does not cover ({', '.join(unlisted)})"
        )
        raise BundleError(
            f"Bundle {path} {what}, so its weights cannot be verified. Re-save it with this varscore, or pass "
            "--trust-unverified if you trust where it came from."
        )
    for name, digest in expected.items():
        file = inside(path, name, f"file {name!r}")
        if not file.is_file():
            raise BundleError(f"Bundle {path} lacks {name}, which its manifest lists. Re-copy the bundle.")
        actual = verified_sha256(file)
        if actual != digest:
            raise BundleError(
                f"Checksum mismatch for {file}: the manifest records {digest}, the file is {actual}. "
                "The copy is incomplete or the bundle was altered; re-copy or re-install it."
            )
    for key, spec in (("folds", manifest.get("folds")),):
        if isinstance(spec, dict) and spec.get("file"):
            inside(path, spec["file"], f"{key}.file")


def _atomic_directory(target: Path) -> contextlib.AbstractContextManager[Path]:
    """A temporary directory that replaces the bundle ``target`` (new, empty, or a bundle) on success."""
    return atomic_directory(target, MANIFEST, "a model bundle")


def _provider(backbone_name: str) -> dict[str, str]:
    """The installed package that provides a backbone, recorded so a missing plugin can be named."""
    from varscore.plugin.manager import manager

    found = manager.distribution_of("backbones", backbone_name)
    return {"distribution": found[0], "distribution_version": found[1]} if found else {}


def portable(value: Any) -> Any:
    """``value`` with every absolute path replaced by its base name: provenance keeps what a file
    was called, never where it lay on the machine that made the bundle."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value) and "\n" not in value):
        return Path(value).name
    return value


@dataclass(frozen=True)
class BundleMetadata:
    """What a bundle records besides its model: the reference FASTA (by identity), the tissue, the
    genome build, training metrics, provenance and extra top-level manifest keys."""

    reference_fasta: str | Path | None = None
    tissue: str | None = None
    genome_build: str | None = None
    metrics: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


def save_bundle(
    directory: str | Path,
    *,
    name: str,
    backbone: Backbone,
    output_mode: OutputMode,
    genes: list[Gene],
    about: BundleMetadata | None = None,
    files: dict[str, str | Path] | None = None,
) -> Path:
    """Write a bundle atomically: a temporary directory renamed into place when complete.

    ``files`` maps names inside the bundle to files copied in (e.g. ``{"folds.tsv": path}``).
    The reference is recorded by identity (:class:`~varscore.genome.reference.ReferenceRecord`: file name,
    build, contig lengths and MD5s; the build is inferred from the lengths when not given), and the
    manifest records the sha256 of every file written. Absolute paths in ``provenance`` and
    ``extra`` are reduced to base names.
    """
    about = about or BundleMetadata()
    reference_fasta, tissue, genome_build = about.reference_fasta, about.tissue, about.genome_build
    metrics, provenance, extra = about.metrics, about.provenance, about.extra
    target = Path(directory)
    record = ReferenceRecord.of(Path(reference_fasta), genome_build, target) if reference_fasta is not None else None
    with _atomic_directory(target) as tmp:
        backbone.save(tmp)
        for inside_name, source in (files or {}).items():
            shutil.copyfile(source, inside(tmp, inside_name, "bundle file"))
        weights = tmp / WEIGHTS
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "varscore_version": __version__,
            "backbone": {"name": backbone.name, "params": portable(backbone.params), **_provider(backbone.name)},
            "output_mode": {"name": output_mode.name, "params": output_mode.params},
            "window_size": backbone.window_size,
            "bin_size": backbone.bin_size,
            "tissue": tissue,
            "genome_build": genome_build or (record.build if record else None),
            "reference": record.to_json() if record else None,
            "genes": [g.__dict__ for g in genes],
            "metrics": metrics or {},
            "provenance": portable(
                {**(provenance or {}), **({"weights_sha256": sha256(weights)} if weights.exists() else {})}
            ),
            **portable(extra or {}),
            "files": file_checksums(tmp, exclude=(MANIFEST,)),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return target


def rewrite_manifest(path: Path, update: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    """Replace a bundle atomically with its manifest updated by ``update`` (top-level keys) and
    ``files`` (name -> content) added; checksums are recomputed for every file."""
    bundle = load_bundle(path)
    with _atomic_directory(bundle.path) as tmp:
        shutil.copytree(bundle.path, tmp, dirs_exist_ok=True)
        for inside_name, content in (files or {}).items():
            inside(tmp, inside_name, "bundle file").write_bytes(content)
        manifest = {**bundle.manifest, **update}
        manifest["files"] = file_checksums(tmp, exclude=(MANIFEST,))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return bundle.path


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


def install_bundle(
    source: str | Path,
    expected_sha256: str | None = None,
    name: str | None = None,
    trust_unverified: bool | None = None,
) -> Path:
    """Copy a bundle directory into the user cache under a plain ``name``, after validating it
    exactly as loading does (manifest, checksums, regular files only, backbone and weights)."""
    bundle = load_bundle(source, trust_unverified)
    target_name = plain_name(name if name is not None else bundle.path.resolve().name)
    if expected_sha256:
        actual = verified_sha256(bundle.path / WEIGHTS)
        if expected_sha256.lower() != actual:
            raise BundleError(
                f"Checksum mismatch for {bundle.path / WEIGHTS}: --sha256 says {expected_sha256}, the file is "
                f"{actual}. The download is incomplete or the bundle was altered."
            )
    bundle.output_mode()  # the output mode exists and suits the backbone,
    bundle.backbone()  # and the backbone builds and its weights load, as annotate would do
    cache = user_cache()
    dest = cache / target_name
    if dest.resolve().parent != cache.resolve():
        raise InputError(f"Bundle name {target_name!r} would install outside {cache}.")
    with _atomic_directory(dest) as tmp:
        shutil.copytree(bundle.path, tmp, dirs_exist_ok=True, symlinks=True)
        check_regular_files(tmp)
        verify_files(tmp, read_manifest(tmp), trust_unverified)
    return dest


def count_parameters(path: Path) -> int:
    """The number of values stored in a safetensors file, read from its JSON header alone."""
    import struct

    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} is not a safetensors file (header of {length} bytes).")
        header = json.loads(handle.read(length))
    total = 0
    for key, info in header.items():
        if key != "__metadata__":
            size = 1
            for dim in info["shape"]:
                size *= int(dim)
            total += size
    return total


def _calibration_summary(entry: Any) -> str:
    """What the manifest's ``calibration`` entry says the bundle is calibrated for: gene-window
    scoring (``gene-window``), variant-centred scoring (the top-level fields), both or neither."""
    if not isinstance(entry, dict):
        return "none (varscore models calibrate NAME BACKGROUND.vcf.gz adds VARSCORE_Q)"
    parts = []
    gene = entry.get("gene-window")
    if isinstance(gene, dict):
        parts.append(f"--mode gene on {gene.get('records')} background records ({gene.get('genes')} genes)")
    if isinstance(entry.get("stats"), list):
        tracks = entry.get("tracks")
        parts.append(
            f"--mode variant on {entry.get('records')} background records ({','.join(map(str, entry['stats']))}; "
            f"{len(tracks) if isinstance(tracks, list) else '?'} tracks; {entry.get('centring')} centring)"
        )
    return "; ".join(parts) or "calibration.json (parts not recorded in the manifest)"


def summarise_bundle(bundle: ModelBundle) -> str:
    """A few lines a person reads: what the model is, what it was trained on, how well it did."""
    m = bundle.manifest
    spec, mode = m["backbone"], m.get("output_mode", {"name": "scalar"})
    params = spec.get("params", {})
    shown = {k: params[k] for k in ("head", "dim", "depth", "heads", "alpha", "l1_ratio") if k in params}
    weights = [n for n in recorded_checksums(m) if n.endswith(".safetensors")]
    try:
        size = sum(count_parameters(bundle.path / n) for n in weights)
        size_text = f"{size:,} parameters" + (f" in {len(weights)} weight files" if len(weights) > 1 else "")
    except (OSError, ValueError, KeyError, BundleError):
        size_text = "unknown"
    record = bundle.reference
    genes = bundle.genes
    lines = [
        f"name:         {bundle.name}",
        f"path:         {bundle.path}",
        f"backbone:     {spec['name']}" + (f" ({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else ""),
        f"size:         {size_text}",
        f"window:       {m.get('window_size', '?'):,} bp, {m.get('bin_size', '?')} bp bins"
        if isinstance(m.get("window_size"), int)
        else f"window:       {m.get('window_size')}",
        f"output mode:  {mode['name']} {json.dumps(mode.get('params', {}))}",
        f"genome build: {bundle.genome_build or 'not recorded'}"
        + (f" (reference {record.name}, {len(record.contigs)} contigs)" if record else ""),
        f"tissue:       {m.get('tissue') or 'not recorded'}",
        f"genes:        {len(genes)} ({', '.join(g.label for g in genes[:8])}{', ...' if len(genes) > 8 else ''})",
    ]
    metrics = m.get("metrics") or {}
    per_gene = metrics.get("test") or metrics.get("per_gene")
    scalar = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalar:
        lines.append("metrics:      " + ", ".join(f"{k} {v:.4g}" for k, v in scalar.items()))
    if isinstance(per_gene, list) and per_gene and isinstance(per_gene[0], dict):
        columns = [c for c in per_gene[0] if c != "gene"][:4]
        lines.append("  gene        " + "  ".join(f"{c:>10}" for c in columns))
        for row in per_gene[:20]:
            lines.append(
                f"  {str(row.get('gene', '')):<10}  "
                + "  ".join(
                    f"{row[c]:>10.4g}" if isinstance(row.get(c), (int, float)) else f"{row.get(c)!s:>10}"
                    for c in columns
                )
            )
    history = metrics.get("history")
    if (
        isinstance(history, list)
        and isinstance(metrics.get("best_epoch"), int)
        and 0 <= metrics["best_epoch"] < len(history)
    ):
        best = history[metrics["best_epoch"]]
        lines.append(
            "best epoch:   " + ", ".join(f"{k} {v:.4g}" for k, v in best.items() if isinstance(v, (int, float)))
        )
    provenance = {
        k: v for k, v in (m.get("provenance") or {}).items() if v is not None and not isinstance(v, (dict, list))
    }
    if provenance:
        lines.append(
            "provenance:   "
            + ", ".join(
                f"{k}={str(v)[:16]}…" if str(k).endswith("sha256") else f"{k}={v}" for k, v in provenance.items()
            )
        )
    lines.append(f"calibration:  {_calibration_summary(m.get('calibration'))}")
    lines.append(f"varscore:     {m.get('varscore_version', '?')} wrote it")
    lines.append(
        "checksums:    " + "\n              ".join(f"{n} sha256 {d}" for n, d in recorded_checksums(m).items())
    )
    return "\n".join(lines)
