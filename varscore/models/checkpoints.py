"""Import published checkpoints into model bundles: the format-agnostic workflow.

Which layouts can be read is up to the installed plugins: each registers a
:class:`~varscore.plugin.checkpoint_format.CheckpointFormat` (``register_checkpoint_formats``) that
recognises its ``config.json``, names its tensors as its backbone does and gives the backbone's
parameters. This module reads the directory (config, weight files and shard indexes inside it,
tensors only), asks the registry which format fits, checks every key and shape through the
backbone, and writes the bundle (several directories: a replicate ensemble).

torch is imported inside functions only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from varscore.errors import InputError
from varscore.plugin.checkpoint_format import (
    CONFIG,
    SAFETENSORS,
    CheckpointFormat,
    ImportRequest,
    check_output,
    read_config,
    read_tensors,
    strip_prefix,
)

if TYPE_CHECKING:
    from varscore.plugin.torch_backbone import TorchSequenceBackbone

logger = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A published checkpoint directory, read: its config, format and tensors (canonical names)."""

    directory: Path
    format: str
    config: dict[str, Any]
    state: dict[str, Any]
    weight_files: list[Path]
    dropped: list[str] = field(default_factory=list)  # keys deliberately not imported (e.g. mouse_head.*)


def detect_format(config: dict[str, Any], directory: Path, requested: str | None = None) -> CheckpointFormat:
    """The installed format ``requested`` (checked against what the config describes), else the
    first installed format (by name) whose ``detect`` accepts ``config``."""
    from varscore.plugin.manager import checkpoint_formats, get_checkpoint_format

    installed = {name: get_checkpoint_format(name)() for name in checkpoint_formats()}
    fitting = [name for name, fmt in installed.items() if fmt.detect(config)]
    model_type = config.get("model_type")
    if requested is not None:
        if requested not in installed:
            raise InputError(
                f"Unknown checkpoint format {requested!r}. Installed: {', '.join(installed) or 'none'} "
                "(plugins add formats; see 'varscore plugins')."
            )
        chosen = installed[requested]
        if model_type is not None and not chosen.detect(config):
            suggestion = fitting[0] if fitting else model_type
            raise InputError(
                f"{directory / CONFIG} describes a {model_type!r} model, not {requested}: use --format {suggestion}."
            )
        return chosen
    if fitting:
        return installed[fitting[0]]
    raise InputError(
        f"{directory / CONFIG} has model_type {model_type!r}; the installed checkpoint formats are "
        f"{', '.join(installed) or 'none'} (pass --format to say which)."
    )


def read_checkpoint(directory: str | Path, format: str | None = None) -> Checkpoint:
    """Read a published checkpoint directory (config + weights) into canonical tensor names."""
    from varscore.plugin.torch_backbone import check_tensor_dtypes

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"Checkpoint directory {directory} does not exist or is not a directory.")
    config = read_config(directory)
    fmt = detect_format(config, directory, format)
    fmt.check_config(config, directory / CONFIG)
    files = fmt.weight_files(directory)
    state: dict[str, Any] = {}
    for path in files:
        tensors = read_tensors(path)
        check_tensor_dtypes(tensors, path)
        state.update(tensors)
    state = strip_prefix(state, ("module.", *fmt.key_prefixes))
    canonical = fmt.canonical_state(state, config, directory)
    logger.info("read %d tensors from %s (%s)", len(canonical.state), ", ".join(p.name for p in files), fmt.name)
    return Checkpoint(directory, fmt.name, config, canonical.state, files, canonical.dropped)


