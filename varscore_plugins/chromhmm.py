"""Chromatin-state annotator (``--annotate chromhmm``, INFO ``VARSCORE_CHROMHMM``) and the
``varscore enrichment`` command: enrichment of high-scoring variants across the states of a
ChromHMM segmentation (see :mod:`varscore.analysis.enrichment` for the definition)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from varscore.errors import InputError
from varscore.plugin import info_atom
from varscore.plugin.contracts import AnnotationContext, Annotator, InfoField
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.options import PluginOptions, option

if TYPE_CHECKING:
    import click
    import pandas as pd

    from varscore.analysis.enrichment import Segmentation
    from varscore.types import Variant

CHROMHMM_KEY = "VARSCORE_CHROMHMM"


class ChromHMMAnnotator(Annotator):
    """The chromatin state of each variant's position in a ChromHMM segmentation BED.

    Options: ``bed`` (required: ``*_segments.bed``, or the dense or expanded browser file).
    Contigs of the BED must exist in the reference FASTA when one is given.
    """

    name: ClassVar[str] = "chromhmm"
    info_fields: ClassVar[tuple[InfoField, ...]] = (
        InfoField(CHROMHMM_KEY, "1", "String", "Chromatin state at the variant's position (ChromHMM segmentation)"),
    )

    @dataclass
    class Options(PluginOptions):
        bed: str = option("", "ChromHMM segmentation BED (*_segments.bed, dense or expanded browser file); required.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not self.params["bed"]:
            raise InputError("The chromhmm annotator needs a segmentation: --annotator-opt chromhmm.bed=PATH.")
        self.bed = Path(str(self.params["bed"]))
        if not self.bed.is_file():
            raise InputError(f"chromhmm.bed: file not found: {self.bed}.")
        self._segmentation: Segmentation | None = None

    @property
    def segmentation(self) -> Segmentation:
        from varscore.analysis.enrichment import read_segmentation

        if self._segmentation is None:
            self._segmentation = read_segmentation(self.bed)
        return self._segmentation

    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        import pandas as pd

        segmentation = self.segmentation
        if context.fasta is not None:
            segmentation.check_contigs(context.fasta.contigs, f"the FASTA {context.fasta.path}")
        by_chrom: dict[str, list[Variant]] = {}
        for variant in variants:
            by_chrom.setdefault(variant.chrom, []).append(variant)
        values: dict[str, str] = {}
        for chrom, group in by_chrom.items():
            states = segmentation.states_at(chrom, [v.pos for v in group])
            for variant, state in zip(group, states, strict=True):
                if state is not None:
                    values[variant.key] = info_atom(state)
        return pd.DataFrame({CHROMHMM_KEY: pd.Series(values, dtype=object)})


@hookimpl
def register_annotators(register: Callable[[type[Annotator]], None]) -> None:
    register(ChromHMMAnnotator)


@dataclass(frozen=True)
class EnrichmentJob:
    """One ``varscore enrichment`` run: the variant weights of ``weights`` (an annotated VCF or an
    ISM table), their high-scoring variants (``top`` K per gene and model, or as many as the model
    ``k_from`` has non-zero weights) counted across the states of the segmentation ``bed`` against
    the expectation from each gene's TSS-centred ``window`` (genes named by the table ``genes``).
    ``fasta``: check that the segmentation's contigs exist in it. The per-state table goes to
    ``output`` (None: returned for printing), the per-gene counts to ``per_gene`` when given."""

    weights: Path
    bed: Path
    genes: Path
    window: int = 49152
    top: int | None = None
    k_from: str | None = None
    fasta: Path | None = None
    per_gene: Path | None = None
    output: Path | None = None


@dataclass
class EnrichmentResult:
    """``per_state``: ln(observed/expected) per model and state; ``per_gene``: the counts per model,
    gene and state; ``output``: where ``per_state`` was written (None: it is printed)."""

    per_state: pd.DataFrame
    per_gene: pd.DataFrame
    output: Path | None = None

    def text(self) -> str:
        """The per-state table as the TSV the command writes."""
        return str(self.per_state.to_csv(sep="\t", index=False, float_format="%.6g"))

    def lines(self) -> list[str]:
        """What the command prints on stdout: the per-state TSV unless it went to a file."""
        return self.text().splitlines() if self.output is None else []


def run_enrichment(job: EnrichmentJob) -> EnrichmentResult:
    """Run ``job``; see :class:`EnrichmentJob`."""
    from varscore.analysis.enrichment import read_segmentation, read_variant_weights, select_hsvs, state_enrichment
    from varscore.genome.fasta import Genome, load_genes
    from varscore.plugin import write_text
    from varscore.types import tss_window

    segmentation = read_segmentation(job.bed)
    if job.fasta is not None:
        segmentation.check_contigs(Genome(job.fasta).contigs, f"the FASTA {job.fasta}")
    table = read_variant_weights(job.weights)
    if table.empty:
        raise InputError(f"{job.weights} holds no variant weights.")
    windows = {}
    for gene in load_genes(job.genes):
        windows[gene.gene_id] = windows[gene.label] = tss_window(gene, job.window)
    used = sorted({windows[g].chrom for g in set(table["gene"]) if g in windows})
    segmentation.require_contigs(used, "the gene windows")
    enrichment = state_enrichment(select_hsvs(table, top=job.top, k_from=job.k_from), windows, segmentation)
    result = EnrichmentResult(enrichment.per_state, enrichment.per_gene, job.output)
    if job.per_gene is not None:
        write_text(job.per_gene, result.per_gene.to_csv(sep="\t", index=False))
    if job.output is not None:
        write_text(job.output, result.text())
    return result


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    from varscore.plugin import writes

    @cli.command("enrichment")
    @click.argument("weights", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--bed",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="ChromHMM segmentation (segments BED, or the dense/expanded browser BED).",
    )
    @click.option(
        "--genes",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Gene/TSS table (TSV, GTF or GFF3) naming the genes of the weights.",
    )
    @click.option(
        "--window",
        default=49152,
        show_default=True,
        type=click.IntRange(min=1),
        help="TSS-centred window (bp) whose annotated bases give the expected counts.",
    )
    @click.option("--top", type=click.IntRange(min=1), help="HSVs per gene and model: the K largest |delta|.")
    @click.option("--k-from", help="HSVs per gene: as many as this model has non-zero weights (e.g. an elastic net).")
    @click.option(
        "--fasta",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Reference FASTA: check that the BED's contigs exist in it.",
    )
    @click.option(
        "--per-gene",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the per-gene observed/expected counts (TSV).",
    )
    @click.option("-o", "--output", default="-", show_default=True, help="Output TSV ('-' for stdout).")
    @writes(("output", "-o", "file"), ("per_gene", "--per-gene", "file"))
    def enrichment(output: str, **options: Any) -> None:
        """Enrichment of high-scoring variants across chromatin states: ln(observed/expected) per model
        and state. WEIGHTS is an annotated VCF (VARSCORE entries) or an ISM table."""
        job = EnrichmentJob(output=None if output == "-" else Path(output), **options)
        for line in run_enrichment(job).lines():
            click.echo(line)
