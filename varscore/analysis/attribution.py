"""Gradient × input attributions of a sequence model's scalar output, on the reference window and
on personal genomes (mean over people), summarised as the "standardised attribution": ``|·|``,
maximum over the 4 bases, z-scored along the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from varscore.errors import InputError

if TYPE_CHECKING:
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import GeneVariants, ModelScorer


def gradient_x_input(
    module: Any,
    sequences: np.ndarray,
    reduce: Callable[[Any], Any],
    batch_size: int = 8,
    device: str = "cpu",
) -> np.ndarray:
    """Gradient of the reduced output with respect to the input, times the input.

    ``module``: a ``torch.nn.Module`` mapping ``(B, L, 4)`` to ``(B, bins, tracks)``;
    ``sequences``: ``(N, L, 4)`` one-hot (or dosage) windows; ``reduce`` maps the module's output
    to ``(B, 1)`` (an output mode's ``reduce`` works on tensors too). Returns ``(N, L, 4)`` float64.
    The module is put in eval mode; its parameters are not changed.
    """
    import torch

    array = np.asarray(sequences)
    if array.ndim != 3 or array.shape[2] != 4:
        raise InputError(f"Attribution needs (N, L, 4) sequences; got shape {array.shape}.")
    module.eval()
    dtype = next(iter(module.parameters())).dtype if any(True for _ in module.parameters()) else torch.float32
    out = np.empty(array.shape, dtype=np.float64)
    for start in range(0, len(array), batch_size):
        x = torch.tensor(array[start : start + batch_size], dtype=dtype, device=device, requires_grad=True)
        with torch.enable_grad():
            value = reduce(module(x))
            if value.ndim != 2 or value.shape[1] != 1:
                raise InputError(
                    f"Attribution needs one output per sequence; the output mode gives {tuple(value.shape)}."
                )
            (grad,) = torch.autograd.grad(value.sum(), x)
        out[start : start + len(x)] = (grad * x).detach().double().cpu().numpy()
    return out


def standardised_attribution(attribution: np.ndarray) -> np.ndarray:
    """``(L, 4)`` gradient × input -> ``(L,)``: ``|·|``, maximum over bases, z-scored along the
    window (all zeros when the window's attribution is constant)."""
    a = np.abs(np.asarray(attribution, dtype=np.float64)).max(axis=1)
    sd = a.std()
    return (a - a.mean()) / sd if sd > 0 else np.zeros_like(a)


@dataclass(frozen=True)
class GeneAttribution:
    """Standardised attributions of one gene's window: ``reference`` ``(L,)`` from the reference
    sequence, ``personal`` ``(L,)`` from the mean of the people's gradient × input (None when no
    people were given). ``start`` is the window's 0-based start (position ``start + 1 + i``)."""

    gene: str
    chrom: str
    start: int
    reference: np.ndarray
    personal: np.ndarray | None

    def at(self, positions: np.ndarray, which: str = "personal") -> np.ndarray:
        """Values at 1-based ``positions`` (NaN outside the window)."""
        track = self.personal if which == "personal" and self.personal is not None else self.reference
        offsets = np.asarray(positions, dtype=np.int64) - 1 - self.start
        inside = (offsets >= 0) & (offsets < len(track))
        out = np.full(len(offsets), np.nan)
        out[inside] = track[offsets[inside]]
        return out


def attribute_gene(
    scorer: ModelScorer, variants: GeneVariants, rows: np.ndarray | None = None, batch_size: int = 4
) -> GeneAttribution:
    """Standardised attributions of ``scorer``'s model (a :class:`~varscore.analysis.ism.ModelScorer`
    of a sequence model) on ``variants``' reference window and on the people at ``rows``."""
    from varscore.genome.personal import personal_one_hot
    from varscore.plugin.contracts import SequenceBackbone

    backbone = scorer.backbone
    if not scorer.scores_sequence or not isinstance(backbone, SequenceBackbone):
        raise InputError(f"Attribution needs a sequence model; '{scorer.name}' is a genotype model.")
    if not backbone.has_torch_module:
        raise InputError(f"Model '{scorer.name}' exposes no torch module, so gradients cannot be computed.")
    module = backbone.torch_module()
    device = backbone.device
    reduce = scorer.output_mode.reduce
    ref = gradient_x_input(module, variants.reference[None], reduce, device=device)[0]
    personal = None
    if rows is not None and len(rows):
        total = np.zeros_like(ref)
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), batch_size):
            batch = personal_one_hot(variants.reference, variants.genotypes, people=rows[start : start + batch_size])
            total += gradient_x_input(module, batch, reduce, batch_size=batch_size, device=device).sum(axis=0)
        personal = standardised_attribution(total / len(rows))
    return GeneAttribution(
        variants.gene.label, variants.window.chrom, variants.window.start, standardised_attribution(ref), personal
    )


