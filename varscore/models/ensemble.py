"""Replicate ensembles: a bundle may hold several weight files of one architecture (Borzoi's four
replicates; a Variformer's fold replicates from ``finetune --replicates``), listed in the manifest
under ``replicates`` (``weights.safetensors`` first). Scoring with them: :mod:`varscore.scoring.ensemble`;
training them: :mod:`varscore.training.replicates`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varscore.errors import BundleError

logger = logging.getLogger(__name__)

REPLICATES_KEY = "replicates"
WEIGHTS = "weights.safetensors"
REPLICATE_TEMPLATE = "weights.r{}.safetensors"
SD_KEY = "VARSCORE_SD"
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


# -- ensembles -------------------------------------------------------------------------------


def replicate_files(manifest: dict[str, Any]) -> list[str]:
    """The weight files of a bundle, first one first (``[weights.safetensors]`` for a single model)."""
    names = manifest.get(REPLICATES_KEY) or [WEIGHTS]
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n for n in names):
        raise BundleError(f"The manifest's '{REPLICATES_KEY}' must list weight file names; got {names!r}.")
    return list(names)


def save_ensemble_bundle(directory: str | Path, first: Any, replicates: Sequence[str | Path], **kwargs: Any) -> Path:
    """:func:`varscore.models.bundle.save_bundle` for ``first`` (written as ``weights.safetensors``) plus
    the replicate weight files ``replicates`` (same architecture; saved by ``save_weights``), copied
    in as ``weights.r1.safetensors``, ... and listed in the manifest. With no replicates this is a
    plain bundle."""
    import dataclasses

    from varscore.models.bundle import BundleMetadata, save_bundle

    files = dict(kwargs.pop("files", None) or {})
    about = kwargs.pop("about", None) or BundleMetadata()
    extra = dict(about.extra or {})
    names = [REPLICATE_TEMPLATE.format(i + 1) for i in range(len(replicates))]
    files.update(dict(zip(names, replicates, strict=True)))
    if replicates:
        extra[REPLICATES_KEY] = [WEIGHTS, *names]
    return save_bundle(directory, backbone=first, files=files, about=dataclasses.replace(about, extra=extra), **kwargs)


def load_member(bundle: Any, index: int, device: str = "auto", bf16: bool = False) -> Any:
    """Replicate ``index`` of ``bundle`` as a configured sequence backbone."""
    names = replicate_files(bundle.manifest)
    if index == 0:
        return bundle.sequence_backbone(device, bf16)
    from varscore.plugin.manager import get_backbone

    spec = bundle.manifest["backbone"]
    cls = get_backbone(spec["name"], distribution=spec.get("distribution"))
    backbone: Any = cls(**spec.get("params", {}))
    if not backbone.holds_replicates:
        raise BundleError(f"Backbone '{spec['name']}' cannot hold replicate weights ({names[index]}).")
    backbone.load(bundle.path, weights=names[index])
    backbone.configure(device=device, bf16=bf16)
    return backbone
