"""Genotypes: msprime coalescent haplotypes per gene window, with indels mixed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from varscore.genome.sequence import BASES
from varscore.simulate.config import _TRANSITION, INDEL_SHARE, TRANSITION_SHARE, SimulationConfig
from varscore.simulate.reference import _Chunk, _Reference

logger = logging.getLogger("varscore.simulate")


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
