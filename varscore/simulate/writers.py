"""Writers: the FASTA, gene tables, VCF, expression BED, truth tables and params.json of a cohort."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from varscore import __version__
from varscore.genome.pwm import GENOME_BACKGROUND, Motif
from varscore.genome.sequence import BASES
from varscore.models.bundle import sha256
from varscore.simulate.config import (
    CLI_OPTIONS,
    COMMON_MAF,
    DISTANCE_SCALE,
    EFFECT_ALPHA,
    INDEL_SHARE,
    MIN_MOTIF_DELTA,
    MOTIF_P_VALUE,
    PROXIMAL_BP,
    SAMPLE_PREFIX,
    TRANSITION_SHARE,
    SimulationConfig,
)
from varscore.simulate.expression import _GeneTruth, inverse_normal
from varscore.simulate.genotypes import _Variants
from varscore.simulate.reference import _Reference
from varscore.types import Gene


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
