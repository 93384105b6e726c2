"""Import published Enformer and Borzoi checkpoints into model bundles.

The layouts read are those the enformer-pytorch and borzoi-pytorch projects publish (and
``save_pretrained`` writes): a directory with ``config.json`` (the package's config class as JSON)
and the weights as ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``) or
``pytorch_model.bin`` (or ``pytorch_model.bin.index.json`` shards), a pickled state dict read with
``torch.load(weights_only=True)`` so that only tensors are ever unpickled.

Every key is mapped to the module varscore builds and every shape is checked; what does not fit is
refused with the keys named. Key aliasing: enformer-pytorch registers its stem, conv tower,
transformer and final pointwise both under their own names and inside ``_trunk`` (``stem.*`` is
``_trunk.1.*``, ...), so a file written by ``torch.save`` holds both names (checked equal here) and
one written by safetensors keeps one of them; transformers prefixes the base model's keys with
``base_model_prefix`` (``enformer.`` / ``borzoi.``) when a model with a head saved them.

torch is imported inside functions only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varscore.errors import BundleError, InputError
from varscore.io.integrity import inside

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
FORMATS = ("enformer", "borzoi")
#: ``model_type`` of each format's config.json.
MODEL_TYPES = {"enformer": "enformer", "borzoi": "borzoi"}
#: enformer-pytorch's ``_trunk`` children that are also attributes of the model.
ENFORMER_TRUNK_ALIASES = {
    "_trunk.1.": "stem.",
    "_trunk.2.": "conv_tower.",
    "_trunk.4.": "transformer.",
    "_trunk.6.": "final_pointwise.",
}
DEFAULT_WINDOWS = {"enformer": 196_608, "borzoi": 524_288}
#: The length borzoi-pytorch's attention positions were trained at (its relative-position features).
BORZOI_TRAINED_POSITIONS = 4096
ENFORMER_CONFIG_KEYS = (
    "dim",
    "depth",
    "heads",
    "attn_dim_key",
    "num_downsamples",
    "dim_divisible_by",
    "dropout_rate",
    "attn_dropout",
    "pos_dropout",
    "output_heads",
)
BORZOI_CONFIG_KEYS = (
    "dim",
    "depth",
    "heads",
    "attn_dim_key",
    "attn_dim_value",
    "dropout_rate",
    "attn_dropout",
    "pos_dropout",
)
#: config.json fields read as whole numbers of at least 1 (``depth`` of Enformer: at least 0).
CONFIG_INTS = ("dim", "depth", "heads", "attn_dim_key", "attn_dim_value", "num_downsamples", "dim_divisible_by")
#: config.json fields read as probabilities.
CONFIG_RATES = ("dropout_rate", "attn_dropout", "pos_dropout")
#: The only tensors of a checkpoint that are not floating point (batch norms' update counts).


@dataclass
class Checkpoint:
    """A published checkpoint directory, read: its config, format and tensors (canonical names)."""

    directory: Path
    format: str
    config: dict[str, Any]
    state: dict[str, Any]
    weight_files: list[Path]
    dropped: list[str] = field(default_factory=list)  # keys deliberately not imported (e.g. mouse_head.*)


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise InputError(
            f"{directory} holds no {CONFIG}: a published checkpoint directory has config.json and weights."
        )
    config = read_json(path, "checkpoint config")
    if not isinstance(config, dict):
        raise InputError(
            f"{path} is not a valid checkpoint config: it must be a JSON object, got a {type(config).__name__}."
        )
    for key, kind, expected in (("model_type", str, "a string"), ("flashed", bool, "true or false")):
        if key in config and not isinstance(config[key], kind):
            raise InputError(
                f"{path} is not a valid checkpoint config: {key} must be {expected}; got {config[key]!r}. "
                "Fix or replace config.json (it must be the one published with the weights)."
            )
    return config


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path``; a file that cannot be read or parsed (or is nested too deeply
    for the parser) is an :class:`InputError` naming ``what``."""
    try:
        return json.loads(path.read_text())
    except RecursionError as err:
        raise InputError(
            f"{path} is not a valid {what}: nested too deeply (a published {path.name} is a flat object)."
        ) from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a valid {what}: {err}") from err


