"""Evaluation across held-out people: per-gene R² (as sklearn ``r2_score``) and Pearson r (as
``scipy.stats.pearsonr``); HOP = the model's train genes, HOGP = genes it was not trained on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from varscore.bundle import ModelBundle
from varscore.errors import InputError
from varscore.training import FinetuneData, per_gene_metrics


@dataclass
class Evaluation:
    """``table``: one row per gene — model, gene, set (HOP/HOGP), people, r2, pearson."""

    table: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        return self.table.groupby(["model", "set"])[["r2", "pearson"]].mean().reset_index()


def predict_gene(bundle: ModelBundle, backbone: object, data: FinetuneData, gene_index: int,
                 people: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """The model's scalar prediction for each of ``people`` (indices) for one gene: ``(n,)``."""
    mode = bundle.output_mode()
    windows = data.genes[gene_index].windows
    out = []
    for start in range(0, len(people), batch_size):
        batch = windows.batch(people[start : start + batch_size]).astype(np.float32, copy=False)
        out.append(mode.reduce(backbone.predict(batch))[:, 0])  # type: ignore[attr-defined]
    return np.concatenate(out) if out else np.empty(0, np.float32)


def evaluate_bundle(bundle: ModelBundle, data: FinetuneData, people: Sequence[int] | None = None,
                    batch_size: int = 8) -> Evaluation:
    """Per-gene metrics of ``bundle`` on ``people`` (default: the data's test people)."""
    backbone = bundle.backbone()
    genotype_model = backbone.input_kind == "genotypes"  # linear: intercept + dosage @ coef per gene
    if backbone.window_size != data.genes[0].windows.reference.shape[0]:
        raise InputError(
            f"Model '{bundle.name}' takes {backbone.window_size}-bp windows; the cohort was loaded with "
            f"{data.genes[0].windows.reference.shape[0]}-bp windows."
        )
    chosen = np.asarray(data.test if people is None else people, dtype=np.int64)
    if len(chosen) < 2:
        raise InputError(f"Evaluation needs at least 2 held-out people; got {len(chosen)}.")
    trained = set(bundle.manifest.get("train_genes") or [g["gene_id"] for g in bundle.manifest.get("genes", [])])
    rows = []
    for index, gene_data in enumerate(data.genes):
        if genotype_model:
            if gene_data.gene.gene_id not in backbone.genes:
                continue  # a per-gene linear model has nothing to say about other genes
            pred = backbone.predict_people(gene_data, chosen, data.train)
        else:
            pred = predict_gene(bundle, backbone, data, index, chosen, batch_size)
        target = gene_data.expression[chosen]
        (r2, pearson), = per_gene_metrics(np.zeros(len(chosen), dtype=np.int64), pred, target, 1)
        rows.append({
            "model": bundle.name,
            "gene": gene_data.gene.label,
            "set": "HOP" if gene_data.gene.gene_id in trained else "HOGP",
            "people": len(chosen),
            "r2": r2,
            "pearson": pearson if not math.isnan(pearson) else np.nan,
        })
    return Evaluation(pd.DataFrame(rows))
