"""The ``varscore annotate`` pipeline: read a VCF, score it with a model bundle, run the
requested annotators and write the VCF back with INFO fields added."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varscore.bundle import load_bundle
from varscore.engine import AlleleScore, ScoringSummary, plan_scoring, run_plan
from varscore.errors import InputError
from varscore.genome import Genome, load_genes
from varscore.vcf import MAX_KEY, SCORE_HEADERS, SCORE_KEY, SKIP_KEY, format_float, iter_variants, write_annotated

logger = logging.getLogger(__name__)


def _sanitize(text: str) -> str:
    """INFO values may not hold separators: replace them."""
    for char in "|,;= \t":
        text = text.replace(char, "_")
    return text


def format_scores(variant_alts: Sequence[str], scores: Sequence[AlleleScore], model: str) -> dict[str, str]:
    """The ``VARSCORE`` and ``VARSCORE_MAX`` INFO values of one record."""
    entries = [
        "|".join(
            (s.allele, _sanitize(s.gene), _sanitize(model), format_float(s.ref_pred),
             format_float(s.alt_pred), format_float(s.delta))
        )
        for s in scores
    ]
    maxima = []
    for alt in variant_alts:
        deltas = [abs(s.delta) for s in scores if s.allele == alt.upper()]
        maxima.append(format_float(max(deltas)) if deltas else ".")
    return {SCORE_KEY: ",".join(entries), MAX_KEY: ",".join(maxima)}


def annotate_vcf(
    vcf: str | Path,
    model: str | Path,
    output: str | Path,
    *,
    fasta: str | Path | None = None,
    genes_path: str | Path | None = None,
    batch_size: int = 8,
    device: str = "auto",
    bf16: bool = False,
    annotators: Sequence[str] = (),
    progress: bool = False,
    check_ref: str = "flag",
) -> ScoringSummary:
    """Score every variant of ``vcf`` with ``model`` and write the annotated VCF to ``output``."""
    from varscore.plugins import get_annotator

    annotator_objs = [get_annotator(name)() for name in annotators]
    bundle = load_bundle(model)
    fasta_path = Path(fasta) if fasta else bundle.reference_fasta
    if fasta_path is None:
        raise InputError(f"Model '{bundle.name}' records no reference FASTA: pass one with --fasta.")
    genome = Genome(fasta_path)
    genes = load_genes(genes_path) if genes_path else bundle.genes
    if bundle.manifest["backbone"].get("name") in _genotype_backbones():
        return _annotate_linear(vcf, bundle, output, genes)
    # plan in one streaming pass first, so that bad input fails before the model is loaded
    plan = plan_scoring(iter_variants(vcf), genes, genome, int(bundle.manifest["window_size"]), check_ref=check_ref)
    backbone = bundle.backbone()
    if backbone.input_kind != "sequence":
        raise InputError(f"Model '{bundle.name}' takes genotypes, not sequence; it cannot score a VCF by ISM yet.")
    backbone.configure(device=device, bf16=bf16)
    result = run_plan(plan, backbone, bundle.output_mode(), genome, batch_size=batch_size, progress=progress)
    info = {
        record: format_scores(plan.variants[record].alts, scores, bundle.name)
        for record, scores in result.scores.items()
    }
    for record, reason in plan.skipped.items():
        info[record] = {SKIP_KEY: reason}
    variants = list(plan.variants.values())
    headers = list(SCORE_HEADERS)
    if annotator_objs:
        from varscore.base import AnnotationContext
        from varscore.types import tss_window
        from varscore.vcf import InfoHeader

        context = AnnotationContext(
            genes=genes, windows={g.gene_id: tss_window(g, backbone.window_size) for g in genes}, fasta=genome
        )
        by_key = {v.key: v.index for v in variants}
        for annotator in annotator_objs:
            frame = annotator.annotate(variants, context)
            for field_ in annotator.info_fields:
                headers.append(InfoHeader(field_.key, field_.number, field_.type, field_.description))
                if field_.key not in frame.columns:
                    continue
                for key, value in frame[field_.key].dropna().items():
                    info.setdefault(by_key[key], {})[field_.key] = str(value)
    write_annotated(vcf, output, info, headers)
    return result.summary


def _genotype_backbones() -> set[str]:
    from varscore.plugins import manager

    return {name for name, (cls, _) in manager.registry.entries["backbones"].items() if getattr(cls, "input_kind", "") == "genotypes"}


def _annotate_linear(vcf: str | Path, bundle: Any, output: str | Path, genes: list[Any]) -> ScoringSummary:
    """Linear bundles score the variants they hold (2 × coefficient); no FASTA is needed."""
    from varscore.engine import score_linear

    result = score_linear(iter_variants(vcf), bundle.backbone(), {g.gene_id: g.label for g in genes})
    info = {record: format_scores(result.alts[record], s, bundle.name) for record, s in result.scores.items()}
    linear = dataclasses.replace(SCORE_HEADERS[0], description=SCORE_HEADERS[0].description.replace(
        "(ALT minus REF prediction of the model on the reference window with the allele applied)",
        "(linear model: REF_PRED = intercept, ALT_PRED = intercept + 2 x coefficient, i.e. homozygous ALT"
        " vs homozygous REF; variants outside the model get no entry)"))
    headers = [linear, SCORE_HEADERS[1]]
    write_annotated(vcf, output, info, headers)
    return result.summary