def check_config(config: Mapping[str, Any], path: Path, kind: str) -> None:
    """Refuse a config.json whose fields that varscore reads have the wrong type or range, naming
    the field (the published configs have whole-number sizes, rates in [0, 1], and ``output_heads``
    mapping head names to track counts)."""

    def bad(key: str, expected: str) -> InputError:
        return InputError(
            f"{path} is not a valid checkpoint config: {key} must be {expected}; got {config[key]!r}. "
            "Fix or replace config.json (it must be the one published with the weights)."
        )

    keys = ENFORMER_CONFIG_KEYS if kind == "enformer" else BORZOI_CONFIG_KEYS
    for key in (k for k in CONFIG_INTS if k in keys and k in config):
        value = config[key]
        least = 0 if (kind, key) == ("enformer", "depth") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise bad(key, f"a whole number of at least {least}")
    for key in (k for k in CONFIG_RATES if k in config):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise bad(key, "a number from 0 to 1")
    if kind == "enformer" and "output_heads" in config:
        heads = config["output_heads"]
        if (
            not isinstance(heads, dict)
            or not heads
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in heads.values())
        ):
            raise bad("output_heads", 'an object of head names and track counts, e.g. {"human": 5313, "mouse": 1643}')


def detect_format(config: Mapping[str, Any], directory: Path, requested: str | None = None) -> str:
    """``requested`` when given (checked against the config's ``model_type``), else the format the
    config's ``model_type`` names."""
    model_type = config.get("model_type")
    if requested is not None:
        if requested not in FORMATS:
            raise InputError(f"Unknown checkpoint format {requested!r}. Choose one of: {', '.join(FORMATS)}.")
        if model_type is not None and model_type != MODEL_TYPES[requested]:
            raise InputError(
                f"{directory / CONFIG} describes a {model_type!r} model, not {requested}: use --format "
                f"{next((f for f, t in MODEL_TYPES.items() if t == model_type), model_type)}."
            )
        return requested
    for name, kind in MODEL_TYPES.items():
        if model_type == kind:
            return name
    raise InputError(
        f"{directory / CONFIG} has model_type {model_type!r}; varscore imports {', '.join(FORMATS)} checkpoints "
        "(pass --format to say which)."
    )


