"""Expression: causal variants, effect sizes, heritability and the inverse-normal expression values."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from varscore.simulate.config import COMMON_MAF, DISTANCE_SCALE, EFFECT_ALPHA, MAX_CAUSAL, SimulationConfig
from varscore.simulate.genotypes import _Variants
from varscore.simulate.motifs import MotifChange
from varscore.types import Gene

logger = logging.getLogger("varscore.simulate")


@dataclass
class _Causal:
    gene: Gene
    row: int  # variant row
    effect: float  # per ALT allele, in SD units of the gene's latent expression
    kind: str  # "motif" or "direct"
    change: MotifChange | None


@dataclass
class _GeneTruth:
    gene: Gene
    h2_target: float
    h2_realised: float  # R² of the inverse-normal expression on the genetic value
    h2_latent: float  # var(genetic) / var(latent log-expression)
    causal: list[_Causal]
    n_variants: int
    log_tpm_mean: float
    log_tpm_sd: float


def draw_h2(config: SimulationConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n,)`` target cis-heritabilities: ``config.h2`` for all, or the null/Beta mixture."""
    if config.h2 is not None:
        return np.full(n, float(config.h2))
    null = rng.random(n) < config.h2_null_fraction
    if config.h2_mean in (0.0, 1.0):
        values = np.full(n, float(config.h2_mean))
    else:
        a = config.h2_mean * config.h2_concentration
        values = rng.beta(a, config.h2_concentration - a, size=n)
    return np.where(null, 0.0, np.round(values, 4))


