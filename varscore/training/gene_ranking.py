"""Ranking the average expression of genes: for each gene, a model's prediction from the reference
window (no personal variants) against the mean observed log2(TPM + 2) over people; one Pearson
and one Spearman correlation across genes per model (the paper's Additional file 1: Fig. S7).

Works for any sequence-model bundle: a fine-tuned scalar model (its centre bin), or a pre-trained
Enformer/Borzoi bundle scored on one track and its centre bins (``track``/``center_bins``, e.g.
Enformer's CAGE blood track 4950 over 3 centre bins). From Python:

    from varscore.training.gene_ranking import GeneRankingJob, run_gene_ranking

    result = run_gene_ranking(GeneRankingJob(["my-model"], tpm="tpm.tsv", genes="test_genes.tsv"))
    result.table, result.summary
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.types import Gene

#: The pseudocount of the paper's average-expression target, log2(TPM + 2).
TPM_PSEUDOCOUNT = 2.0
MIN_GENES = 3


def mean_log_tpm(tpm: pd.DataFrame, people: Sequence[str] | None = None) -> pd.Series:
    """Per gene: the mean over ``people`` (default: all columns) of ``log2(TPM + 2)``."""
    if people is not None:
        if not people:
            raise InputError("The mean log2(TPM + 2) needs at least one person; got none.")
        absent = [p for p in people if p not in tpm.columns]
        if absent:
            raise InputError(f"{len(absent)} people are not columns of the TPM table: {', '.join(absent[:5])}.")
        tpm = tpm[list(people)]
    return np.log2(tpm + TPM_PSEUDOCOUNT).mean(axis=1)


def _match_genes(genes: Sequence[Gene], index: pd.Index) -> tuple[list[Gene], list[str], list[str]]:
    """The genes found in ``index`` (by ID, ID without an Ensembl version, or name), their row
    labels, and the labels of the genes not found."""
    exact = {str(g) for g in index}
    versionless: dict[str, list[str]] = {}
    for g in index:
        versionless.setdefault(str(g).split(".", 1)[0], []).append(str(g))
    found, rows, absent = [], [], []
    for gene in genes:
        candidates = [gene.gene_id, gene.name] if gene.name else [gene.gene_id]
        hit = next((c for c in candidates if c in exact), None)
        if hit is None:
            loose = versionless.get(gene.gene_id.split(".", 1)[0], [])
            hit = loose[0] if len(loose) == 1 else None
        if hit is None:
            absent.append(gene.label)
        else:
            found.append(gene)
            rows.append(hit)
    return found, rows, absent


def rank_correlations(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pearson r and Spearman rho (Pearson r of average ranks) of ``predicted`` with ``observed``
    ``(G,)`` across genes, with two-sided p-values (Student's t with G − 2 degrees of freedom, as
    scipy's); NaN where either side is constant."""
    from varscore.training.uncertainty import pearson_p

    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        da, db = a - a.mean(), b - b.mean()
        denominator = math.sqrt(float((da**2).sum() * (db**2).sum()))
        return float((da * db).sum() / denominator) if denominator > 0 else math.nan

    r = pearson(observed, predicted)
    rho = pearson(
        pd.Series(observed).rank(method="average").to_numpy(), pd.Series(predicted).rank(method="average").to_numpy()
    )
    n = len(observed)
    return {
        "pearson": r,
        "pearson_p": pearson_p(r, n) if not math.isnan(r) else math.nan,
        "spearman": rho,
        "spearman_p": pearson_p(rho, n) if not math.isnan(rho) else math.nan,
    }


@dataclass
class GeneRankingJob:
    """One ranking: each of ``models`` predicts every gene of ``genes`` (a gene/TSS table;
    ``gene_names`` picks some) from its reference window (``fasta``, default: the model's), against
    the mean log2(TPM + 2) of ``tpm`` over ``people_file``'s people (one per line; default: every
    person of the table). ``track`` and ``center_bins`` score the models on one output track summed
    over that many centre bins (a pre-trained Enformer: track 4950, 3 bins); None: each model's own
    output mode. ``output``: the per-gene TSV (with ``.provenance.json``)."""

    models: Sequence[str | Path]
    tpm: Path
    genes: Path
    fasta: Path | None = None
    gene_names: Sequence[str] | None = None
    people_file: Path | None = None
    track: int | None = None
    center_bins: int | None = None
    output: Path | None = None
    batch_size: int = 4
    command: Sequence[str] | None = None
    device: str = "cpu"  # or "cuda", "auto"