def weight_files(directory: Path) -> list[Path]:
    """The weight file(s) of a checkpoint directory: safetensors first, else the pickled state dict.
    A shard index may name only files inside ``directory`` (no absolute path, no ``..``, no
    symbolic link leading out)."""
    directory = Path(directory)
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (PICKLE, PICKLE_INDEX)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            loaded = read_json(directory / index, "shard index")
            weight_map = loaded.get("weight_map") if isinstance(loaded, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise InputError(
                    f"{directory / index} is not a valid shard index: it must be an object whose weight_map maps "
                    "tensor names to shard files."
                )
            bad = next((v for v in weight_map.values() if not isinstance(v, str)), None)
            if bad is not None:
                raise InputError(f"{directory / index}: weight_map values must be shard file names; got {bad!r}.")
            shards = [shard_path(directory, index, name) for name in sorted(set(weight_map.values()))]
            missing = [p.name for p in shards if not p.is_file()]
            if missing:
                raise InputError(
                    f"{directory / index} lists shard(s) {', '.join(missing)} that are not in {directory}."
                )
            return shards
    raise InputError(
        f"{directory} holds no weights: expected {SAFETENSORS} (or {SAFETENSORS_INDEX} with its shards) or {PICKLE}."
    )


def shard_path(directory: Path, index: str, name: str) -> Path:
    """``directory / name`` for a shard the index ``index`` names, when it lies inside ``directory``."""
    try:
        return inside(directory, name, f"{index} shard")
    except BundleError as err:
        raise InputError(
            f"{directory / index} names the shard {name!r}, which lies outside {directory}: every file a shard "
            "index names must be inside the checkpoint directory (a relative path without '..', no absolute path, "
            "no symbolic link leading out). Put the shards in the directory and name them by file name."
        ) from err


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weight file: safetensors, or a pickled state dict loaded with
    ``weights_only=True`` (plain tensors and containers only; anything else is refused)."""
    import torch

    if path.suffix == ".safetensors":
        from varscore.plugin.torch_backbone import read_weights

        return read_weights(path, "checkpoint", InputError)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle and zip errors of several types
        raise InputError(
            f"Cannot read {path} as a state dict of tensors (loaded with weights_only=True; varscore never "
            f"unpickles other objects): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise InputError(f"{path} is not a state dict (a mapping of names to tensors).")
    return dict(loaded)


def strip_prefix(state: Mapping[str, Any], prefixes: Sequence[str]) -> dict[str, Any]:
    """``state`` with a prefix every key shares removed (``enformer.`` / ``borzoi.``, the
    ``base_model_prefix`` transformers adds; ``module.`` from DistributedDataParallel)."""
    out = dict(state)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def _enformer_canonical(state: dict[str, Any], source: Path) -> dict[str, Any]:
    """Keep one name per aliased enformer-pytorch tensor (its attribute name); where a file holds
    both names they must hold the same values."""
    import torch

    out: dict[str, Any] = {}
    for key, tensor in state.items():
        alias = next(
            (attr + key[len(trunk) :] for trunk, attr in ENFORMER_TRUNK_ALIASES.items() if key.startswith(trunk)), None
        )
        if alias is None:
            out.setdefault(key, tensor)
            continue
        if alias in state:
            other = state[alias]
            if tuple(other.shape) != tuple(tensor.shape) or not torch.equal(other, tensor):
                raise InputError(f"{source}: {key} and its alias {alias} hold different values; the file is corrupt.")
            continue
        out[alias] = tensor
    return out


def read_checkpoint(directory: str | Path, format: str | None = None) -> Checkpoint:
    """Read a published checkpoint directory (config + weights) into canonical tensor names."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"Checkpoint directory {directory} does not exist or is not a directory.")
    config = read_config(directory)
    kind = detect_format(config, directory, format)
    check_config(config, directory / CONFIG, kind)
    files = weight_files(directory)
    state: dict[str, Any] = {}
    from varscore.plugin.torch_backbone import check_tensor_dtypes

    for path in files:
        tensors = read_tensors(path)
        check_tensor_dtypes(tensors, path)
        state.update(tensors)
    state = strip_prefix(state, ("module.", f"{kind}."))
    dropped: list[str] = []
    if kind == "enformer":
        state = _enformer_canonical(state, directory)
    else:
        if config.get("flashed"):
            raise InputError(
                f"{directory} is a Flashzoi checkpoint (config.json: flashed=true): its attention is flash-attn's "
                "rotary multi-head attention, which varscore's Borzoi backbone does not build. Import the "
                "borzoi-replicate-N checkpoints instead."
            )
        dropped = sorted(k for k in state if k.startswith("mouse_head."))
        state = {k: v for k, v in state.items() if k not in set(dropped)}
    logger.info("read %d tensors from %s (%s)", len(state), ", ".join(p.name for p in files), kind)
    return Checkpoint(directory, kind, config, state, files, dropped)


def backbone_params(
    checkpoint: Checkpoint, window_size: int | None = None, output_head: str = "human", use_tf_gamma: bool = False
) -> dict[str, Any]:
    """The varscore backbone parameters (``head="pretrained"``) that rebuild ``checkpoint``'s
    architecture at ``window_size`` bp (default: the model's published input length)."""
    config = checkpoint.config
    window = DEFAULT_WINDOWS[checkpoint.format] if window_size is None else window_size
    check_window(window, checkpoint.format)
    if checkpoint.format == "enformer":
        params = {key: config[key] for key in ENFORMER_CONFIG_KEYS if key in config}
        if isinstance(params.get("output_heads"), dict):
            params["output_heads"] = {str(k): int(v) for k, v in params["output_heads"].items()}
        return {
            **params,
            "window_size": window,
            "head": "pretrained",
            "output_head": output_head,
            "use_tf_gamma": bool(use_tf_gamma),
            "seed": 0,
        }
    params = {key: config[key] for key in BORZOI_CONFIG_KEYS if key in config}
    return {
        **params,
        "window_size": window,
        "head": "pretrained",
        "trained_positions": BORZOI_TRAINED_POSITIONS,
        "seed": 0,
    }


def check_window(window: Any, kind: str) -> None:
    """Refuse an input window that is not a positive whole number of bp (0 is not "the default")."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError(
            f"Input window {window!r} bp is not a positive whole number: pass --window in bp, e.g. "
            f"{DEFAULT_WINDOWS[kind]:,} (the published {kind} window), or leave it out for that default."
        )


def check_output(
    params: Mapping[str, Any], n_tracks: int, n_bins: int, defaulted: Collection[str] = (), kind: str = ""
) -> None:
    """Refuse a scalar output's ``track`` outside the imported head (``0 <= track < n_tracks``), and
    its ``center_bins`` outside the window's ``n_bins`` output bins, naming the value and the valid
    range. ``defaulted``: the keys that hold ``kind``'s defaults rather than values asked for (a
    default is checked too: a small window or another head can leave it out of range); centre
    bins left at their default are checked only for ``stat="center"``, the one statistic that reads
    them."""
    track, center_bins = params["track"], params["center_bins"]
    default = f" (the {kind} default)" if kind else " (the default)"
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < n_tracks:
        raise InputError(
            f"Output track {track!r}{default if 'track' in defaulted else ''} is not in the imported head, which "
            f"has {n_tracks:,} tracks: pass --track from 0 to {n_tracks - 1:,}."
        )
    if "center_bins" in defaulted and params.get("stat", "center") != "center":
        return
    if isinstance(center_bins, bool) or not isinstance(center_bins, int) or not 1 <= center_bins <= n_bins:
        raise InputError(
            f"Centre bins {center_bins!r}{default if 'center_bins' in defaulted else ''} do not fit the window's "
            f"{n_bins:,} output bins: pass --center-bins from 1 to {n_bins:,}."
        )


def checkpoint_backbone(
    checkpoint: Checkpoint, window_size: int | None = None, output_head: str = "human", use_tf_gamma: bool = False
) -> Any:
    """The varscore backbone of ``checkpoint`` with its weights loaded (every key and shape checked)."""
    from varscore.plugin.manager import get_backbone

    params = backbone_params(checkpoint, window_size, output_head, use_tf_gamma)
    backbone: Any = get_backbone(checkpoint.format)(**params)
    state = dict(checkpoint.state)
    if checkpoint.format == "borzoi":
        _fill_batch_counts(backbone, state)
    return backbone.load_state(state, str(checkpoint.directory))


def _fill_batch_counts(backbone: Any, state: dict[str, Any]) -> None:
    """Older Borzoi files lack batch norms' ``num_batches_tracked`` (unused when predicting): add zeros."""
    import torch

    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))


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


