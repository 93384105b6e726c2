"""Fine-mapped eQTL annotator (``--annotate finemap``, INFO ``VARSCORE_FINEMAP``) and the
``varscore finemap-eval`` command: how well a model's variant weights pick out fine-mapped eQTLs.

Tables: GTEx CAVIAR (``TISSUE GENE eQTL CHROM POS Probability``), SuSiE (a gene column, a
variant id or chrom + pos, and ``pip``) and DAP-G (gene, variant id, ``variant_pip``); columns are
matched by name (case-insensitive, common aliases), whitespace- or tab-separated. Variant ids in
GTEx style (``chr1_13550_G_A_b38``) or ``chrom:pos:ref:alt`` supply chrom and pos when those
columns are missing.

Evaluation (the Variformer paper). Per gene: positives are the gene's variants with a posterior
of at least ``min_posterior``; each positive gets ``negatives`` distance-matched negatives — the
not-yet-used variants of the gene absent from the fine-mapping table whose distance to the TSS is
closest to the positive's. auROC and auPR (average precision) of ``|weight|`` are computed per
gene and over all genes' pooled variants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from varscore.analysis.finemapping import (  # noqa: F401  (re-exported: the plugin's public names)
    ALIASES,
    FORMATS,
    REQUIRED,
    FinemapEvaluation,
    auroc,
    average_precision,
    evaluate_finemap,
    matched_negatives,
    norm_chrom,
    read_finemap_table,
)
from varscore.errors import InputError
from varscore.plugin.contracts import AnnotationContext, Annotator, InfoField
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.options import PluginOptions, option

if TYPE_CHECKING:
    import click
    import pandas as pd

    from varscore.types import Gene, Variant

FINEMAP_KEY = "VARSCORE_FINEMAP"
FINEMAP_FORMAT = "GENE|TISSUE|METHOD|POSTERIOR"


# --------------------------------------------------------------------------------------------
# Annotator


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not low <= number <= high:
        raise InputError(f"finemap.{name} must be a number from {low} to {high}; got '{value}'.")
    return number


class FinemapAnnotator(Annotator):
    """Posterior probabilities of each variant from a fine-mapping table (CAVIAR, SuSiE, DAP-G).

    Options: ``table`` (required path), ``format`` (auto, caviar, susie, dapg), ``tissue`` (keep
    one tissue), ``min_posterior`` (report only posteriors at least this large). Rows match a
    variant by contig (``chr`` prefix ignored) and position, and by alleles when the table's
    variant ids carry them.
    """

    name: ClassVar[str] = "finemap"
    info_fields: ClassVar[tuple[InfoField, ...]] = (
        InfoField(
            FINEMAP_KEY,
            ".",
            "String",
            "Fine-mapping posterior of the variant for each gene (eQTL fine-mapping table). Format: " + FINEMAP_FORMAT,
        ),
    )

    @dataclass
    class Options(PluginOptions):
        table: str = option("", "eQTL fine-mapping table (required).")
        format: str = option("auto", "Table format ('auto': from its columns).")
        tissue: str = option("", "Keep only this tissue's rows ('': all).")
        min_posterior: float = option(0.0, "Report posteriors at least this large.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not self.params["table"]:
            raise InputError("The finemap annotator needs a table: --annotator-opt finemap.table=PATH.")
        if self.params["format"] not in FORMATS:
            raise InputError(f"finemap.format must be one of {', '.join(FORMATS)}; got '{self.params['format']}'.")
        self.min_posterior = _number("min_posterior", self.params["min_posterior"], 0.0, 1.0)
        self.table = read_finemap_table(self.params["table"], self.params["format"], self.params["tissue"] or None)

    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        import pandas as pd

        kept = self.table[self.table["posterior"] >= self.min_posterior]
        by_site: dict[tuple[str, int], list[Any]] = {}
        for row in kept.itertuples(index=False):
            by_site.setdefault((row.chrom, int(row.pos)), []).append(row)
        values: dict[str, str] = {}
        for variant in variants:
            rows = by_site.get((norm_chrom(variant.chrom), variant.pos), [])
            alts = {a.upper() for a in variant.alts}
            entries = [
                "|".join((_clean(r.gene), _clean(r.tissue) or ".", r.method, f"{r.posterior:.4g}"))
                for r in rows
                if not r.alt or (r.ref == variant.ref.upper() and r.alt in alts)
            ]
            if entries:
                values[variant.key] = ",".join(entries)
        return pd.DataFrame({FINEMAP_KEY: pd.Series(values, dtype=object)})


def _clean(text: str) -> str:
    from varscore.plugin import info_atom

    return info_atom(text)


@hookimpl
def register_annotators(register: Callable[[type[Annotator]], None]) -> None:
    register(FinemapAnnotator)


@dataclass(frozen=True)
class FinemapEvalJob:
    """One ``varscore finemap-eval`` run: the variant weights of ``weights`` (an annotated VCF or an
    ISM table) scored against the fine-mapping table ``finemap`` (``table_format``, or 'auto'; only
    ``tissue``'s rows when given): per gene of the table ``genes``, the variants with a posterior of
    at least ``min_posterior`` are positives, each with ``negatives`` distance-matched negatives.
    The per-model table goes to ``output`` (None: returned for printing), the per-gene results to
    ``per_gene`` when given."""

    weights: Path
    finemap: Path
    genes: Path
    table_format: str = "auto"
    tissue: str | None = None
    min_posterior: float = 0.1
    negatives: int = 5
    per_gene: Path | None = None
    output: Path | None = None


@dataclass
class FinemapEvalResult:
    """``evaluation``: auROC/auPR per model (``overall``) and per model and gene (``per_gene``);
    ``output``: where the per-model table was written (None: it is printed)."""

    evaluation: FinemapEvaluation
    output: Path | None = None

    def text(self) -> str:
        """The per-model table as the TSV the command writes."""
        return str(self.evaluation.overall.to_csv(sep="\t", index=False, float_format="%.6g"))

    def lines(self) -> list[str]:
        """What the command prints on stdout: the per-model TSV unless it went to a file."""
        return self.text().splitlines() if self.output is None else []


def run_finemap_eval(job: FinemapEvalJob) -> FinemapEvalResult:
    """Run ``job``; see :class:`FinemapEvalJob`."""
    from varscore.analysis.enrichment import read_variant_weights
    from varscore.genome.fasta import load_genes
    from varscore.plugin import write_text

    table = read_finemap_table(job.finemap, job.table_format, job.tissue)
    frame = read_variant_weights(job.weights)
    if frame.empty:
        raise InputError(f"{job.weights} holds no variant weights.")
    genes: dict[str, Gene] = {}
    for gene in load_genes(job.genes):
        genes[gene.gene_id] = genes[gene.label] = gene
    evaluation = evaluate_finemap(frame, table, genes, min_posterior=job.min_posterior, negatives=job.negatives)
    if evaluation.overall.empty:
        raise InputError(
            "No gene has both a fine-mapped positive and a negative among the weighted variants: "
            "check that the table's genes and positions match the weights (same build?)."
        )
    result = FinemapEvalResult(evaluation, job.output)
    if job.per_gene is not None:
        write_text(job.per_gene, evaluation.per_gene.to_csv(sep="\t", index=False, float_format="%.6g"))
    if job.output is not None:
        write_text(job.output, result.text())
    return result


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    from varscore.plugin import writes

    @cli.command("finemap-eval")
    @click.argument("weights", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--finemap",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Fine-mapping table (GTEx CAVIAR, SuSiE or DAP-G).",
    )
    @click.option("--format", "table_format", type=click.Choice(FORMATS), default="auto", show_default=True)
    @click.option(
        "--genes",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Gene/TSS table (TSV, GTF or GFF3) naming the genes of the weights.",
    )
    @click.option("--tissue", help="Use only this tissue's rows of the table.")
    @click.option(
        "--min-posterior",
        default=0.1,
        show_default=True,
        type=click.FloatRange(0, 1),
        help="Posterior a fine-mapped variant needs to count as a positive.",
    )
    @click.option(
        "--negatives",
        default=5,
        show_default=True,
        type=click.IntRange(min=1),
        help="Distance-matched negatives per positive.",
    )
    @click.option(
        "--per-gene", type=click.Path(dir_okay=False, path_type=Path), help="Also write per-gene results (TSV)."
    )
    @click.option("-o", "--output", default="-", show_default=True, help="Output TSV ('-' for stdout).")
    @writes(("output", "-o", "file"), ("per_gene", "--per-gene", "file"))
    def finemap_eval(output: str, **options: Any) -> None:
        """auROC/auPR of |variant weight| for fine-mapped eQTLs against distance-matched negatives, per
        model. WEIGHTS is an annotated VCF (VARSCORE entries) or an ISM table."""
        job = FinemapEvalJob(output=None if output == "-" else Path(output), **options)
        for line in run_finemap_eval(job).lines():
            click.echo(line)
