"""Synthetic eQTL cohorts with known causal variants: coalescent genotypes on a real or random
reference, expression with a chosen cis-heritability per gene, and the truth behind both.

Coordinates follow the package: VCF positions and TSSs are 1-based, BED intervals 0-based
half-open. Everything is drawn from one seed, and the files are byte-identical for a seed.

A package: :mod:`.config` (settings), :mod:`.reference` (sequence and genes), :mod:`.genotypes`,
:mod:`.motifs`, :mod:`.expression`, :mod:`.coverage`, :mod:`.writers` and :mod:`.run`
(:func:`simulate_cohort`).
"""

from __future__ import annotations

from varscore.simulate.config import DEFAULT_MOTIFS, SimulationConfig, SimulationResult, parse_region
from varscore.simulate.expression import draw_h2, inverse_normal
from varscore.simulate.motifs import MotifChange, load_motifs, motif_changes
from varscore.simulate.reference import random_genome
from varscore.simulate.run import simulate_cohort

__all__ = [
    "DEFAULT_MOTIFS",
    "MotifChange",
    "SimulationConfig",
    "SimulationResult",
    "draw_h2",
    "inverse_normal",
    "load_motifs",
    "motif_changes",
    "parse_region",
    "random_genome",
    "simulate_cohort",
]