#: Default output of each format: Enformer's CAGE whole-blood track summed over the 3 centre bins;
#: Borzoi's whole-blood RNA-seq track (7531, "RNA:blood", GTEx via recount3) summed over the window.
DEFAULT_OUTPUT = {
    "enformer": {"track": 4950, "center_bins": 3, "stat": "center"},
    "borzoi": {"track": 7531, "center_bins": 1, "stat": "SUM"},
}


def default_tracks_file(kind: str) -> Path | None:
    """The track list the model's package ships, when it ships one (borzoi-pytorch's targets.txt)."""
    if kind != "borzoi":
        return None
    try:
        import borzoi_pytorch
    except ImportError:
        return None
    path = Path(borzoi_pytorch.__file__).parent / "precomputed" / "targets.txt"
    return path if path.is_file() else None


def import_checkpoints(
    directories: Sequence[str | Path], output: str | Path, options: ImportOptions, format: str | None = None
) -> Path:
    """Write a bundle at ``output`` from one published checkpoint directory, or from several
    replicates of one architecture (an ensemble bundle: one weight file per replicate, scored by
    their mean). Returns the bundle directory."""
    import tempfile

    from varscore.genome.fasta import load_genes
    from varscore.models.ensemble import REPLICATE_TEMPLATE, save_ensemble_bundle
    from varscore.plugin.manager import get_output_mode
    from varscore.plugin.torch_backbone import save_weights

    if not directories:
        raise InputError("Give at least one checkpoint directory to import.")
    genes = load_genes(options.genes_path) if options.genes_path else []
    first: Any = None
    provenance: list[dict[str, Any]] = []
    kind = None
    params: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="varscore-import-") as tmp:
        extra_files: list[Path] = []
        for i, directory in enumerate(directories):
            checkpoint = read_checkpoint(directory, format)
            if kind is not None and checkpoint.format != kind:
                raise InputError(f"{directory} is a {checkpoint.format} checkpoint; the first one is {kind}.")
            kind = checkpoint.format
            backbone = checkpoint_backbone(checkpoint, options.window_size, options.output_head, options.use_tf_gamma)
            if params is not None and backbone.params != params:
                raise InputError(f"{directory} has another architecture than {directories[0]}; replicates must match.")
            params = backbone.params
            from varscore.models.bundle import sha256

            provenance.append(
                {
                    "directory": str(Path(directory).resolve()),
                    "files": {p.name: sha256(p) for p in [Path(directory) / CONFIG, *checkpoint.weight_files]},
                    "not_imported": checkpoint.dropped[:20] + (["..."] if len(checkpoint.dropped) > 20 else []),
                }
            )
            if i == 0:
                output_params = {**DEFAULT_OUTPUT[kind]}
                for key in ("track", "center_bins", "stat"):
                    if getattr(options, key) is not None:
                        output_params[key] = getattr(options, key)
                defaulted = [k for k in ("track", "center_bins") if getattr(options, k) is None]
                check_output(output_params, backbone.n_tracks, backbone.n_bins, defaulted, kind)
                first = backbone
            else:
                path = Path(tmp) / REPLICATE_TEMPLATE.format(i)
                save_weights(backbone.model_, path, {"format": "pt", "backbone": backbone.name})
                extra_files.append(path)
                del backbone
        assert kind is not None
        mode = get_output_mode("scalar")(**output_params)
        tracks = options.tracks_file or default_tracks_file(kind)
        files = {"tracks.txt": tracks} if tracks else {}
        extra = {
            "licence": options.licence,
            "citation": options.citation,
            "source": {**options.source, "format": kind, "checkpoints": provenance},
            "tracks": {
                "file": "tracks.txt" if tracks else None,
                "count": first.n_tracks,
                "output_head": options.output_head if kind == "enformer" else "human",
            },
        }
        return save_ensemble_bundle(
            output,
            first,
            extra_files,
            name=options.name,
            output_mode=mode,
            genes=genes,
            reference_fasta=options.reference_fasta,
            genome_build=options.genome_build,
            provenance={"imported_from": kind},
            extra=extra,
            files=files,
        )


