"""What a simulation is asked for: the settings (:class:`SimulationConfig`), their checks and the
constants the model of the cohort uses."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.types import Window

SAMPLE_PREFIX = "SIM"


RANDOM_CONTIG = "sim1"


# JASPAR CORE matrices (8-15 bp, so a single base can make or break a match at p < 1e-4) of TFs
# with well-known roles at promoters and blood enhancers. Versions are pinned with the release.
DEFAULT_MOTIFS = (
    "MA0079.5",  # SP1
    "MA0060.4",  # NFYA
    "MA0095.4",  # YY1
    "MA0028.3",  # ELK1
    "MA0098.4",  # ETS1
    "MA0080.7",  # SPI1 (PU.1)
    "MA0466.4",  # CEBPB
    "MA0050.4",  # IRF1
    "MA0137.4",  # STAT1
    "MA0018.5",  # CREB1
    "MA0506.3",  # NRF1
    "MA0139.2",  # CTCF
    "MA0002.3",  # RUNX1
    "MA0107.1",  # RELA
    "MA0099.4",  # FOS::JUN (AP-1)
    "MA0093.4",  # USF1
    "MA0162.5",  # EGR1
    "MA0493.3",  # KLF1
    "MA0105.4",  # NFKB1
)


MOTIF_P_VALUE = 1e-4  # FIMO's default match threshold


MIN_MOTIF_DELTA = 2.0  # log2-odds change a creating/disrupting SNV must make (4-fold likelihood ratio)


PROXIMAL_BP = 1_000  # causal sites this close to the TSS are "proximal" (promoter), others "distal"


COMMON_MAF = 0.05


EFFECT_ALPHA = -0.25  # per-allele effect sd ~ (2pq)^alpha: rarer variants carry larger effects


DISTANCE_SCALE = 5_000  # causal sites are drawn with weight exp(-|distance to TSS| / this)


MAX_CAUSAL = 10


TRANSITION_SHARE = 2 / 3  # Ts/Tv = 2, as in human SNV calls


INDEL_SHARE = 0.12  # about one indel per eight SNVs


GENE_GAP = 10_000  # bp between neighbouring windows in the random genome


# Human dinucleotide frequencies (%, rows = first base, A C G T): GC ~41%, CpG o/e ~0.24.
_DINUCLEOTIDES = np.array([[9.8, 5.0, 7.0, 7.7], [7.3, 5.2, 1.0, 7.0], [5.9, 4.3, 5.2, 5.0], [6.5, 5.9, 7.3, 9.8]])


_TRANSITION = {"A": "G", "G": "A", "C": "T", "T": "C"}


# Config fields the command line sets, and their options (for messages and params.json).
CLI_OPTIONS = {
    "people": "--people",
    "genes": "--genes",
    "region": "--region",
    "seed": "--seed",
    "window": "--window",
    "h2": "--h2",
    "h2_mean": "--h2-mean",
    "h2_null_fraction": "--null-fraction",
    "causal_per_gene": "--causal-per-gene",
    "motif_fraction": "--motif-fraction",
    "rare_fraction": "--rare-fraction",
}


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that decides a simulated cohort. Same config (seed included) → same files.

    Reference: a random genome of ``genes`` genes on contig ``sim1`` by default; or ``fasta``
    with a ``region`` (``chr:start-end``, 1-based inclusive) and/or a ``gene_table`` (TSV, GTF or
    GFF3 with TSSs). Without a gene table, ``genes`` TSSs are spread evenly over the region.

    Expression: each gene's cis-heritability is ``h2`` when given; otherwise 0 with probability
    ``h2_null_fraction`` and else Beta-distributed with mean ``h2_mean`` and concentration
    ``h2_concentration`` (alpha + beta). Heritable genes get ``1 + Poisson(causal_per_gene - 1)``
    causal variants (at most 10) within the central 80% of the ``window``-bp TSS-centred window,
    a ``motif_fraction`` of them chosen because they create or disrupt a JASPAR motif match, a
    ``rare_fraction`` of them with MAF < 0.05.

    Coverage (``coverage``): per-person RNA-seq-like read depth over every gene's window in
    ``coverage_bin``-bp bins (``coverage.npz``; with ``coverage_bigwig`` also one bigWig per person),
    scaled by each person's simulated TPM so that the genetic effects show up in it.
    """

    people: int = 670
    genes: int = 20
    fasta: Path | None = None
    region: str | None = None
    gene_table: Path | None = None
    seed: int = 1
    phased: bool = True
    indels: bool = False
    window: int = 49_152
    h2: float | None = None
    h2_mean: float = 0.2
    h2_null_fraction: float = 0.25
    h2_concentration: float = 8.0
    causal_per_gene: float = 3.0
    motif_fraction: float = 0.5
    rare_fraction: float = 0.3
    population_size: int = 10_000
    recombination_rate: float = 1e-8
    mutation_rate: float = 1.29e-8
    jaspar_release: str = "JASPAR2024"
    coverage: bool = False
    coverage_bin: int = 32
    coverage_bigwig: bool = False

    def __post_init__(self) -> None:
        for name in ("fasta", "gene_table"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        _check_int("people", self.people, 2, "Simulate at least 2 people (default 670).")
        _check_int("genes", self.genes, 1, "Simulate at least 1 gene (default 20).")
        _check_int("window", self.window, 1_000, "Use a window of at least 1,000 bp (default 49,152).")
        _check_int("seed", self.seed, 0, "Use a non-negative integer seed.")
        _check_int("population_size", self.population_size, 1, "Use a positive effective population size.")
        _check_int("coverage_bin", self.coverage_bin, 1, "Use a coverage bin of at least 1 bp (default 32).")
        if self.coverage and self.window % self.coverage_bin:
            raise InputError(
                f"coverage_bin {self.coverage_bin} does not divide the window ({self.window} bp); use a divisor "
                "such as 32."
            )
        if self.coverage_bigwig and not self.coverage:
            object.__setattr__(self, "coverage", True)
        for name in ("h2_mean", "h2_null_fraction", "motif_fraction", "rare_fraction"):
            _check_fraction(name, getattr(self, name))
        if self.h2 is not None:
            _check_fraction("h2", self.h2)
        if not (isinstance(self.h2_concentration, (int, float)) and self.h2_concentration > 0):
            raise InputError(f"h2_concentration must be > 0; got {self.h2_concentration!r}.")
        if not (isinstance(self.causal_per_gene, (int, float)) and 1 <= self.causal_per_gene <= MAX_CAUSAL):
            raise InputError(
                f"{_option('causal_per_gene')} must lie in [1, {MAX_CAUSAL}]; got {self.causal_per_gene!r}. "
                "Genes without causal variants come from h2 = 0 (h2_null_fraction)."
            )
        for name in ("recombination_rate", "mutation_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1e-5):
                raise InputError(f"{name} must be a per-bp, per-generation rate in (0, 1e-5); got {value!r}.")
        if self.region is not None:
            parse_region(self.region)
            if self.fasta is None:
                raise InputError(
                    f"region '{self.region}' needs a reference FASTA (--fasta); "
                    "the random genome has no fixed coordinates."
                )
        if self.gene_table is not None and self.fasta is None:
            raise InputError(
                f"gene table {self.gene_table} needs the reference FASTA its coordinates refer to (--fasta)."
            )

    @property
    def causal_flank(self) -> int:
        """Causal variants lie within this many bp of the TSS: the central 80% of the window."""
        return int(0.4 * self.window)

    @classmethod
    def from_params(cls, path: str | Path) -> SimulationConfig:
        """The config recorded in a ``params.json`` written by :func:`simulate_cohort`."""
        path = Path(path)
        try:
            record = json.loads(path.read_text())
            values = dict(record["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"Cannot read a simulation config from {path}: {exc}.") from exc
        for name in ("fasta", "gene_table"):
            if values.get(name) is not None:
                values[name] = (path.parent / values[name]).resolve()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{path}: unknown config keys {', '.join(unknown)} (from a newer varscore?).")
        return cls(**values)


@dataclass(frozen=True)
class SimulationResult:
    """The files :func:`simulate_cohort` wrote (``fasta`` is the input FASTA when one was given)."""

    out_dir: Path
    fasta: Path
    genes_tsv: Path
    genes_gtf: Path
    vcf: Path
    vcf_index: Path
    expression: Path
    expression_index: Path
    tpm: Path
    reads: Path
    truth_variants: Path
    truth_genes: Path
    params: Path
    people: int
    variants: int
    genes: int
    causal_variants: int
    mean_h2: float
    coverage: Path | None = None  # coverage.npz (with --coverage)
    coverage_bigwigs: Path | None = None  # folder of PERSON.bw (with --coverage-bigwig)

    def lines(self) -> list[str]:
        """What ``varscore simulate`` prints: the cohort's size and the files written."""
        return [
            f"Simulated {self.people:,} people, {self.genes:,} genes, {self.variants:,} variants; "
            f"{self.causal_variants:,} causal variants, mean realised h2 {self.mean_h2:.3f}.",
            f"Wrote {self.vcf.name}, {self.expression.name}, {self.truth_variants.name}, "
            f"{self.truth_genes.name}, {self.params.name} and more to {self.out_dir}",
        ]


def _option(name: str) -> str:
    """``name`` with its command-line option, for messages read by API and CLI users alike."""
    return f"{name} ({CLI_OPTIONS[name]})" if name in CLI_OPTIONS else name


def _check_int(name: str, value: Any, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{_option(name)} must be an integer >= {minimum:,}; got {value!r}. {fix}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InputError(f"{_option(name)} must lie in [0, 1]; got {value!r}. Pass a fraction such as 0.2.")


_REGION = re.compile(r"^([^:\s]+):([\d,]+)-([\d,]+)$")


def parse_region(text: str) -> Window:
    """``chr:start-end`` (1-based, inclusive; commas allowed) as a 0-based half-open Window."""
    match = _REGION.match(text.strip())
    if match is None:
        raise InputError(f"Region '{text}' is not chr:start-end (1-based, e.g. chr20:9,995,001-11,095,000).")
    start, end = int(match[2].replace(",", "")), int(match[3].replace(",", ""))
    if start < 1 or end < start:
        raise InputError(f"Region '{text}' must have 1 <= start <= end; got start {start:,}, end {end:,}.")
    return Window(match[1], start - 1, end)
