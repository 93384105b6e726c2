"""``simulate_cohort``: the whole simulation, from settings to the files of a cohort."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from varscore.errors import InputError
from varscore.io.outputguard import staging_directory
from varscore.simulate.config import SimulationConfig, SimulationResult
from varscore.simulate.coverage import _write_coverage
from varscore.simulate.expression import _simulate_gene, draw_h2
from varscore.simulate.genotypes import _simulate_variants
from varscore.simulate.motifs import _gene_motif_changes, load_motifs
from varscore.simulate.reference import _fasta_reference, _random_reference
from varscore.simulate.writers import _params, _write_outputs

logger = logging.getLogger("varscore.simulate")


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
    with staging_directory(out_dir) as staging:
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