def write_pretrained_dir(bundle_dir: str | Path, directory: str | Path) -> Path:
    """Write ``directory`` as a ``--pretrained`` / ``pretrained_dir`` for fine-tuning from an
    imported Enformer or Borzoi bundle: ``config.json`` (the package's config) and
    ``model.safetensors`` (a hard link to the bundle's weights where the file system allows, else a
    copy). Returns ``directory``."""
    import os
    import shutil

    from varscore.io.outputguard import atomic_file
    from varscore.models.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest["backbone"]
    params = spec.get("params", {})
    if spec["name"] not in FORMATS or params.get("head") != "pretrained":
        raise InputError(
            f"{bundle.path} is not an imported Enformer or Borzoi (head 'pretrained'); it has no "
            "pre-trained weights to fine-tune from."
        )
    if bundle.manifest.get("replicates"):
        logger.warning(
            "%s holds %d replicates; the pre-trained directory gets the first",
            bundle.path,
            len(bundle.manifest["replicates"]),
        )
    if spec["name"] == "enformer":
        from enformer_pytorch import EnformerConfig

        config: Any = EnformerConfig(
            **{k: params[k] for k in ENFORMER_CONFIG_KEYS if k in params},
            target_length=-1,
            use_tf_gamma=bool(params.get("use_tf_gamma")),
        )
    else:
        from borzoi_pytorch.config_borzoi import BorzoiConfig

        config = BorzoiConfig(**{k: params[k] for k in BORZOI_CONFIG_KEYS if k in params})
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / CONFIG) as tmp:
        config.to_json_file(str(tmp))
    with atomic_file(out / SAFETENSORS) as tmp:
        tmp.unlink()
        try:
            os.link(bundle.path / "weights.safetensors", tmp)
        except OSError:
            shutil.copyfile(bundle.path / "weights.safetensors", tmp)
    return out