def inverse_normal(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse normal transform as GTEx, ``Φ⁻¹(rank / (n + 1))``, ties averaged;
    ``(people,)`` in and out (:func:`varscore.training.cohort.inverse_normal_transform` with offset 0)."""
    from varscore.training.cohort import inverse_normal_transform

    return inverse_normal_transform(values, offset=0.0)


def _choose_causal(
    gene: Gene,
    rows: np.ndarray,
    variants: _Variants,
    dosage: np.ndarray,
    changes: dict[int, MotifChange],
    config: SimulationConfig,
    rng: np.random.Generator,
) -> list[tuple[int, str]]:
    """Pick the gene's causal variant rows and their kinds among ``rows`` (its flank)."""
    people = dosage.shape[1]
    counts = dosage[rows].sum(axis=1)
    minor = np.minimum(counts, 2 * people - counts)
    usable = rows[minor >= 2]  # a singleton cannot carry an effect anyone could detect
    if len(usable) == 0:
        return []
    usable_minor = np.minimum(dosage[usable].sum(axis=1), 2 * people - dosage[usable].sum(axis=1))
    common = usable_minor / (2 * people) >= COMMON_MAF
    distance = np.abs(variants.pos[usable] - gene.tss)
    weight = np.exp(-distance / DISTANCE_SCALE)
    motif_ok = np.array([int(r) in changes for r in usable])
    n_causal = int(min(1 + rng.poisson(config.causal_per_gene - 1), MAX_CAUSAL, len(usable)))
    chosen: list[tuple[int, str]] = []
    taken = np.zeros(len(usable), dtype=bool)
    for slot in range(n_causal):
        kind = "motif" if rng.random() < config.motif_fraction else "direct"
        # The first is common: a gene's cis-h2 resting on rare variants alone would not survive
        # the inverse normal transform (a few carriers can hold only a few top ranks).
        want_common = slot == 0 or rng.random() >= config.rare_fraction
        # Direct variants are drawn from those that change no motif match, so the two kinds stay
        # distinct in the truth; fall back to the other frequency class, then the other kind.
        other = "direct" if kind == "motif" else "motif"
        preferences = [
            (kind, want_common),
            (kind, not want_common),
            (other, want_common),
            (other, not want_common),
        ]
        for pool_kind, is_common in preferences:
            pool = ~taken & (common == is_common) & (motif_ok if pool_kind == "motif" else ~motif_ok)
            if pool.any():
                p = np.where(pool, weight, 0.0)
                pick = int(rng.choice(len(usable), p=p / p.sum()))
                taken[pick] = True
                chosen.append((int(usable[pick]), pool_kind))
                break
    return chosen


def _mix_for_h2(genetic: np.ndarray, noise: np.ndarray, h2: float) -> float:
    """The latent genetic share ``t`` for which the inverse-normal-transformed
    ``sqrt(t) * genetic + sqrt(1 - t) * noise`` has R² = ``h2`` on ``genetic`` (bisection).

    The transform squashes large rare-variant effects, so ``t`` >= ``h2``; the h2 then holds on
    the expression file people train on, not only on the latent scale."""

    def r2(t: float) -> float:
        expression = inverse_normal(math.sqrt(t) * genetic + math.sqrt(1 - t) * noise)
        return float(np.corrcoef(genetic, expression)[0, 1] ** 2)

    low, high = 0.0, 1.0
    if r2(high) < h2:
        return high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if r2(middle) < h2 else (low, middle)
    return (low + high) / 2


def _simulate_gene(
    gene: Gene,
    h2: float,
    variants: _Variants,
    dosage: np.ndarray,
    changes: dict[int, MotifChange],
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[_GeneTruth, np.ndarray]:
    """One gene's latent log-expression ``(people,)`` (mean 0, variance 1) and its truth."""
    people = dosage.shape[1]
    flank = config.causal_flank
    in_flank = np.flatnonzero((np.asarray(variants.chrom) == gene.chrom) & (np.abs(variants.pos - gene.tss) <= flank))
    picks = _choose_causal(gene, in_flank, variants, dosage, changes, config, rng) if h2 > 0 else []
    raw = np.zeros(len(picks))
    for i, (row, kind) in enumerate(picks):
        freq = dosage[row].mean() / 2
        size = (0.2 + abs(rng.normal())) * (2 * freq * (1 - freq)) ** EFFECT_ALPHA
        if kind == "motif":  # the TFs act as activators: a new site raises expression
            sign = 1.0 if changes[row].effect == "creates" else -1.0
        else:
            sign = 1.0 if rng.random() < 0.5 else -1.0
        raw[i] = sign * size
    genetic = raw @ dosage[[r for r, _ in picks]].astype(float) if picks else np.zeros(people)
    spread = genetic.std(ddof=1)
    if h2 > 0 and spread == 0:
        logger.warning("gene %s: no usable variant within %d bp of its TSS; simulated with h2 = 0", gene.label, flank)
        h2, picks = 0.0, []
    # Noise is made orthogonal to the genetic value in this sample and both are scaled to the
    # realised sample variances, so the h2 below is exact, not only expected.
    noise = np.asarray(rng.normal(size=people), dtype=float)
    noise -= noise.mean()
    latent_share = 0.0
    if picks:
        genetic = (genetic - genetic.mean()) / spread
        noise -= genetic * (noise @ genetic) / (genetic @ genetic)
        noise /= noise.std(ddof=1)
        latent_share = _mix_for_h2(genetic, noise, h2)
        genetic *= math.sqrt(latent_share)
        noise *= math.sqrt(1 - latent_share)
        raw *= math.sqrt(latent_share) / spread
    else:
        noise /= noise.std(ddof=1)
    latent = genetic + noise
    realised = float(np.corrcoef(genetic, inverse_normal(latent))[0, 1] ** 2) if picks else 0.0
    truth = _GeneTruth(
        gene=gene,
        h2_target=h2,
        h2_realised=realised,
        h2_latent=float(genetic.var(ddof=1) / latent.var(ddof=1)),
        causal=[
            _Causal(gene, row, float(effect), kind, changes.get(row) if kind == "motif" else None)
            for (row, kind), effect in zip(picks, raw, strict=True)
        ],
        n_variants=len(in_flank),
        log_tpm_mean=float(np.round(rng.normal(math.log(30), 1.0), 4)),
        log_tpm_sd=float(np.round(rng.uniform(0.25, 0.6), 4)),
    )
    return truth, latent
