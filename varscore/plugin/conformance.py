"""Conformance checks that any backbone plugin's tests can call."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError, NotFittedError
from varscore.genome.sequence import BASES
from varscore.plugin.contracts import HOMOZYGOUS_ALT, Backbone, GenotypeBackbone, OutputMode, SequenceBackbone


def _random_one_hot(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    idx = rng.integers(0, 4, size=(n, length))
    return np.eye(4, dtype=np.float32)[idx]


def check_backbone(
    backbone_cls: type[Backbone],
    params: dict[str, Any] | None = None,
    output_mode: OutputMode | None = None,
    atol: float = 1e-5,
    seed: int = 0,
) -> None:
    """Check that ``backbone_cls`` honours the :class:`~varscore.plugin.contracts.Backbone` contract.

    Builds it with ``params`` (keep them tiny), then checks: class attributes; unknown
    parameters are rejected; using it unbuilt raises :class:`NotFittedError`; ``predict``
    returns ``(N, bins, tracks)`` with ``bins * bin_size == window_size`` for sequence models
    and is deterministic and batch-independent; ``save`` then ``load`` gives the same
    predictions; ``ism`` equals direct predictions of hand-edited windows. Raises
    ``AssertionError`` naming the failed property.
    """
    params = dict(params or {})
    for attr in ("name", "output_modes"):
        if not getattr(backbone_cls, attr, None):
            raise AssertionError(f"{backbone_cls.__name__} lacks class attribute '{attr}'")
    if not issubclass(backbone_cls, (SequenceBackbone, GenotypeBackbone)):
        raise AssertionError(f"{backbone_cls.__name__} must derive from SequenceBackbone or GenotypeBackbone")
    try:
        backbone_cls(**params, no_such_option_xyz=1)
    except InputError:
        pass
    else:
        raise AssertionError("unknown parameters must raise InputError")

    unbuilt = backbone_cls(**params)
    rng = np.random.default_rng(seed)
    if issubclass(backbone_cls, GenotypeBackbone):
        return _check_genotype_backbone(backbone_cls, params, rng, atol)

    length = unbuilt.window_size
    try:
        unbuilt.predict(_random_one_hot(rng, 1, length))
    except NotFittedError:
        pass
    else:
        raise AssertionError("predict() before build()/load() must raise NotFittedError")

    backbone = backbone_cls(**params).build()
    batch = _random_one_hot(rng, 3, length)
    pred = np.asarray(backbone.predict(batch))
    if pred.ndim != 3 or pred.shape[0] != 3:
        raise AssertionError(f"predict() must return (N, bins, tracks); got shape {pred.shape}")
    if pred.shape[1] * backbone.bin_size != length:
        raise AssertionError(
            f"bins × bin_size must equal window_size: {pred.shape[1]} × {backbone.bin_size} != {length}"
        )
    if not np.all(np.isfinite(pred)):
        raise AssertionError("predict() returned non-finite values")
    again = np.asarray(backbone.predict(batch))
    if not np.allclose(pred, again, atol=atol):
        raise AssertionError("predict() is not deterministic (dropout left on in inference?)")
    single = np.asarray(backbone.predict(batch[1:2]))
    if not np.allclose(pred[1:2], single, atol=atol):
        raise AssertionError("predict() of one sequence differs from the same sequence in a batch")

    with tempfile.TemporaryDirectory() as tmp:
        backbone.save(Path(tmp))
        if not (Path(tmp) / "weights.safetensors").exists():
            raise AssertionError("save() must write weights.safetensors")
        restored = backbone_cls(**backbone.params).load(Path(tmp))
        if not np.allclose(pred, np.asarray(restored.predict(batch)), atol=atol):
            raise AssertionError("load(save()) does not reproduce predictions")

    if output_mode is None:
        from varscore.plugin.manager import get_output_mode

        output_mode = get_output_mode("scalar")()  # the registered scalar mode, whichever plugin provides it
    reference = batch[0]
    offsets = [0, length // 2, length - 1]
    subs = []
    for off in offsets:
        current = BASES[int(reference[off].argmax())]
        subs.append((off, next(b for b in BASES if b != current)))
    result = backbone.ism(reference, subs, output_mode.reduce, batch_size=2)
    expected_ref = output_mode.reduce(backbone.predict(reference[None]))[0]
    if not np.allclose(result.reference, expected_ref, atol=atol):
        raise AssertionError("ism() reference prediction differs from predict()")
    for row, (off, base) in enumerate(subs):
        edited = reference.copy()
        edited[off] = 0.0
        edited[off, BASES.index(base)] = 1.0
        direct = output_mode.reduce(backbone.predict(edited[None]))[0]
        if not np.allclose(result.alternates[row], direct, atol=atol):
            raise AssertionError(f"ism() alternate {row} differs from predict() of the edited window")
    return None


def _check_genotype_backbone(
    backbone_cls: type[GenotypeBackbone], params: dict[str, Any], rng: np.random.Generator, atol: float
) -> None:
    """``build()`` gives a model holding at least one gene (a genotype model's ``build`` may fit
    or fill it); predictions, variant effects and aligned predictions must agree, and survive
    ``save``/``load``."""
    backbone = backbone_cls(**params)
    backbone.build()
    genes = backbone.gene_ids()
    if not genes:
        raise AssertionError("a built genotype backbone must hold at least one gene for the checks")
    gene = genes[0]
    keys = backbone.variant_keys(gene)
    dosages = rng.integers(0, 3, size=(4, len(keys))).astype(np.float32)
    pred = np.asarray(backbone.predict_dosages(gene, dosages))
    if pred.shape != (4,):
        raise AssertionError(f"predict_dosages() must return (N,); got shape {pred.shape}")
    as_batch = np.asarray(backbone.predict(dosages, gene))
    if as_batch.shape != (4, 1) or not np.allclose(as_batch[:, 0], pred, atol=atol):
        raise AssertionError("predict(batch, gene) must equal predict_dosages(gene, batch) as (N, 1)")
    if not backbone.has_gene(gene) or backbone.has_gene("no-such-gene-xyz"):
        raise AssertionError("has_gene() must be true exactly for gene_ids()")
    reference = float(np.asarray(backbone.predict_dosages(gene, np.zeros((1, len(keys)))))[0])
    for j, effect in enumerate(backbone.variant_effects(gene)):
        one = np.zeros((1, len(keys)))
        one[0, j] = HOMOZYGOUS_ALT
        alt = float(np.asarray(backbone.predict_dosages(gene, one))[0])
        if (
            effect.key != keys[j]
            or not np.isclose(effect.ref_pred, reference, atol=atol)
            or not np.isclose(effect.alt_pred, alt, atol=atol)
        ):
            raise AssertionError(f"variant_effects() entry {j} differs from predict_dosages() with that ALT homozygous")
    order = rng.permutation(len(keys))
    shuffled, absent = backbone.predict_aligned(gene, [keys[i] for i in order], dosages[:, order])
    if absent or not np.allclose(shuffled, pred, atol=atol):
        raise AssertionError("predict_aligned() with the columns shuffled must equal predict_dosages()")
    with tempfile.TemporaryDirectory() as tmp:
        backbone.save(Path(tmp))
        restored = backbone_cls(**backbone.params)
        restored.load(Path(tmp))
        if not np.allclose(pred, np.asarray(restored.predict_dosages(gene, dosages)), atol=atol):
            raise AssertionError("load(save()) does not reproduce predictions")
