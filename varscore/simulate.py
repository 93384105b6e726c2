"""Synthetic eQTL cohorts with known causal variants: coalescent genotypes on a real or random
reference, expression with a chosen cis-heritability per gene, and the truth behind both.

Coordinates follow the package: VCF positions and TSSs are 1-based, BED intervals 0-based
half-open. Everything is drawn from one seed, and the files are byte-identical for a seed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from varscore import __version__
from varscore.bundle import sha256
from varscore.errors import InputError
from varscore.pwm import GENOME_BACKGROUND, SCORE_SCALE, Motif
from varscore.sequence import BASES
from varscore.types import Gene, Window

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# Reference sequence and genes


@dataclass
class _Chunk:
    """One independently simulated stretch of the reference: its window and bases (upper case)."""

    window: Window
    sequence: str


@dataclass
class _Reference:
    contigs: dict[str, int]
    chunks: list[_Chunk]
    genes: list[Gene]
    fasta: Path | None  # None: random genome, written by the simulator


def _markov_sequence(rng: np.random.Generator, length: int, transitions: np.ndarray) -> np.ndarray:
    """``length`` base codes (0-3) from a first-order Markov chain, drawn as many parallel
    segments (a loop over segment length, not over bases); returns ``(length,)`` uint8."""
    cumulative = np.cumsum(transitions / transitions.sum(axis=1, keepdims=True), axis=1)
    stationary = transitions.sum(axis=1) / transitions.sum()
    segments = max(1, min(1024, length // 256))
    steps = -(-length // segments)
    out = np.empty((segments, steps), dtype=np.uint8)
    state = rng.choice(4, size=segments, p=stationary)
    uniforms = rng.random((steps, segments))
    for step in range(steps):
        out[:, step] = state
        state = (uniforms[step][:, None] > cumulative[state]).sum(axis=1).clip(0, 3)
    return out.reshape(-1)[:length]


def random_genome(rng: np.random.Generator, length: int, islands: Sequence[int] = ()) -> str:
    """A random sequence with human-like composition (GC ~41%, CpG depleted to o/e ~0.24), from
    a Markov chain on human dinucleotide frequencies. ``islands`` are 0-based positions (TSSs)
    that get a CpG island (1 kb, GC ~65%, CpG o/e ~0.75) around them."""
    codes = _markov_sequence(rng, length, _DINUCLEOTIDES)
    island_base = np.array([0.175, 0.325, 0.325, 0.175])
    island = np.tile(island_base, (4, 1))
    island[1, 2] *= 0.75  # C -> G
    for centre in islands:
        start, end = max(0, centre - 600), min(length, centre + 400)
        if end > start:
            codes[start:end] = _markov_sequence(rng, end - start, island)
    return np.frombuffer(b"ACGT", dtype=np.uint8)[codes].tobytes().decode("ascii")


def _random_reference(config: SimulationConfig, rng: np.random.Generator) -> _Reference:
    spacing = config.window + GENE_GAP
    margin = GENE_GAP // 2
    length = config.genes * spacing + 2 * margin
    width = max(4, len(str(config.genes)))
    strands = rng.choice(["+", "-"], size=config.genes)
    genes = [
        Gene(
            gene_id=f"SIMG{i + 1:0{width}d}",
            chrom=RANDOM_CONTIG,
            tss=margin + i * spacing + spacing // 2 + 1,
            strand=str(strands[i]),
            name=f"SimGene{i + 1}",
        )
        for i in range(config.genes)
    ]
    sequence = random_genome(rng, length, islands=[g.tss - 1 for g in genes])
    chunk = _Chunk(Window(RANDOM_CONTIG, 0, length), sequence)
    return _Reference({RANDOM_CONTIG: length}, [chunk], genes, None)


def _fasta_reference(config: SimulationConfig, rng: np.random.Generator) -> _Reference:
    from varscore.genome import Genome, load_genes

    assert config.fasta is not None
    genome = Genome(config.fasta)
    region = parse_region(config.region) if config.region else None
    if region is not None:
        name = genome.resolve(region.chrom)
        if name is None:
            more = "…" if len(genome.contigs) > 5 else ""
            raise InputError(
                f"Region '{config.region}': contig '{region.chrom}' is not in FASTA {config.fasta} "
                f"(it has {', '.join(genome.contigs[:5])}{more})."
            )
        length = genome.lengths[name]
        if region.end > length:
            raise InputError(
                f"Region '{config.region}' runs past the end of {name} ({length:,} bp) in FASTA "
                f"{config.fasta}. Pick a region inside the contig."
            )
        region = Window(name, region.start, region.end)

    if config.gene_table is not None:
        genes = []
        for gene in load_genes(config.gene_table):
            name = genome.resolve(gene.chrom)
            if name is None:
                raise InputError(
                    f"Gene {gene.label} in {config.gene_table} is on contig '{gene.chrom}', which FASTA "
                    f"{config.fasta} lacks. Use the gene table of the FASTA's genome build."
                )
            if not 1 <= gene.tss <= genome.lengths[name]:
                raise InputError(
                    f"Gene {gene.label} in {config.gene_table}: TSS {gene.tss:,} lies outside {name} "
                    f"({genome.lengths[name]:,} bp)."
                )
            genes.append(dataclasses.replace(gene, chrom=name))
        if region is not None:
            inside = [g for g in genes if g.chrom == region.chrom and region.contains(g.tss)]
            if len(inside) < len(genes):
                logger.warning(
                    "%d of %d genes have their TSS outside %s; left out",
                    len(genes) - len(inside),
                    len(genes),
                    config.region,
                )
            if not inside:
                raise InputError(
                    f"No gene in {config.gene_table} has its TSS inside region '{config.region}'. "
                    "Widen the region or drop it to cover every gene."
                )
            genes = inside
        if not genes:
            raise InputError(f"Gene table {config.gene_table} lists no genes.")
    else:
        if region is None:
            raise InputError(
                f"With FASTA {config.fasta}, give a region (--region chr:start-end) or a gene table "
                "(--gene-table) to say where to simulate."
            )
        width = max(4, len(str(config.genes)))
        strands = rng.choice(["+", "-"], size=config.genes)
        step = region.length / config.genes
        genes = [
            Gene(
                f"SIMG{i + 1:0{width}d}",
                region.chrom,
                region.start + int((i + 0.5) * step) + 1,
                str(strands[i]),
                f"SimGene{i + 1}",
            )
            for i in range(config.genes)
        ]

    if region is not None:
        windows = [region]
    else:  # one chunk per cluster of overlapping gene windows
        half = config.window // 2
        spans = sorted((g.chrom, max(0, g.tss - 1 - half), min(genome.lengths[g.chrom], g.tss + half)) for g in genes)
        windows = []
        for chrom, start, end in spans:
            last = windows[-1] if windows else None
            if last is not None and last.chrom == chrom and start <= last.end:
                windows[-1] = Window(chrom, last.start, max(last.end, end))
            else:
                windows.append(Window(chrom, start, end))

    order = {name: i for i, name in enumerate(genome.contigs)}
    windows.sort(key=lambda w: (order[w.chrom], w.start))
    chunks = [_Chunk(w, genome.fetch(w)) for w in windows]
    for chunk in chunks:
        acgt = sum(chunk.sequence.count(b) for b in BASES)
        if acgt == 0:
            raise InputError(
                f"{chunk.window.chrom}:{chunk.window.start + 1:,}-{chunk.window.end:,} in FASTA "
                f"{config.fasta} holds no A/C/G/T bases (all N). Pick a region with sequence."
            )
    genes.sort(key=lambda g: (order[g.chrom], g.tss, g.gene_id))
    contigs = {w.chrom: genome.lengths[w.chrom] for w in windows}
    return _Reference(contigs, chunks, genes, Path(config.fasta))


# --------------------------------------------------------------------------------------------
# Genotypes


@dataclass
class _Variants:
    """Biallelic variants of the cohort. ``haplotypes`` is ``(n_variants, 2 * people)`` uint8 of
    ALT alleles; person ``i`` holds columns ``2i`` and ``2i + 1``."""

    chrom: list[str]
    pos: np.ndarray  # (n,) int64, 1-based
    ref: list[str]
    alt: list[str]
    haplotypes: np.ndarray

    @property
    def dosage(self) -> np.ndarray:
        """``(n_variants, people)`` ALT allele counts 0/1/2 (int8)."""
        return (self.haplotypes[:, 0::2] + self.haplotypes[:, 1::2]).astype(np.int8)


def _seed(seeds: np.random.SeedSequence) -> int:
    """A seed in msprime's range (1 .. 2**32 - 1) from a spawned SeedSequence."""
    return int(seeds.generate_state(1, dtype=np.uint32)[0] % (2**32 - 1)) + 1