def attribution_table(attribution: GeneAttribution) -> pd.DataFrame:
    """Per-position table: chrom, pos (1-based), reference, personal."""
    n = len(attribution.reference)
    table = pd.DataFrame(
        {
            "chrom": attribution.chrom,
            "pos": attribution.start + 1 + np.arange(n),
            "gene": attribution.gene,
            "reference": attribution.reference,
        }
    )
    table["personal"] = attribution.personal if attribution.personal is not None else np.nan
    return table


@dataclass(frozen=True)
class AttributionJob:
    """One ``varscore attribute`` run: standardised attributions of each gene's window on the
    reference and (unless ``reference_only``) on the personal genomes of the people in
    ``people_file`` (one per line; None: the model's recorded test people), written per position to
    ``output``. With ``variants_file`` (an ``hsv`` or ``drivers`` TSV), the mean attribution at
    those variants vs at their matched controls. ``argv`` is the command recorded in the
    provenance sidecar (None: this process's)."""

    inputs: AnalysisInputs
    output: Path
    people_file: Path | None = None
    reference_only: bool = False
    variants_file: Path | None = None
    batch_size: int = 8
    progress: bool = False
    argv: Sequence[str] | None = None


@dataclass(frozen=True)
class AttributionAtVariants:
    """The mean standardised attribution (``track``: ``reference`` or ``personal``) at the
    ``variants`` variants of ``group`` (``selected`` or ``controls``)."""

    group: str
    variants: int
    mean: float
    track: str


@dataclass
class AttributionResult:
    """``table``: the per-position table written to ``output`` (:func:`attribution_table` of every
    gene); ``genes``: each gene's :class:`GeneAttribution` by label; ``at_variants``: selected
    variants vs matched controls (empty without a variants file)."""

    table: pd.DataFrame
    genes: dict[str, GeneAttribution]
    output: Path
    at_variants: list[AttributionAtVariants] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the command prints on stdout: the selected variants vs their controls."""
        return [
            f"{a.group}: {a.variants} variants, mean standardised attribution ({a.track}) {a.mean:.3f}"
            for a in self.at_variants
        ]

    def notes(self) -> list[str]:
        """What the command prints on stderr: the table written."""
        return [f"wrote {self.output}"]


def read_selected_variants(path: Path) -> pd.DataFrame:
    """An ``hsv`` or ``drivers`` TSV with a ``key`` column (chrom:pos:ref:alt) added."""
    chosen = pd.read_csv(path, sep="\t")
    missing = {"chrom", "pos", "ref", "alt", "gene"} - set(chosen.columns)
    if missing:
        raise InputError(f"{path} lacks columns {', '.join(sorted(missing))}: give an 'hsv' or 'drivers' TSV.")
    chosen["key"] = (
        chosen["chrom"].astype(str) + ":" + chosen["pos"].astype(str) + ":" + chosen["ref"] + ":" + chosen["alt"]
    )
    return chosen


def run_attribution(job: AttributionJob) -> AttributionResult:
    """Run ``job``; see :class:`AttributionJob`."""
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, HSV_MAF_TOLERANCE, matched_controls
    from varscore.analysis.inputs import write_table
    from varscore.analysis.ism import held_out_people
    from varscore.io.progress import progress_iter

    run = job.inputs.load()
    variants = run.cohort_variants()
    people = None if job.reference_only else held_out_people(run.bundle, job.people_file)
    genes = {}
    for gv in progress_iter(list(variants.values()), "attribute", "genes", job.progress):
        rows = gv.people_rows(people) if people else None
        genes[gv.gene.label] = attribute_gene(run.scorer, gv, rows, batch_size=job.batch_size)
    table = pd.concat([attribution_table(a) for a in genes.values()], ignore_index=True)
    write_table(table, job.output, run.bundle, job.argv)
    result = AttributionResult(table, genes, job.output)
    if job.variants_file is None:
        return result
    chosen = read_selected_variants(job.variants_file)
    chosen = chosen[chosen["gene"].isin(genes)]
    pool = pd.concat([gv.table for gv in variants.values()], ignore_index=True)
    tolerance = DRIVER_MAF_TOLERANCE if "driver_rank" in chosen.columns else HSV_MAF_TOLERANCE
    controls = matched_controls(chosen, pool, tolerance)
    which = "reference" if job.reference_only else "personal"
    for group, frame in (("selected", chosen), ("controls", controls.drop_duplicates(["gene", "key"]))):
        values = (
            pd.concat([pd.Series(genes[g].at(rows["pos"].to_numpy(), which)) for g, rows in frame.groupby("gene")])
            if len(frame)
            else pd.Series(dtype=float)
        )
        result.at_variants.append(AttributionAtVariants(group, len(frame), float(values.mean()), which))
    return result
