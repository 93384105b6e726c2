"""Enformer backbone (enformer-pytorch): Variformer's fine-tuned single-track head, or Enformer's own
pre-trained output heads. torch, transformers and enformer-pytorch are imported only when a model is
built or loaded, so importing this plugin stays cheap."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from varscore.base import SequenceBackbone
from varscore.errors import BundleError, InputError
from varscore.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
HEADS = ("variformer", "pretrained")

# Hyper-parameters passed to enformer-pytorch's EnformerConfig (target_length is always -1).
ENFORMER_HPARAMS = (
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
    "use_tf_gamma",
    "use_checkpointing",
)


def tiny_params(window_size: int = 2048, **overrides: Any) -> dict[str, Any]:
    """Hyper-parameters of a tiny Enformer (about 0.1 M weights) that builds and runs in milliseconds
    on a CPU: 2 transformer layers, dim 48, 4 heads, 128-bp bins (16 bins at 2,048 bp).

    For tests, docs and examples; ``overrides`` replace any entry (e.g. ``head="pretrained"``).
    """
    params: dict[str, Any] = {
        "window_size": window_size,
        "dim": 48,
        "depth": 2,
        "heads": 4,
        "attn_dim_key": 8,
        "num_downsamples": 7,
        "dim_divisible_by": 8,
        "output_heads": {"human": 8, "mouse": 4},
    }
    params.update(overrides)
    return params


def _conv_tower_channels(dim: int, num_downsamples: int, divisible_by: int) -> list[int]:
    """Channel counts of Enformer's stem + conv tower, as enformer-pytorch computes them."""
    half_dim = dim // 2
    num = num_downsamples - 1
    base = math.exp(math.log(dim / half_dim) / (num - 1))
    tower = [int(round(half_dim * base**i / divisible_by) * divisible_by) for i in range(num)]
    return [half_dim, *tower]