def _simulate_chunk(
    chunk: _Chunk, config: SimulationConfig, seeds: np.random.SeedSequence
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Coalescent genotypes for one chunk: (offsets, ref, alt, haplotypes) of biallelic sites."""
    import msprime

    ancestry_seed, mutation_seed, allele_seed = seeds.spawn(3)
    tree_seq = msprime.sim_ancestry(
        samples=config.people,
        ploidy=2,
        population_size=config.population_size,
        recombination_rate=config.recombination_rate,
        sequence_length=chunk.window.length,
        random_seed=_seed(ancestry_seed),
    )
    tree_seq = msprime.sim_mutations(
        tree_seq, rate=config.mutation_rate, random_seed=_seed(mutation_seed), discrete_genome=True
    )
    rng = np.random.default_rng(allele_seed)
    if tree_seq.num_sites == 0:
        return np.zeros(0, np.int64), [], [], np.zeros((0, 2 * config.people), np.uint8)
    hits = np.bincount(tree_seq.tables.mutations.site, minlength=tree_seq.num_sites)
    offsets = tree_seq.tables.sites.position.astype(np.int64)
    sequence = np.frombuffer(chunk.sequence.encode("ascii"), dtype=np.uint8)
    ref_codes = sequence[offsets]
    keep = (hits == 1) & np.isin(ref_codes, np.frombuffer(b"ACGT", dtype=np.uint8))
    # uint8, one kept site at a time: tskit's genotype_matrix is int32 for every site
    derived = np.empty((int(keep.sum()), tree_seq.num_samples), dtype=np.uint8)
    row = 0
    for variant in tree_seq.variants(copy=False):
        if keep[variant.site.id]:
            derived[row] = variant.genotypes > 0
            row += 1
    offsets = offsets[keep]
    # The reference genome is one more haplotype: it carries the derived allele as often as
    # the population does, and then REF is the derived base and ALT the ancestral one.
    derived_freq = derived.mean(axis=1)
    flip = rng.random(len(offsets)) < derived_freq
    haplotypes = np.where(flip[:, None], 1 - derived, derived).astype(np.uint8)
    transition = rng.random(len(offsets)) < TRANSITION_SHARE
    which = rng.integers(0, 2, size=len(offsets))
    refs = [chr(c) for c in sequence[offsets]]
    alts = []
    for ref, is_transition, pick in zip(refs, transition, which, strict=True):
        if is_transition:
            alts.append(_TRANSITION[ref])
        else:
            alts.append([b for b in BASES if b != ref and b != _TRANSITION[ref]][pick])
    if config.indels:
        offsets, refs, alts, haplotypes = _with_indels(chunk.sequence, offsets, refs, alts, haplotypes, rng)
    return offsets, refs, alts, haplotypes


def _with_indels(
    sequence: str,
    offsets: np.ndarray,
    refs: list[str],
    alts: list[str],
    haplotypes: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Turn about 12% of sites into 1-10 bp insertions or deletions, written as variant callers
    do after ``bcftools norm``: with the padding base, left-aligned in repeats. Records that
    would overlap an earlier one are dropped."""
    n = len(offsets)
    is_indel = rng.random(n) < INDEL_SHARE
    lengths = np.minimum(rng.geometric(0.5, size=n), 10)
    is_deletion = rng.random(n) < 0.5
    inserted = ["".join(rng.choice(list(BASES), size=int(k))) for k in lengths]
    records = []  # (offset, row, ref, alt)
    for row in range(n):
        offset, ref, alt, k = int(offsets[row]), refs[row], alts[row], int(lengths[row])
        if is_indel[row] and is_deletion[row]:
            span = sequence[offset : offset + k + 1]
            if len(span) == k + 1 and all(b in BASES for b in span):
                # shift left while deleting one base earlier gives the same haplotype
                while offset > 0 and sequence[offset - 1] in BASES and sequence[offset] == sequence[offset + k]:
                    offset -= 1
                ref = sequence[offset : offset + k + 1]
                alt = ref[0]
        elif is_indel[row]:
            insertion = inserted[row]
            while offset > 0 and sequence[offset - 1] in BASES and sequence[offset] == insertion[-1]:
                insertion = sequence[offset] + insertion[:-1]
                offset -= 1
            ref = sequence[offset]
            alt = ref + insertion
        records.append((offset, row, ref, alt))
    records.sort()
    kept, last_end = [], -1
    for offset, row, ref, alt in records:
        if offset > last_end:
            kept.append((offset, row, ref, alt))
            last_end = offset + len(ref) - 1
    return (
        np.array([r[0] for r in kept], dtype=np.int64),
        [r[2] for r in kept],
        [r[3] for r in kept],
        haplotypes[[r[1] for r in kept]],
    )


def _simulate_variants(reference: _Reference, config: SimulationConfig, seeds: np.random.SeedSequence) -> _Variants:
    chroms: list[str] = []
    positions, refs, alts, haplotypes = [], [], [], []
    for chunk, chunk_seeds in zip(reference.chunks, seeds.spawn(len(reference.chunks)), strict=True):
        offsets, chunk_refs, chunk_alts, chunk_haps = _simulate_chunk(chunk, config, chunk_seeds)
        chroms += [chunk.window.chrom] * len(offsets)
        positions.append(offsets + chunk.window.start + 1)
        refs += chunk_refs
        alts += chunk_alts
        haplotypes.append(chunk_haps)
        logger.info("%s: %d biallelic variants", chunk.window.chrom, len(offsets))
    return _Variants(chroms, np.concatenate(positions), refs, alts, np.concatenate(haplotypes))


# --------------------------------------------------------------------------------------------
# Motifs


def load_motifs(release: str = "JASPAR2024", matrix_ids: Sequence[str] = DEFAULT_MOTIFS) -> list[Motif]:
    """JASPAR matrices from pyjaspar's bundled SQLite (offline), scored as :mod:`varscore.pwm` does
    (pseudocount 0.8 spread by the background, as MEME's default)."""
    from pyjaspar import jaspardb

    try:
        database = jaspardb(release=release)
    except Exception as exc:  # pyjaspar raises plain Exceptions for unknown releases
        raise InputError(f"JASPAR release '{release}' is not bundled with pyjaspar: {exc}") from exc
    motifs = []
    for matrix_id in matrix_ids:
        record = database.fetch_motif_by_id(matrix_id)
        if record is None:
            raise InputError(f"Motif {matrix_id} is not in {release}. Use an ID with its version, e.g. MA0079.5.")
        counts = np.array([record.counts[b] for b in BASES], dtype=float).T  # (L, 4)
        motifs.append(Motif(record.matrix_id, record.name, counts))
    return motifs


@dataclass(frozen=True)
class MotifChange:
    """The strongest motif match an SNV creates or disrupts."""

    effect: str  # "creates" or "disrupts"
    matrix_id: str
    name: str
    strand: str
    start: int  # 1-based position of the first motif base (forward strand) of the matching allele
    ref_score: float  # best log2-odds score over matches covering the variant, REF allele
    alt_score: float


def motif_changes(
    sequence: str, seq_start: int, pos: np.ndarray, alt: Sequence[str], motifs: Sequence[Motif]
) -> list[MotifChange | None]:
    """For each SNV (1-based ``pos`` inside ``sequence``, which starts at 0-based ``seq_start``)
    the motif whose match it creates or disrupts with the largest score change, or None.

    A match is a log2-odds score at p < 1e-4 (either strand) against a GC-41% background;
    "creates": ALT matches and REF does not, "disrupts": the reverse; either way the best score
    must change by at least 2.
    """
    if len(pos) == 0 or not motifs:
        return [None] * len(pos)
    longest = max(m.length for m in motifs)
    lookup = np.full(256, 4, dtype=np.int64)
    for code, base in enumerate(BASES):
        lookup[ord(base)] = code
    padded = np.concatenate(
        [np.full(longest - 1, 4), lookup[np.frombuffer(sequence.encode(), np.uint8)], np.full(longest - 1, 4)]
    )
    centre = pos - 1 - seq_start + longest - 1
    context = padded[centre[:, None] + np.arange(-(longest - 1), longest)[None, :]]  # (n, 2*longest-1)
    alleles = {"ref": context, "alt": context.copy()}
    alleles["alt"][:, longest - 1] = lookup[np.frombuffer("".join(alt).encode(), np.uint8)]
    best: list[MotifChange | None] = [None] * len(pos)
    best_delta = np.zeros(len(pos))
    for motif in motifs:
        length = motif.length
        log_odds = motif.scores(GENOME_BACKGROUND) / SCORE_SCALE  # bits on the 0.01 grid
        threshold = motif.threshold(MOTIF_P_VALUE, GENOME_BACKGROUND)
        forward = np.hstack([log_odds, np.full((length, 1), -1e6)])  # (L, 5): N never matches
        reverse = forward[::-1][:, [3, 2, 1, 0, 4]]
        starts = (longest - 1) - np.arange(length)  # every placement that covers the variant
        index = starts[:, None] + np.arange(length)[None, :]  # (L placements, L)
        scores = {}
        for allele, codes in alleles.items():
            windows = codes[:, index]  # (n, placements, L)
            per_strand = np.stack(
                [
                    forward[np.arange(length), windows].sum(axis=-1),
                    reverse[np.arange(length), windows].sum(axis=-1),
                ],
                axis=1,
            )  # (n, 2, placements)
            scores[allele] = per_strand.reshape(len(pos), -1)
        ref_best, alt_best = scores["ref"].max(axis=1), scores["alt"].max(axis=1)
        delta = np.abs(alt_best - ref_best)
        changed = ((ref_best >= threshold) != (alt_best >= threshold)) & (delta >= MIN_MOTIF_DELTA)
        for i in np.flatnonzero(changed & (delta > best_delta)):
            creates = alt_best[i] >= threshold
            flat = int(np.argmax(scores["alt" if creates else "ref"][i]))
            strand, placement = divmod(flat, length)
            best_delta[i] = delta[i]
            best[i] = MotifChange(
                effect="creates" if creates else "disrupts",
                matrix_id=motif.motif_id,
                name=motif.tf,
                strand="+-"[strand],
                start=int(pos[i]) - placement,
                ref_score=round(float(ref_best[i]), 2),
                alt_score=round(float(alt_best[i]), 2),
            )
    return best


# --------------------------------------------------------------------------------------------
# Expression


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
    ``(people,)`` in and out (:func:`varscore.cohort.inverse_normal_transform` with offset 0)."""
    from varscore.cohort import inverse_normal_transform

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


# --------------------------------------------------------------------------------------------
# Writers


def _sample_ids(people: int) -> list[str]:
    width = max(4, len(str(people)))
    return [f"{SAMPLE_PREFIX}{i + 1:0{width}d}" for i in range(people)]


def _write_fasta(path: Path, name: str, sequence: str, line: int = 60) -> None:
    """Plain FASTA plus its ``.fai`` (written directly, so both are byte-stable)."""
    header = f">{name}\n"
    body = "".join(sequence[i : i + line] + "\n" for i in range(0, len(sequence), line))
    path.write_text(header + body)
    Path(f"{path}.fai").write_text(f"{name}\t{len(sequence)}\t{len(header)}\t{line}\t{line + 1}\n")


def _write_genes(tsv: Path, gtf: Path, genes: Sequence[Gene]) -> None:
    rows = ["chrom\ttss\tstrand\tgene_id\tgene_name"]
    rows += [f"{g.chrom}\t{g.tss}\t{g.strand}\t{g.gene_id}\t{g.label}" for g in genes]
    tsv.write_text("\n".join(rows) + "\n")
    # The simulator models TSSs, not gene bodies: each gene is a 1-bp feature on its TSS.
    lines = [
        f'{g.chrom}\tvarscore\tgene\t{g.tss}\t{g.tss}\t.\t{g.strand}\t.\tgene_id "{g.gene_id}"; gene_name "{g.label}";'
        for g in genes
    ]
    gtf.write_text("\n".join(lines) + "\n")


def _write_vcf(
    path: Path,
    variants: _Variants,
    contigs: dict[str, int],
    samples: list[str],
    phased: bool,
    reference_name: str,
) -> Path:
    """Write the cohort as VCF text, then bgzip + tabix it with pysam; returns the .vcf.gz path."""
    import pysam

    header = [
        "##fileformat=VCFv4.2",
        f"##source=varscore simulate {__version__}",
        f"##reference={reference_name}",
        *(f"##contig=<ID={name},length={length}>" for name, length in contigs.items()),
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="ALT allele count in genotypes">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Number of called alleles">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="ALT allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    codes = np.array(["0|0", "1|0", "0|1", "1|1"] if phased else ["0/0", "0/1", "0/1", "1/1"])
    an = variants.haplotypes.shape[1]
    with open(path, "w") as handle:
        handle.write("\n".join(header) + "\n")
        for i in range(len(variants.pos)):
            haps = variants.haplotypes[i]
            ac = int(haps.sum())
            genotype = codes[haps[0::2] + 2 * haps[1::2]]
            chrom, pos, ref, alt = variants.chrom[i], variants.pos[i], variants.ref[i], variants.alt[i]
            handle.write(
                f"{chrom}\t{pos}\t{_variant_id(chrom, int(pos), ref, alt)}\t{ref}\t{alt}\t.\tPASS\t"
                f"AC={ac};AN={an};AF={ac / an:.6g}\tGT\t" + "\t".join(genotype.tolist()) + "\n"
            )
    return Path(pysam.tabix_index(str(path), preset="vcf", force=True))


def _variant_id(chrom: str, pos: int, ref: str, alt: str) -> str:
    """GTEx-style variant ID (without the build suffix): ``chrom_pos_ref_alt``."""
    return f"{chrom}_{pos}_{ref}_{alt}"


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))


def _write_outputs(
    staging: Path,
    config: SimulationConfig,
    reference: _Reference,
    variants: _Variants,
    truths: list[_GeneTruth],
    latent: np.ndarray,
    out_dir: Path,
    rng: np.random.Generator,
) -> dict[str, str]:
    """Write every file into ``staging``; returns {role: file name}."""
    import pysam

    files: dict[str, str] = {}
    samples = _sample_ids(config.people)
    if reference.fasta is None:
        chunk = reference.chunks[0]
        _write_fasta(staging / "reference.fa", chunk.window.chrom, chunk.sequence)
        files["fasta"] = "reference.fa"
        files["fasta_index"] = "reference.fa.fai"
        reference_name = "reference.fa"
    else:
        reference_name = os.path.relpath(reference.fasta, out_dir)

    genes = [t.gene for t in truths]
    _write_genes(staging / "genes.tsv", staging / "genes.gtf", genes)
    files.update(genes_tsv="genes.tsv", genes_gtf="genes.gtf")

    vcf = _write_vcf(staging / "cohort.vcf", variants, reference.contigs, samples, config.phased, reference_name)
    files.update(vcf=vcf.name, vcf_index=vcf.name + ".tbi")

    # GTEx layout: one row per gene at its TSS (BED start = TSS - 1), INT values per person.
    bed = staging / "cohort.expression.bed"
    with open(bed, "w") as handle:
        handle.write("#chr\tstart\tend\tgene_id\t" + "\t".join(samples) + "\n")
        for truth, values in zip(truths, latent, strict=True):
            g = truth.gene
            handle.write(
                f"{g.chrom}\t{g.tss - 1}\t{g.tss}\t{g.gene_id}\t"
                + "\t".join(f"{v:.6f}" for v in inverse_normal(values))
                + "\n"
            )
    expression = Path(pysam.tabix_index(str(bed), preset="bed", force=True))
    files.update(expression=expression.name, expression_index=expression.name + ".tbi")

    # Raw values for the normalisation path: TPM = exp(log_tpm_mean + log_tpm_sd * latent);
    # reads ~ Poisson(TPM x transcript length (kb) x sequencing depth).
    depth = 20.0 * np.exp(rng.normal(0, 0.25, size=config.people))
    tpm_rows, read_rows = [], []
    for truth, values in zip(truths, latent, strict=True):
        tpm = np.exp(truth.log_tpm_mean + truth.log_tpm_sd * values)
        length_kb = float(np.exp(rng.normal(math.log(2.0), 0.5)))
        reads = rng.poisson(tpm * length_kb * depth)
        tpm_rows.append([truth.gene.gene_id, *(f"{v:.6g}" for v in tpm)])
        read_rows.append([truth.gene.gene_id, *(str(int(v)) for v in reads)])
    _write_tsv(staging / "cohort.tpm.tsv", ["gene_id", *samples], tpm_rows)
    _write_tsv(staging / "cohort.reads.tsv", ["gene_id", *samples], read_rows)
    files.update(tpm="cohort.tpm.tsv", reads="cohort.reads.tsv")

    dosage_freq = variants.haplotypes.mean(axis=1)
    variant_rows = []
    for truth in truths:
        g = truth.gene
        for c in truth.causal:
            chrom, pos, ref, alt = (
                variants.chrom[c.row],
                int(variants.pos[c.row]),
                variants.ref[c.row],
                variants.alt[c.row],
            )
            af = float(dosage_freq[c.row])
            distance = (pos - g.tss) if g.strand == "+" else (g.tss - pos)
            m = c.change
            variant_rows.append(
                [
                    g.gene_id,
                    g.label,
                    chrom,
                    str(pos),
                    ref,
                    alt,
                    _variant_id(chrom, pos, ref, alt),
                    f"{c.effect:.6f}",
                    c.kind,
                    f"{af:.6g}",
                    f"{min(af, 1 - af):.6g}",
                    "common" if min(af, 1 - af) >= COMMON_MAF else "rare",
                    str(distance),
                    "proximal" if abs(distance) <= PROXIMAL_BP else "distal",
                    m.effect if m else "",
                    m.matrix_id if m else "",
                    m.name if m else "",
                    m.strand if m else "",
                    str(m.start) if m else "",
                    f"{m.ref_score:.2f}" if m else "",
                    f"{m.alt_score:.2f}" if m else "",
                ]
            )
    _write_tsv(
        staging / "truth_variants.tsv",
        [
            "gene_id",
            "gene_name",
            "chrom",
            "pos",
            "ref",
            "alt",
            "variant_id",
            "effect",
            "kind",
            "af",
            "maf",
            "frequency",
            "distance_to_tss",
            "site",
            "motif_effect",
            "motif_id",
            "motif_name",
            "motif_strand",
            "motif_start",
            "motif_ref_score",
            "motif_alt_score",
        ],
        variant_rows,
    )
    gene_rows = [
        [
            t.gene.gene_id,
            t.gene.label,
            t.gene.chrom,
            str(t.gene.tss),
            t.gene.strand,
            f"{t.h2_target:.4f}",
            f"{t.h2_realised:.6f}",
            f"{t.h2_latent:.6f}",
            str(len(t.causal)),
            str(sum(c.kind == "motif" for c in t.causal)),
            str(t.n_variants),
            f"{t.log_tpm_mean:.4f}",
            f"{t.log_tpm_sd:.4f}",
        ]
        for t in truths
    ]
    _write_tsv(
        staging / "truth_genes.tsv",
        [
            "gene_id",
            "gene_name",
            "chrom",
            "tss",
            "strand",
            "h2_target",
            "h2_realised",
            "h2_latent",
            "n_causal",
            "n_motif_causal",
            "n_variants_in_flank",
            "log_tpm_mean",
            "log_tpm_sd",
        ],
        gene_rows,
    )
    files.update(truth_variants="truth_variants.tsv", truth_genes="truth_genes.tsv")
    return files


def _command_line(config: SimulationConfig, out_dir: Path) -> str:
    """The ``varscore simulate`` call that regenerates this cohort, run from ``out_dir``."""
    default = SimulationConfig()
    flags = CLI_OPTIONS
    parts = ["varscore simulate -o ."]
    for name in ("fasta", "gene_table"):
        value = getattr(config, name)
        if value is not None:
            parts.append(f"--{name.replace('_', '-')} {shlex.quote(os.path.relpath(value, out_dir))}")
    for name, flag in flags.items():
        value = getattr(config, name)
        if value != getattr(default, name) or name == "seed":
            parts.append(f"{flag} {shlex.quote(str(value))}")
    if not config.phased:
        parts.append("--unphased")
    if config.indels:
        parts.append("--indels")
    if config.coverage_bigwig:
        parts.append("--coverage-bigwig")
    elif config.coverage:
        parts.append("--coverage")
    if config.coverage and config.coverage_bin != default.coverage_bin:
        parts.append(f"--coverage-bin {config.coverage_bin}")
    extra = [
        f.name
        for f in dataclasses.fields(config)
        if f.name not in flags
        and f.name not in ("fasta", "gene_table", "phased", "indels", "coverage", "coverage_bin", "coverage_bigwig")
        and getattr(config, f.name) != getattr(default, f.name)
    ]
    if extra:  # options only the Python API sets
        return f"simulate_cohort(SimulationConfig.from_params('params.json'), '.')  # API only: {', '.join(extra)}"
    return " ".join(parts)


def simulate_cohort(config: SimulationConfig, out_dir: str | Path) -> SimulationResult:
    """Simulate a cohort and write it to ``out_dir`` (created if missing; files replaced).

    Files (written to a temporary folder first and moved in at the end, so a failed run leaves
    nothing half-written):

    - ``reference.fa`` + ``.fai``: the random genome (only without ``config.fasta``).
    - ``genes.tsv`` (``chrom tss strand gene_id gene_name``, TSS 1-based) and ``genes.gtf``
      (one 1-bp ``gene`` feature on each TSS: the simulator models TSSs, not gene bodies).
    - ``cohort.vcf.gz`` + ``.tbi``: biallelic variants, ``GT`` only, samples ``SIM0001``…;
      ID ``chrom_pos_ref_alt``; INFO ``AC``, ``AN``, ``AF``.
    - ``cohort.expression.bed.gz`` + ``.tbi``: GTEx layout, ``#chr start end gene_id`` then one
      column per person; start = TSS - 1; values inverse-normal transformed per gene.
    - ``cohort.tpm.tsv`` and ``cohort.reads.tsv``: ``gene_id`` then one column per person, the raw
      values behind the BED for the TMM + inverse-normal normalisation path.
    - ``truth_variants.tsv``: one row per gene × causal variant: its effect per ALT allele (SD of
      latent expression), kind (``motif`` or ``direct``), frequency class, distance to the TSS
      (upstream negative), and for motif variants which JASPAR motif it creates or disrupts.
    - ``truth_genes.tsv``: per gene ``h2_target``, ``h2_realised`` (R² of the BED values on the
      genetic value), ``h2_latent`` and the number of causal variants.
    - ``params.json``: the config (paths relative to ``out_dir``), seed, the command that
      regenerates the files, model constants and software versions.
    - with ``config.coverage``: ``coverage.npz`` (``people``, ``gene_id``, ``chrom``, ``start``
      (0-based window starts), ``bin_size``, ``values`` ``(genes, people, bins)`` mean read depth per
      bin over each TSS-centred window; see :func:`_write_coverage`), and with
      ``config.coverage_bigwig`` ``coverage/PERSON.bw``. Drawn from their own seed stream, so the
      other files are the same with or without coverage.
    """
    if not isinstance(config, SimulationConfig):
        raise InputError(f"simulate_cohort needs a SimulationConfig; got {type(config).__name__}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"Output {out_dir} exists and is not a directory. Pass a directory with -o.")
    root = np.random.SeedSequence(config.seed)
    genome_seed, genotype_seed, effect_seed, output_seed = root.spawn(4)

    reference = (_fasta_reference if config.fasta is not None else _random_reference)(
        config, np.random.default_rng(genome_seed)
    )
    logger.info(
        "simulating genotypes of %d people over %d bp",
        config.people,
        sum(c.window.length for c in reference.chunks),
    )
    variants = _simulate_variants(reference, config, genotype_seed)
    if len(variants.pos) == 0:
        raise InputError("The simulation produced no variants; use a longer region or more people.")
    dosage = variants.dosage

    motifs = load_motifs(config.jaspar_release)
    sequences = {c.window: c for c in reference.chunks}
    rng = np.random.default_rng(effect_seed)
    h2_values = draw_h2(config, rng, len(reference.genes))
    truths, latent = [], []
    for gene, h2 in zip(reference.genes, h2_values, strict=True):
        changes = _gene_motif_changes(gene, variants, sequences, motifs, config.causal_flank)
        truth, values = _simulate_gene(gene, float(h2), variants, dosage, changes, config, rng)
        truths.append(truth)
        latent.append(values)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".simulate-", dir=out_dir))
    try:
        files = _write_outputs(
            staging,
            config,
            reference,
            variants,
            truths,
            np.asarray(latent),
            out_dir,
            np.random.default_rng(output_seed),
        )
        if config.coverage:
            files.update(
                _write_coverage(
                    staging,
                    config,
                    reference.contigs,
                    truths,
                    np.asarray(latent),
                    np.random.default_rng(root.spawn(1)[0]),
                )
            )
        params = _params(config, reference, motifs, files, out_dir, len(variants.pos))
        (staging / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
        files["params"] = "params.json"
        for name in sorted(os.listdir(staging)):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    def path(role: str) -> Path:
        return out_dir / files[role]

    n_causal = sum(len(t.causal) for t in truths)
    logger.info(
        "wrote %d people, %d variants, %d genes, %d causal variants to %s",
        config.people,
        len(variants.pos),
        len(truths),
        n_causal,
        out_dir,
    )
    return SimulationResult(
        out_dir=out_dir,
        fasta=path("fasta") if reference.fasta is None else reference.fasta,
        genes_tsv=path("genes_tsv"),
        genes_gtf=path("genes_gtf"),
        vcf=path("vcf"),
        vcf_index=path("vcf_index"),
        expression=path("expression"),
        expression_index=path("expression_index"),
        tpm=path("tpm"),
        reads=path("reads"),
        truth_variants=path("truth_variants"),
        truth_genes=path("truth_genes"),
        params=path("params"),
        people=config.people,
        variants=len(variants.pos),
        genes=len(truths),
        causal_variants=n_causal,
        mean_h2=float(np.mean([t.h2_realised for t in truths])),
        coverage=path("coverage") if config.coverage else None,
        coverage_bigwigs=path("coverage_bigwigs") if config.coverage_bigwig else None,
    )


# --------------------------------------------------------------------------------------------
# Coverage tracks

COVERAGE_DEPTH = 20.0  # mean read depth over exons of a gene at its population-mean TPM
READ_LENGTH = 100  # bp; the Poisson noise is on read starts per bin
COVERAGE_LEVELS = {"intergenic": 0.02, "intron": 0.1, "exon": 1.0}


def _gene_profile(gene: Gene, window: Window, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A gene's relative per-base depth on the genome, ``(start, (length,))``: exons (the first on
    the TSS) and introns downstream of the TSS on the gene's strand, level 1 on exons, 0.1 on
    introns; 0 elsewhere."""
    half = window.length // 2
    body = int(rng.uniform(0.15, 0.45) * half)
    profile = np.full(body, COVERAGE_LEVELS["intron"])
    n_exons = int(rng.integers(3, 9))
    starts = np.concatenate([[0], np.sort(rng.integers(200, max(body - 400, 201), size=n_exons - 1))])
    for start in starts:
        profile[start : start + int(rng.integers(100, 400))] = COVERAGE_LEVELS["exon"]
    tss0 = gene.tss - 1
    if gene.strand == "-":
        return tss0 - body + 1, profile[::-1].copy()
    return tss0, profile


def _write_coverage(
    staging: Path,
    config: SimulationConfig,
    contigs: dict[str, int],
    truths: list[_GeneTruth],
    latent: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, str]:
    """Write ``coverage.npz`` (and with ``coverage_bigwig`` one bigWig per person); return roles.

    Each person's expected depth at a base is the sum over genes of ``profile × COVERAGE_DEPTH ×
    TPM / mean TPM × library size`` plus an intergenic floor, where TPM is the person's simulated
    TPM of the gene (``exp(log_tpm_mean + log_tpm_sd × latent)``, as in ``cohort.tpm.tsv``); the
    observed mean depth of a bin is ``READ_LENGTH / bin × Poisson(expected × bin / READ_LENGTH)``,
    drawn per gene window.
    """
    from varscore.types import tss_window

    step = config.coverage_bin
    samples = _sample_ids(config.people)
    library = np.exp(rng.normal(0.0, 0.2, size=config.people))
    profiles = [_gene_profile(t.gene, tss_window(t.gene, config.window), rng) for t in truths]
    scale = []
    for truth, values in zip(truths, latent, strict=True):
        tpm = np.exp(truth.log_tpm_mean + truth.log_tpm_sd * values)
        scale.append(COVERAGE_DEPTH * tpm / tpm.mean() * library)
    windows = [tss_window(t.gene, config.window) for t in truths]
    n_bins = config.window // step
    values = np.empty((len(truths), config.people, n_bins), dtype=np.float32)
    for g, window in enumerate(windows):
        expected = np.full((config.people, n_bins), COVERAGE_LEVELS["intergenic"] * COVERAGE_DEPTH)
        for other, (start, profile) in enumerate(profiles):
            if truths[other].gene.chrom != window.chrom:
                continue
            lo, hi = max(start, window.start), min(start + len(profile), window.end)
            if lo >= hi:
                continue
            base = np.zeros(window.length)
            base[lo - window.start : hi - window.start] = profile[lo - start : hi - start]
            expected += scale[other][:, None] * base.reshape(n_bins, step).mean(axis=1)[None, :]
        reads = rng.poisson(expected * step / READ_LENGTH)
        values[g] = (reads * READ_LENGTH / step).astype(np.float32)
    arrays = {
        "people": np.array(samples),
        "gene_id": np.array([t.gene.gene_id for t in truths]),
        "chrom": np.array([w.chrom for w in windows]),
        "start": np.array([w.start for w in windows], dtype=np.int64),
        "bin_size": np.array(step, dtype=np.int64),
        "values": values,
    }
    _write_npz(staging / "coverage.npz", arrays)
    roles = {"coverage": "coverage.npz"}
    if config.coverage_bigwig:
        folder = staging / "coverage"
        folder.mkdir()
        for person, name in enumerate(samples):
            _write_person_bigwig(folder / f"{name}.bw", contigs, windows, values[:, person], step)
        roles["coverage_bigwigs"] = "coverage"
    return roles


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so the file is byte-identical for a seed."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def _write_person_bigwig(
    path: Path, contigs: dict[str, int], windows: list[Window], values: np.ndarray, step: int
) -> None:
    """One person's binned depth (``values``: ``(genes, bins)``) as a bigWig; where gene windows
    overlap, the earlier window's bins are kept."""
    import pybigtools

    entries = []
    order = sorted(range(len(windows)), key=lambda i: (windows[i].chrom, windows[i].start))
    written_to: dict[str, int] = {}
    for g in order:
        window = windows[g]
        size = contigs[window.chrom]
        for b, value in enumerate(values[g].tolist()):
            start = max(window.start + b * step, written_to.get(window.chrom, 0), 0)
            end = min(window.start + (b + 1) * step, size)
            if start < end:
                entries.append((window.chrom, start, end, float(value)))
                written_to[window.chrom] = end
    writer = pybigtools.open(str(path), "w")
    writer.write(dict(contigs), iter(entries))


