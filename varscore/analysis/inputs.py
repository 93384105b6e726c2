"""What every variant analysis starts from (a model bundle, the reference genome, the chosen genes
and the cohort's SNVs in their windows) and how its tables are written (atomically, with a
provenance sidecar)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from varscore.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from varscore.analysis.ism import GeneVariants, ModelScorer
    from varscore.types import Gene


class AnalysisResult(Protocol):
    """What every analysis workflow returns (``run_ism``, ``run_hsv``, ``run_drivers``,
    ``run_attribution``, ``build_report``): its tables, and the lines the command prints."""

    def lines(self) -> list[str]:
        """The summary, for stdout."""
        ...

    def notes(self) -> list[str]:
        """The files written and what was left out, for stderr."""
        ...


@dataclass(frozen=True)
class AnalysisInputs:
    """What a variant analysis runs on: ``model`` (bundle name or directory), the cohort ``vcf``
    (VCF/BCF, indexed; None where the analysis can do without genotypes), the reference ``fasta``
    (None: the one the bundle records), ``gene_names`` (gene ids or names; empty: all the model's
    genes), the ``device`` the model runs on (``auto``, ``cpu`` or ``cuda``) and the ``cache``
    folder keeping ISM results between runs (None: none; :mod:`varscore.scoring.effect_cache`)."""

    model: str
    vcf: Path | None = None
    fasta: Path | None = None
    gene_names: tuple[str, ...] = ()
    device: str = "cpu"
    cache: Path | None = None

    def load(self, need_vcf: bool = True) -> LoadedInputs:
        """Load the bundle, its scorer, the genome, the chosen genes and (with a VCF) their variants."""
        from varscore.analysis.ism import ModelScorer, read_gene_variants
        from varscore.genome.fasta import Genome
        from varscore.models.bundle import load_bundle

        bundle = load_bundle(self.model)
        fasta = bundle.resolve_reference(self.fasta)
        if self.vcf is None and need_vcf:
            raise InputError("This analysis needs the cohort's genotypes: pass the cohort VCF (the argument VCF).")
        genes = bundle.genes
        if self.gene_names:
            wanted = set(self.gene_names)
            genes = [g for g in genes if g.gene_id in wanted or g.name in wanted]
            unknown = wanted - {g.gene_id for g in genes} - {g.name for g in genes}
            if unknown:
                known = ", ".join(g.label for g in bundle.genes[:10])
                raise InputError(f"Model '{bundle.name}' has no gene {', '.join(sorted(unknown))} (it has {known}).")
        if not genes:
            raise InputError(f"Model '{bundle.name}' lists no genes.")
        scorer = ModelScorer.from_bundle(bundle, device=self.device, cache=self.cache)
        genome = Genome(fasta)
        variants = read_gene_variants(self.vcf, genes, genome, scorer.window_size) if self.vcf is not None else None
        return LoadedInputs(bundle, scorer, genome, genes, variants)


@dataclass
class LoadedInputs:
    """:class:`AnalysisInputs` loaded: the ``bundle``, its ``scorer``, the reference ``genome``, the
    chosen ``genes`` and, when a VCF was given, their ``variants`` by gene id (else None)."""

    bundle: Any
    scorer: ModelScorer
    genome: Any
    genes: list[Gene]
    variants: dict[str, GeneVariants] | None

    def cohort_variants(self) -> dict[str, GeneVariants]:
        """The variants by gene id; an analysis that needs them loaded with ``need_vcf``."""
        if self.variants is None:
            raise InputError("This analysis needs the cohort's genotypes: pass the cohort VCF (the argument VCF).")
        return self.variants


def write_table(
    table: pd.DataFrame, output: Path, bundle: Any | None, argv: Sequence[str] | None = None, exact: bool = False
) -> Path:
    """Write ``table`` as TSV (floats to 6 significant digits; with ``exact``, digits enough to read
    back the same numbers) atomically, and ``OUTPUT.provenance.json`` beside it recording the command
    ``argv`` (None: this process's) and ``bundle``."""
    from varscore.io.outputguard import atomic_file, write_provenance_sidecar

    with atomic_file(output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format=None if exact else "%.6g")
    write_provenance_sidecar(output, bundle, argv)
    return output