def _check_architecture(params: dict[str, Any]) -> None:
    """Raise InputError when enformer-pytorch would fail (or silently misbehave) with ``params``."""
    ints = ("window_size", "dim", "depth", "heads", "attn_dim_key", "num_downsamples", "dim_divisible_by")
    for key in ints:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "depth" else 1):
            raise InputError(f"Backbone 'enformer': {key} must be a positive integer; got {value!r}.")
    seed = params["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"Backbone 'enformer': seed must be an integer or None; got {seed!r}.")
    head = params["head"]
    if head not in HEADS:
        raise InputError(f"Backbone 'enformer': unknown head {head!r}. Choose one of: {', '.join(HEADS)}.")
    output_heads = params["output_heads"]
    if (
        not isinstance(output_heads, dict)
        or not output_heads
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in output_heads.values())
    ):
        raise InputError(
            "Backbone 'enformer': output_heads must map head names to track counts, "
            f"e.g. {{'human': 5313, 'mouse': 1643}}; got {output_heads!r}."
        )
    if head == "pretrained" and params["output_head"] not in output_heads:
        raise InputError(
            f"Backbone 'enformer': output_head {params['output_head']!r} is not one of the model's "
            f"output heads ({', '.join(output_heads)})."
        )
    num_downsamples = params["num_downsamples"]
    if num_downsamples < 3:
        raise InputError(f"Backbone 'enformer': num_downsamples must be at least 3; got {num_downsamples}.")
    bin_size = 2**num_downsamples
    window = params["window_size"]
    if window % bin_size:
        lower = max(bin_size, window // bin_size * bin_size)
        raise InputError(
            f"Backbone 'enformer': window_size {window} is not a multiple of the bin size {bin_size} "
            f"(2**num_downsamples); use e.g. {lower} or {lower + bin_size}."
        )
    dim, heads = params["dim"], params["heads"]
    if dim % heads or (dim // heads) % 6:
        raise InputError(
            f"Backbone 'enformer': dim // heads must be a whole multiple of 6 (the relative positional "
            f"features come in 6 kinds); got dim={dim}, heads={heads}."
        )
    channels = _conv_tower_channels(dim, num_downsamples, params["dim_divisible_by"])
    if channels[-1] != dim or min(channels) < 1:
        raise InputError(
            f"Backbone 'enformer': dim_divisible_by={params['dim_divisible_by']} does not suit dim={dim} "
            f"(conv tower channels would be {channels}, ending at {channels[-1]} instead of {dim}); "
            "choose a dim_divisible_by that divides dim and is at most dim // 4."
        )
    if params["use_tf_gamma"] and window // bin_size != 1536:
        raise InputError(
            "Backbone 'enformer': use_tf_gamma needs 1536 bins (196,608 bp at 128-bp bins); "
            f"got {window // bin_size} bins."
        )


class EnformerBackbone(SequenceBackbone):
    """Enformer (enformer-pytorch) on ``(N, window_size, 4)`` one-hot sequences.

    Heads: ``"variformer"`` wraps the trunk in ``HeadAdapterWrapper(num_tracks=1,
    post_transformer_embed=False, output_activation=Identity)`` — the Variformer model, predicting
    ``(N, bins, 1)``; ``"pretrained"`` uses Enformer's own output head ``output_head`` (softplus
    coverage, ``(N, bins, output_heads[output_head])``; e.g. human track 4950, summed over the 3
    centre bins, for the baseline). No cropping: ``bins = window_size / 2**num_downsamples``
    (384 at 49,152 bp).

    ``pretrained_dir`` is a local directory with ``config.json`` and ``model.safetensors`` (or a
    sharded ``model.safetensors.index.json``); its config replaces the architecture
    hyper-parameters in ``params``, so a saved model reloads without the directory. Nothing is ever
    downloaded and no pickle is ever read. ``seed`` fixes the random initialisation (``None``: use
    torch's global generator).
    """

    name: ClassVar[str] = "enformer"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    default_params: ClassVar[dict[str, Any]] = {
        "window_size": 49_152,
        "head": "variformer",
        "output_head": "human",
        "pretrained_dir": None,
        "seed": 0,
        "dim": 1536,
        "depth": 11,
        "heads": 8,
        "attn_dim_key": 64,
        "num_downsamples": 7,
        "dim_divisible_by": 128,
        "dropout_rate": 0.4,
        "attn_dropout": 0.05,
        "pos_dropout": 0.01,
        "output_heads": {"human": 5313, "mouse": 1643},
        "use_tf_gamma": False,
        "use_checkpointing": False,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params = copy.deepcopy(self.params)
        if self.params["pretrained_dir"] is not None:
            self.params["pretrained_dir"] = str(self.params["pretrained_dir"])
        _check_architecture(self.params)
        self._device = "cpu"
        self._bf16 = False

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    @property
    def bin_size(self) -> int:
        return int(2 ** self.params["num_downsamples"])

    @property
    def n_bins(self) -> int:
        return self.window_size // self.bin_size

    @property
    def n_tracks(self) -> int:
        if self.params["head"] == "variformer":
            return 1
        return int(self.params["output_heads"][self.params["output_head"]])

    # -- building and persistence -------------------------------------------------------------

    def build(self) -> EnformerBackbone:
        """Create the model: pre-trained from ``pretrained_dir`` when set, else randomly
        initialised; wrap it in the Variformer head when ``head == "variformer"``. Returns self."""
        with self._seeded():
            if self.params["pretrained_dir"] is not None:
                enformer = self._pretrained_enformer(Path(self.params["pretrained_dir"]))
            else:
                enformer = self._new_enformer()
            self._place(self._wrap(enformer))
        return self

    def save(self, directory: Path) -> None:
        """Write ``directory/weights.safetensors`` (shared tensors stored once); never pickle."""
        from safetensors.torch import save_model

        self._require_built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / WEIGHTS_FILE
        partial = directory / (WEIGHTS_FILE + ".partial")
        metadata = {"format": "pt", "backbone": self.name, "head": str(self.params["head"])}
        try:
            save_model(self.model_, str(partial), metadata=metadata)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def load(self, directory: Path) -> EnformerBackbone:
        """Build the architecture ``params`` describe (never from ``pretrained_dir``: the weights
        come from the bundle) and load ``directory/weights.safetensors``. Returns self."""
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise BundleError(f"Enformer weights not found: {path} does not exist (save() writes it).")
        with self._seeded():
            model = self._wrap(self._new_enformer())
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise BundleError(f"Cannot read Enformer weights {path}: {err}") from err
        problem = _load_weights(model, state)
        if problem:
            raise BundleError(
                f"{path} does not fit the Enformer hyper-parameters in the manifest "
                f"(head={self.params['head']!r}, dim={self.params['dim']}, depth={self.params['depth']}): "
                f"{problem}"
            )
        self._place(model)
        return self

    def _seeded(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        seed = self.params["seed"]
        if seed is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.manual_seed(int(seed))
        return stack

    def _new_enformer(self) -> torch.nn.Module:
        from enformer_pytorch import Enformer, EnformerConfig

        hparams = {key: copy.deepcopy(self.params[key]) for key in ENFORMER_HPARAMS}
        return Enformer(EnformerConfig(**hparams, target_length=-1))

    def _wrap(self, enformer: torch.nn.Module) -> torch.nn.Module:
        if self.params["head"] != "variformer":
            return enformer
        import torch
        from enformer_pytorch.finetune import HeadAdapterWrapper

        return HeadAdapterWrapper(
            enformer=enformer,
            num_tracks=1,
            post_transformer_embed=False,
            output_activation=torch.nn.Identity(),
        )

    def _place(self, model: torch.nn.Module) -> None:
        model.eval()
        self.model_ = model.to(self._device)

    def _pretrained_enformer(self, directory: Path) -> torch.nn.Module:
        """Enformer from a local ``save_pretrained``-style directory, read with safetensors only
        (not ``from_pretrained``: it rejects files without ``format`` metadata and "re-initialises"
        the second name of every shared module)."""
        from enformer_pytorch import Enformer, EnformerConfig
        from safetensors.torch import load_file

        config_path, weight_files = _pretrained_files(directory)
        try:
            config = EnformerConfig.from_json_file(str(config_path))
        except (OSError, ValueError, TypeError) as err:
            raise InputError(f"Cannot read the Enformer config {config_path}: {err}") from err
        self._adopt_config(config, directory)
        config.target_length = -1
        model = Enformer(config)

        state: dict[str, Any] = {}
        for path in weight_files:
            try:
                state.update(load_file(str(path)))
            except Exception as err:  # safetensors raises its own error types
                raise InputError(f"Cannot read Enformer weights {path}: {err}") from err
        problem = _load_weights(model, state)
        if problem:
            raise InputError(f"The weights in {directory} do not fit the Enformer its config.json describes: {problem}")
        logger.info("Loaded pre-trained Enformer from %s (dim=%s, depth=%s)", directory, config.dim, config.depth)
        return model

    def _adopt_config(self, config: Any, directory: Path) -> None:
        """Replace the architecture hyper-parameters in ``params`` by the pre-trained config's."""
        for key in ENFORMER_HPARAMS:
            value = copy.deepcopy(getattr(config, key, self.default_params[key]))
            current = self.params[key]
            if current != value and current != self.default_params[key]:
                logger.warning(
                    "Enformer %s=%r from %s replaces the requested %s=%r", key, value, directory, key, current
                )
            self.params[key] = value
        _check_architecture(self.params)

    # -- inference ----------------------------------------------------------------------------

    def configure(self, device: str = "cpu", bf16: bool = False) -> None:
        """Run on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: CUDA when
        available). ``bf16`` turns on bfloat16 autocast, on CUDA only (ignored with a warning on
        CPU)."""
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise InputError(f"Unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from err
        if resolved.type not in ("cpu", "cuda"):
            raise InputError(f"Unsupported device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.")
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"Device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'.")
        if bf16 and resolved.type != "cuda":
            logger.warning("bf16 autocast is only used on CUDA; running %s in float32.", resolved)
            bf16 = False
        self._device = str(resolved)
        self._bf16 = bool(bf16)
        if self.is_built:
            self.model_.to(resolved)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``batch``: ``(N, window_size, 4)`` one-hot (A, C, G, T) -> ``(N, bins, tracks)`` float32."""
        import torch

        self._require_built()
        array = np.asarray(batch)
        if array.ndim != 3 or array.shape[1:] != (self.window_size, 4):
            raise InputError(
                f"Enformer predict() needs one-hot sequences of shape (N, {self.window_size}, 4); "
                f"got shape {array.shape}."
            )
        if array.shape[0] == 0:
            return np.zeros((0, self.n_bins, self.n_tracks), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self._device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()
        self.model_.eval()
        with torch.inference_mode(), autocast:
            out = self._forward(x)
        return out.float().cpu().numpy()

    def torch_module(self) -> torch.nn.Module:
        """The trainable model as one ``nn.Module``: ``(B, L, 4)`` -> ``(B, bins, tracks)``.

        Shares its parameters with this backbone, so training it trains the backbone.
        """
        import torch

        self._require_built()
        backbone = self

        class EnformerForward(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = backbone.model_

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return backbone._forward(x, self.model)

        return EnformerForward()

    def _forward(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        # Same arithmetic as HeadAdapterWrapper.forward, without its side effect of switching the
        # batch norms' requires_grad off on every call.
        model = self.model_ if model is None else model
        if self.params["head"] == "variformer":
            embeddings = model.enformer(x, return_only_embeddings=True)
            return model.to_tracks(embeddings)
        embeddings = model(x, return_only_embeddings=True)
        return model.heads[self.params["output_head"]](embeddings)


def _load_weights(model: torch.nn.Module, state: dict[str, Any]) -> str | None:
    """Copy ``state`` into ``model``; return what did not fit, or None.

    enformer-pytorch registers each module under two names (``stem.*`` and ``_trunk.1.*``), so a
    complete file may hold either name of each pair (``save_model`` keeps one). A batch norm fills
    in a missing ``num_batches_tracked`` silently, which is why this does not rely on
    ``load_state_dict``'s own bookkeeping.
    """
    expected = model.state_dict()
    aliases: dict[int, list[str]] = {}
    for key, tensor in expected.items():
        aliases.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
    missing = sorted(names[0] for names in aliases.values() if not any(name in state for name in names))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        parts = [
            f"{len(names)} {label} (e.g. {', '.join(names[:3])})"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched))
            if names
        ]
        return "; ".join(parts) + " tensor(s)."
    model.load_state_dict(state, strict=False)
    return None


def _pretrained_files(directory: Path) -> tuple[Path, list[Path]]:
    """``config.json`` and the safetensors weight file(s) of a pre-trained directory."""
    if not directory.is_dir():
        raise InputError(
            f"Enformer pretrained_dir {str(directory)!r} is not a directory. Give a local directory "
            "holding config.json and model.safetensors (varscore never downloads weights)."
        )
    config = directory / "config.json"
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        weights = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            weights = [directory / name for name in sorted(set(weight_map.values()))]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"Cannot read the shard index {index}: {err}") from err
    else:
        weights = []
    missing = [p.name for p in (config, *weights) if not p.is_file()]
    if not weights:
        missing.append("model.safetensors")
    if missing:
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        hint = (
            f" It holds {', '.join(pickles)}, pickle file(s) varscore will not read: convert them to "
            "model.safetensors first (e.g. with the Hugging Face safetensors converter)."
            if pickles
            else ""
        )
        raise InputError(
            f"Enformer pretrained_dir {str(directory)!r} lacks {', '.join(missing)}: it must hold "
            f"config.json and model.safetensors (or model.safetensors.index.json with its shards).{hint}"
        )
    return config, weights


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    register(EnformerBackbone)