def _gene_motif_changes(
    gene: Gene, variants: _Variants, chunks: dict[Window, _Chunk], motifs: Sequence[Motif], flank: int
) -> dict[int, MotifChange]:
    """Motif changes of the SNVs within ``flank`` bp of the gene's TSS, by variant row."""
    rows = np.flatnonzero((np.asarray(variants.chrom) == gene.chrom) & (np.abs(variants.pos - gene.tss) <= flank))
    rows = np.array([r for r in rows if len(variants.ref[r]) == 1 and len(variants.alt[r]) == 1], dtype=np.int64)
    if len(rows) == 0:
        return {}
    chunk = next(c for w, c in chunks.items() if w.chrom == gene.chrom and w.start < variants.pos[rows[0]] <= w.end)
    found = motif_changes(
        chunk.sequence, chunk.window.start, variants.pos[rows], [variants.alt[r] for r in rows], motifs
    )
    return {int(r): change for r, change in zip(rows, found, strict=True) if change is not None}


def _params(
    config: SimulationConfig,
    reference: _Reference,
    motifs: list[Motif],
    files: dict[str, str],
    out_dir: Path,
    n_variants: int,
) -> dict[str, Any]:
    import msprime
    import pyjaspar

    values: dict[str, Any] = dataclasses.asdict(config)
    for name in ("fasta", "gene_table"):
        if values[name] is not None:
            values[name] = os.path.relpath(values[name], out_dir)
    record: dict[str, Any] = {
        "about": "varscore simulate: paths are relative to this file's folder. Rerun `command` there, or "
        "simulate_cohort(SimulationConfig.from_params('params.json'), '.'), with the same "
        "software versions to regenerate the files byte for byte.",
        "command": _command_line(config, out_dir),
        "config": values,
        "seed": config.seed,
        "files": files,
        "samples": {"count": config.people, "prefix": SAMPLE_PREFIX},
        "variants": n_variants,
        "reference": {
            "contigs": reference.contigs,
            "chunks": [f"{c.window.chrom}:{c.window.start + 1}-{c.window.end}" for c in reference.chunks],
            "random_genome": reference.fasta is None,
        },
        "model": {
            "ancestry": "msprime sim_ancestry (Hudson coalescent, constant size), one run per chunk",
            "mutations": "msprime sim_mutations, discrete genome; sites hit more than once are dropped",
            "alleles": f"REF = reference base; ALT a transition with probability {TRANSITION_SHARE:.3f}; "
            "the reference carries the derived allele with its population frequency",
            "indel_share": INDEL_SHARE if config.indels else 0.0,
            "causal_flank_bp": config.causal_flank,
            "distance_scale_bp": DISTANCE_SCALE,
            "effect_alpha": EFFECT_ALPHA,
            "common_maf": COMMON_MAF,
            "proximal_bp": PROXIMAL_BP,
            "expression": "latent = genetic + noise, noise orthogonal to genetic in the sample and the two "
            "mixed so the BED values (inverse normal transform of latent, GTEx: rank/(n+1)) "
            "have R^2 = h2_target on the genetic value; h2_latent = var(genetic)/var(latent); "
            "TPM = exp(log_tpm_mean + log_tpm_sd * latent); reads ~ Poisson(TPM * length_kb * depth)",
            "effect_units": "per ALT allele, in SD of the latent expression",
        },
        "motifs": {
            "release": config.jaspar_release,
            "p_value": MOTIF_P_VALUE,
            "background": dict(zip(BASES, GENOME_BACKGROUND.tolist(), strict=True)),
            "matrices": [f"{m.motif_id} {m.tf}" for m in motifs],
            "min_delta_log2": MIN_MOTIF_DELTA,
            "rule": "creates: ALT matches (p < p_value) and REF does not; disrupts: the reverse; "
            "activators: creating raises expression, disrupting lowers it",
        },
        "software": {
            "varscore": __version__,
            "msprime": msprime.__version__,
            "numpy": np.__version__,
            "pyjaspar": getattr(pyjaspar, "__version__", "unknown"),
        },
    }
    if reference.fasta is not None:
        record["reference"]["fasta_sha256"] = sha256(reference.fasta)
    return record


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
