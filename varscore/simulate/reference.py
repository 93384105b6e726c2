"""The reference sequence: a slice of a real FASTA with its genes, or a random genome from human
dinucleotide frequencies."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varscore.errors import InputError
from varscore.genome.sequence import BASES
from varscore.simulate.config import _DINUCLEOTIDES, GENE_GAP, RANDOM_CONTIG, SimulationConfig, parse_region
from varscore.types import Gene, Window

logger = logging.getLogger("varscore.simulate")


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
    from varscore.genome.fasta import Genome, load_genes

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