@dataclass
class GeneRankingResult:
    """``table``: one row per model and gene — model, gene, gene_id, observed (mean log2(TPM + 2)),
    predicted (the reference window's prediction). ``summary``: per model, genes, pearson,
    pearson_p, spearman, spearman_p across genes. ``people``: how many people the means are over;
    ``skipped``: genes of the gene table absent from the TPM table."""

    table: pd.DataFrame
    summary: pd.DataFrame
    people: int
    skipped: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``varscore rank-genes`` prints: the correlations per model."""
        lines = [
            f"average expression of {self.summary['genes'].max()} genes (mean log2(TPM + 2) over {self.people} "
            "people) vs the reference-window prediction; correlation across genes:"
        ]
        lines += self.summary.to_string(index=False, float_format=lambda v: f"{v:.3g}").split("\n")
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            lines.append(f"{len(self.skipped)} genes not in the TPM table (left out): {shown}")
        lines += [f"wrote {path}" for path in self.written]
        return lines


def _output_mode(bundle: Any, job: GeneRankingJob) -> Any:
    """The bundle's output mode, or the scalar mode on ``job.track`` over ``job.center_bins``."""
    from varscore.plugin.manager import get_output_mode

    if job.track is None and job.center_bins is None:
        if bundle.spec.output_mode.name != "scalar":
            raise InputError(
                f"Model '{bundle.name}' predicts '{bundle.spec.output_mode.name}' outputs: pass --track and "
                "--center-bins to rank genes by one track's centre bins."
            )
        return bundle.output_mode()
    params = bundle.spec.output_mode.params
    track = job.track if job.track is not None else int(params.get("track", 0))
    bins = job.center_bins if job.center_bins is not None else int(params.get("center_bins", 1))
    return get_output_mode("scalar")(track=track, center_bins=bins, stat="center")


def reference_predictions(bundle: Any, genes: Sequence[Gene], fasta: Path | None, job: GeneRankingJob) -> np.ndarray:
    """``(G,)``: ``bundle``'s prediction for each gene's TSS-centred reference window."""
    from varscore.genome.fasta import Genome
    from varscore.plugin.contracts import GenotypeBackbone
    from varscore.types import tss_window

    backbone = bundle.backbone()
    backbone.configure(device=job.device)
    if isinstance(backbone, GenotypeBackbone):
        raise InputError(
            f"Model '{bundle.name}' is a genotype model: it has no reference-window prediction to rank genes by."
        )
    mode = _output_mode(bundle, job)
    path = fasta or bundle.reference_fasta
    if path is None:
        raise InputError(f"Model '{bundle.name}' records no reference FASTA: pass --fasta.")
    genome = Genome(path)
    window = int(bundle.window_size)
    out = []
    for start in range(0, len(genes), job.batch_size):
        chunk = genes[start : start + job.batch_size]
        batch = np.stack([genome.window_sequence(tss_window(g, window)).one_hot for g in chunk]).astype(np.float32)
        reduced = np.asarray(mode.reduce(backbone.predict(batch)), dtype=np.float64)
        out.append(reduced[:, 0])
    return np.concatenate(out)


def run_gene_ranking(job: GeneRankingJob) -> GeneRankingResult:
    """Rank ``job``'s genes by each model's reference prediction; see :class:`GeneRankingJob`."""
    from varscore.genome.fasta import load_genes
    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import read_people_file, read_tpm

    if not job.models:
        raise InputError("Gene ranking needs at least one model; got none.")
    tpm = read_tpm(job.tpm)[0]
    people = None
    if job.people_file is not None:
        people = read_people_file(job.people_file)
    means = mean_log_tpm(tpm, people)
    genes, rows, skipped = _match_genes(load_genes(job.genes, names=job.gene_names), tpm.index)
    if len(genes) < MIN_GENES:
        raise InputError(
            f"Gene ranking needs at least {MIN_GENES} genes found in both {job.genes} and {job.tpm}; got {len(genes)}."
        )
    observed = means.loc[rows].to_numpy(dtype=np.float64)
    bundles = [load_bundle(m) for m in job.models]
    parts, summary = [], []
    for bundle in bundles:
        predicted = reference_predictions(bundle, genes, job.fasta, job)
        parts.append(
            pd.DataFrame(
                {
                    "model": bundle.name,
                    "gene": [g.label for g in genes],
                    "gene_id": [g.gene_id for g in genes],
                    "observed": observed,
                    "predicted": predicted,
                }
            )
        )
        summary.append({"model": bundle.name, "genes": len(genes), **rank_correlations(observed, predicted)})
    result = GeneRankingResult(
        pd.concat(parts, ignore_index=True), pd.DataFrame(summary), len(people or tpm.columns), skipped
    )
    if job.output is not None:
        from varscore.io.outputguard import atomic_file, write_provenance_sidecar

        with atomic_file(job.output) as tmp:
            result.table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        sidecar = write_provenance_sidecar(job.output, bundles[0], job.command, {"models": [b.name for b in bundles]})
        result.written = [Path(job.output), sidecar]
    return result