def check_window(window: Any, fmt: CheckpointFormat) -> None:
    """Refuse an input window that is not a positive whole number of bp (0 is not "the default")."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError(
            f"Input window {window!r} bp is not a positive whole number: pass --window in bp, e.g. "
            f"{fmt.default_window:,} (the published {fmt.name} window), or leave it out for that default."
        )


def backbone_params(checkpoint: Checkpoint, request: ImportRequest) -> dict[str, Any]:
    """The backbone parameters that rebuild ``checkpoint``'s architecture at ``request.window_size``
    bp (default: the format's published input length)."""
    fmt = _format(checkpoint)
    window = fmt.default_window if request.window_size is None else request.window_size
    check_window(window, fmt)
    return fmt.backbone_params(checkpoint.config, window, request)


def checkpoint_backbone(checkpoint: Checkpoint, request: ImportRequest) -> TorchSequenceBackbone:
    """The backbone of ``checkpoint`` with its weights loaded (every key and shape checked)."""
    from varscore.plugin.manager import get_backbone

    fmt = _format(checkpoint)
    backbone = get_backbone(fmt.backbone)(**backbone_params(checkpoint, request))
    if not backbone.warm_starts:
        raise InputError(
            f"Checkpoint format '{fmt.name}' names backbone '{fmt.backbone}', which cannot take a state dict of "
            "tensors (warm_starts is false: it is not a TorchSequenceBackbone)."
        )
    return cast("TorchSequenceBackbone", backbone).load_state(dict(checkpoint.state), str(checkpoint.directory))


def _format(checkpoint: Checkpoint) -> CheckpointFormat:
    from varscore.plugin.manager import get_checkpoint_format

    return get_checkpoint_format(checkpoint.format)()


@dataclass
class ImportOptions:
    """What a bundle made from published weights records besides the weights."""

    name: str
    window_size: int | None = None
    output_head: str = "human"
    use_tf_gamma: bool = False
    track: int | None = None
    center_bins: int | None = None
    stat: str | None = None
    genes_path: Path | None = None
    reference_fasta: Path | None = None
    genome_build: str | None = None
    tracks_file: Path | None = None
    licence: str | None = None
    citation: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def import_checkpoints(
    directories: Sequence[str | Path], output: str | Path, options: ImportOptions, format: str | None = None
) -> Path:
    """Write a bundle at ``output`` from one published checkpoint directory, or from several
    replicates of one architecture (an ensemble bundle: one weight file per replicate, scored by
    their mean). Returns the bundle directory."""
    import tempfile

    from varscore.genome.fasta import load_genes
    from varscore.models.bundle import BundleMetadata, sha256
    from varscore.models.ensemble import REPLICATE_TEMPLATE, save_ensemble_bundle
    from varscore.plugin.manager import get_output_mode
    from varscore.plugin.torch_backbone import save_weights

    if not directories:
        raise InputError("Give at least one checkpoint directory to import.")
    genes = load_genes(options.genes_path) if options.genes_path else []
    request = ImportRequest(options.window_size, options.output_head, options.use_tf_gamma)
    first: TorchSequenceBackbone | None = None
    fmt: CheckpointFormat | None = None
    provenance: list[dict[str, Any]] = []
    params: dict[str, Any] | None = None
    output_params: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="varscore-import-") as tmp:
        extra_files: list[Path] = []
        for i, directory in enumerate(directories):
            checkpoint = read_checkpoint(directory, format)
            if fmt is not None and checkpoint.format != fmt.name:
                raise InputError(f"{directory} is a {checkpoint.format} checkpoint; the first one is {fmt.name}.")
            fmt = _format(checkpoint)
            backbone = checkpoint_backbone(checkpoint, request)
            if params is not None and backbone.params != params:
                raise InputError(f"{directory} has another architecture than {directories[0]}; replicates must match.")
            params = backbone.params
            provenance.append(
                {
                    "directory": str(Path(directory).resolve()),
                    "files": {p.name: sha256(p) for p in [Path(directory) / CONFIG, *checkpoint.weight_files]},
                    "not_imported": checkpoint.dropped[:20] + (["..."] if len(checkpoint.dropped) > 20 else []),
                }
            )
            if i == 0:
                output_params = {**fmt.default_output}
                for key in ("track", "center_bins", "stat"):
                    if getattr(options, key) is not None:
                        output_params[key] = getattr(options, key)
                defaulted = [k for k in ("track", "center_bins") if getattr(options, k) is None]
                check_output(output_params, backbone.n_tracks, backbone.n_bins, defaulted, fmt.name)
                first = backbone
            else:
                path = Path(tmp) / REPLICATE_TEMPLATE.format(i)
                save_weights(backbone.model_, path, {"format": "pt", "backbone": backbone.name})
                extra_files.append(path)
                del backbone
        if fmt is None or first is None:
            raise InputError("Give at least one checkpoint directory to import.")
        mode = get_output_mode("scalar")(**output_params)
        tracks = options.tracks_file or fmt.tracks_file()
        files = {"tracks.txt": tracks} if tracks else {}
        extra = {
            "licence": options.licence,
            "citation": options.citation,
            "source": {**options.source, "format": fmt.name, "checkpoints": provenance},
            "tracks": {
                "file": "tracks.txt" if tracks else None,
                "count": first.n_tracks,
                "output_head": fmt.output_head(request),
            },
        }
        return save_ensemble_bundle(
            output,
            first,
            extra_files,
            name=options.name,
            output_mode=mode,
            genes=genes,
            files=files,
            about=BundleMetadata(
                reference_fasta=options.reference_fasta,
                genome_build=options.genome_build,
                provenance={"imported_from": fmt.name},
                extra=extra,
            ),
        )


def pretrained_format(backbone: str, params: dict[str, Any]) -> CheckpointFormat | None:
    """The installed format that writes a ``pretrained_dir`` for ``backbone`` bundles imported
    from a checkpoint (``head="pretrained"``), or None."""
    from varscore.plugin.manager import checkpoint_formats, get_checkpoint_format

    if params.get("head") != "pretrained":
        return None
    for name in checkpoint_formats():
        fmt = get_checkpoint_format(name)()
        if fmt.backbone == backbone and fmt.writes_pretrained_dir:
            return fmt
    return None


def write_pretrained_dir(bundle_dir: str | Path, directory: str | Path) -> Path:
    """Write ``directory`` as a ``--pretrained`` / ``pretrained_dir`` for fine-tuning from a bundle
    imported from a checkpoint: ``config.json`` (written by the checkpoint format) and
    ``model.safetensors`` (a hard link to the bundle's weights where the file system allows, else a
    copy). Returns ``directory``."""
    import os
    import shutil

    from varscore.io.outputguard import atomic_file
    from varscore.models.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest["backbone"]
    params = spec.get("params", {})
    fmt = pretrained_format(spec["name"], params)
    if fmt is None:
        raise InputError(
            f"{bundle.path} is not a bundle imported from a checkpoint (head 'pretrained' of a backbone whose "
            f"checkpoint format writes pre-trained directories); it has no pre-trained weights to fine-tune from."
        )
    if bundle.manifest.get("replicates"):
        logger.warning(
            "%s holds %d replicates; the pre-trained directory gets the first",
            bundle.path,
            len(bundle.manifest["replicates"]),
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / CONFIG) as tmp:
        fmt.write_pretrained_config(params, tmp)
    with atomic_file(out / SAFETENSORS) as tmp:
        tmp.unlink()
        try:
            os.link(bundle.path / "weights.safetensors", tmp)
        except OSError:
            shutil.copyfile(bundle.path / "weights.safetensors", tmp)
    return out


__all__ = [
    "Checkpoint",
    "ImportOptions",
    "backbone_params",
    "checkpoint_backbone",
    "detect_format",
    "import_checkpoints",
    "read_checkpoint",
    "write_pretrained_dir",
]
