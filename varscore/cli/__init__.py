"""The ``varscore`` command line. The only module that talks to the user."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from varscore import __version__
from varscore.errors import VarscoreError
from varscore.io.outputguard import writes
from varscore.training.finetune import RECIPES

logger = logging.getLogger("varscore")


class VarscoreGroup(click.Group):
    """Turns :class:`VarscoreError` into a one-line message (traceback with VARSCORE_DEBUG=1), and
    adds the plugins' commands before the first command line is parsed, however it is invoked."""

    plugin_commands_added = False

    def add_plugin_commands(self) -> None:
        if not self.plugin_commands_added:
            from varscore.plugin.manager import manager

            manager.add_commands(self)
            self.plugin_commands_added = True

    def main(self, *args: Any, **kwargs: Any) -> Any:
        self.add_plugin_commands()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VarscoreError as exc:
            if os.environ.get("VARSCORE_DEBUG"):
                raise
            error = click.ClickException(str(exc))
            error.exit_code = getattr(exc, "exit_code", 1)  # type: ignore[misc]  # e.g. 143 after SIGTERM, as shells report it
            raise error from exc
        except OSError as exc:  # the system refused a read or write no check foresaw (disk full, I/O error)
            if os.environ.get("VARSCORE_DEBUG"):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}; set VARSCORE_DEBUG=1 for details.") from exc


@click.group(cls=VarscoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varscore")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--trust-unverified",
    is_flag=True,
    help="Load model bundles whose manifest records no checksums (only bundles you trust).",
)
@click.option(
    "--allow-large-models", is_flag=True, help="Build models above the size limits that protect against bad manifests."
)
def cli(verbose: int, trust_unverified: bool, allow_large_models: bool) -> None:
    """Score genetic variants by their predicted effect on gene expression."""
    from varscore.models.bundle import TRUST_ENV
    from varscore.plugin.contracts import ALLOW_LARGE_ENV

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for flag, variable in ((trust_unverified, TRUST_ENV), (allow_large_models, ALLOW_LARGE_ENV)):
        if flag:
            os.environ[variable] = "1"


@cli.group("examples")
def examples_group() -> None:
    """The bundled example cohort and demo models."""


@examples_group.command("path")
@click.option("--models", "which", flag_value="models", help="Print the demo models' folder instead.")
def examples_path(which: str | None) -> None:
    """Print the folder of the example data (cohort.vcf.gz, expression, genes, hg19 FASTA slice)."""
    from varscore.examples import data_dir, models_dir

    click.echo(str(models_dir() if which == "models" else data_dir()))


# --- simulate command ---


@cli.command()
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created if missing; files in it are replaced).",
)
@click.option("--people", default=670, show_default=True, type=int, help="Number of people.")
@click.option(
    "--genes",
    "n_genes",
    default=20,
    show_default=True,
    type=int,
    help="Genes in the random genome (or spread over --region when no --gene-table).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA (plain, or bgzipped with .fai/.gzi). Default: a random human-like genome.",
)
@click.option("--region", help="Part of --fasta to simulate, chr:start-end (1-based, inclusive).")
@click.option(
    "--gene-table",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TSSs for --fasta: TSV (chrom, tss, strand, gene_id|gene_name; 1-based), GTF or GFF3.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed (same seed, same files).")
@click.option("--phased/--unphased", default=True, show_default=True, help="Write phased (0|1) genotypes.")
@click.option("--indels", is_flag=True, help="Add short insertions and deletions (about 1 per 8 SNVs).")
@click.option("--h2", type=float, help="Give every gene this cis-heritability (default: drawn per gene).")
@click.option(
    "--h2-mean",
    default=0.2,
    show_default=True,
    type=float,
    help="Mean cis-heritability of heritable genes (Beta-distributed).",
)
@click.option("--null-fraction", default=0.25, show_default=True, type=float, help="Share of genes with h2 = 0.")
@click.option(
    "--causal-per-gene",
    default=3.0,
    show_default=True,
    type=float,
    help="Mean number of causal variants of a heritable gene (1-10).",
)
@click.option(
    "--motif-fraction",
    default=0.5,
    show_default=True,
    type=float,
    help="Share of causal variants chosen because they create or disrupt a JASPAR motif.",
)
@click.option(
    "--rare-fraction", default=0.3, show_default=True, type=float, help="Share of causal variants with MAF < 0.05."
)
@click.option(
    "--window",
    default=49152,
    show_default=True,
    type=int,
    help="Model window (bp) centred on each TSS; causal variants lie in its central 80%.",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="Also write per-person RNA-seq-like coverage over every gene window (coverage.npz), "
    "for track-mode fine-tuning.",
)
@click.option("--coverage-bin", default=32, show_default=True, type=int, help="Coverage bin size (bp).")
@click.option("--coverage-bigwig", is_flag=True, help="Also write one coverage bigWig per person (implies --coverage).")
@writes(("out_dir", "-o", "folder"))
def simulate(
    out_dir: Path,
    people: int,
    n_genes: int,
    fasta: Path | None,
    region: str | None,
    gene_table: Path | None,
    seed: int,
    phased: bool,
    indels: bool,
    h2: float | None,
    h2_mean: float,
    null_fraction: float,
    causal_per_gene: float,
    motif_fraction: float,
    rare_fraction: float,
    window: int,
    coverage: bool,
    coverage_bin: int,
    coverage_bigwig: bool,
) -> None:
    """Simulate a cohort with known causal variants: genotypes (VCF), expression (GTEx BED), truth."""
    from varscore.simulate import SimulationConfig, simulate_cohort

    config = SimulationConfig(
        people=people,
        genes=n_genes,
        fasta=fasta,
        region=region,
        gene_table=gene_table,
        seed=seed,
        phased=phased,
        indels=indels,
        window=window,
        h2=h2,
        h2_mean=h2_mean,
        h2_null_fraction=null_fraction,
        causal_per_gene=causal_per_gene,
        motif_fraction=motif_fraction,
        rare_fraction=rare_fraction,
        coverage=coverage,
        coverage_bin=coverage_bin,
        coverage_bigwig=coverage_bigwig,
    )
    result = simulate_cohort(config, out_dir)
    click.echo(
        f"Simulated {result.people:,} people, {result.genes:,} genes, {result.variants:,} variants; "
        f"{result.causal_variants:,} causal variants, mean realised h2 {result.mean_h2:.3f}."
    )
    click.echo(
        f"Wrote {result.vcf.name}, {result.expression.name}, {result.truth_variants.name}, "
        f"{result.truth_genes.name}, {result.params.name} and more to {result.out_dir}"
    )


@cli.command()
@click.argument("vcf", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-m",
    "--model",
    required=True,
    help="Model bundle name or directory (see 'varscore models list'); 'none' runs only --annotate.",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Output VCF: '-' for stdout, *.vcf, or *.vcf.gz (bgzipped + tabix-indexed).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA (default: the one recorded in the model bundle).",
)
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) instead of the bundle's genes.",
)
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Alternate windows per forward pass."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on GPU.")
@click.option("--annotate", "annotators", default="", help="Comma-separated annotators to run as well.")
@click.option(
    "--annotator-opt",
    "annotator_opts",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="An annotator option, e.g. motifs.p_threshold=1e-4 or chromhmm.bed=states.bed (repeatable).",
)
@click.option(
    "--check-ref",
    type=click.Choice(["skip", "flag", "fail"]),
    default="flag",
    show_default=True,
    help="REF differing from the FASTA: flag (not scored, INFO VARSCORE_SKIP=ref_mismatch), "
    "fail (stop), skip (do not compare).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from the genes it finished (kept in OUTPUT.varscore-partial/).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option(
    "--devices",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes to share the genes between (one per GPU with CUDA, else CPU workers); "
    "under torchrun, every launched process takes a share (README: Scale-out).",
)
@click.option(
    "--max-ref-mismatch",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Stop when more than this share of checked REF alleles differ from the FASTA (wrong build?).",
)
@click.option("--fail-if-none", is_flag=True, help="Exit with an error when no record can be scored.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary (warnings and errors still show).")
@click.option("--rc", is_flag=True, help="Test-time augmentation: also score reverse-complemented windows, averaged.")
@click.option("--shifts", help="Test-time augmentation: window shifts in bp to average over, e.g. -1,0,1.")
@click.option(
    "--mode",
    type=click.Choice(["gene", "variant"]),
    default="gene",
    show_default=True,
    help="gene: the TSS windows of the model's genes; variant: a window centred on every variant "
    "(track models; docs/variant-centred.md).",
)
@click.option(
    "--tracks",
    default="all",
    show_default=True,
    help="--mode variant: tracks to score: all, indices (0,5,10-12) or a pattern over --targets descriptions.",
)
@click.option(
    "--targets",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode variant: targets file naming the model's tracks (tab-separated, 'description' column).",
)
@click.option(
    "--gtf",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode variant: GTF/GFF3 with genes and exons, for gene-level scores over exon bins.",
)
@click.option(
    "--stats",
    default="SUM,logSUM,D1,D2",
    show_default=True,
    help="--mode variant: statistics (the first is the VCF headline).",
)
@click.option(
    "--detail",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode variant: write every (allele, gene, track, statistic) value to this Parquet file.",
)
@click.option(
    "--centring",
    type=click.Choice(["exact", "tiled"]),
    default="exact",
    show_default=True,
    help="--mode variant: a window per variant position (exact) or one per genome tile (tiled).",
)
@click.option("--tile-bins", type=click.IntRange(min=1), help="--centring tiled: tile width in output bins.")
@writes(("output", "-o", "file"), ("detail", "--detail", "file"))
def annotate(
    vcf: Path,
    model: str,
    output: str,
    fasta: Path | None,
    genes_path: Path | None,
    batch_size: int,
    device: str,
    bf16: bool,
    annotators: str,
    annotator_opts: tuple[str, ...],
    check_ref: str,
    resume: bool,
    progress: bool,
    devices: int,
    max_ref_mismatch: float,
    fail_if_none: bool,
    quiet: bool,
    rc: bool,
    shifts: str | None,
    mode: str = "gene",
    tracks: str = "all",
    targets: Path | None = None,
    gtf: Path | None = None,
    stats: str = "SUM,logSUM,D1,D2",
    detail: Path | None = None,
    centring: str = "exact",
    tile_bins: int | None = None,
) -> None:
    """Add each variant's predicted effect on expression to a VCF (INFO VARSCORE).

    Records come out as they went in, in order; those in a gene window that cannot be scored get
    INFO VARSCORE_SKIP=reason. SNVs, MNPs, insertions and deletions are scored (README: Indels).
    A summary of what happened to every record goes to stderr.
    """
    from varscore.models.ensemble import parse_shifts
    from varscore.scoring.gene_mode import annotate_vcf, parse_annotator_options
    from varscore.scoring.variant_mode import stop_on_sigterm

    # SIGTERM unwinds like Ctrl-C (temporary files are removed on the way out) and ends in one line
    outcome = (
        "the output stream is incomplete"
        if str(output) == "-"
        else f"{output} was not written; rerun with --resume to keep the genes already scored"
    )
    with stop_on_sigterm("annotate", outcome):
        if mode == "variant":
            from varscore.scoring.variant_mode import annotate_variant_centred

            if annotators or resume or devices > 1:
                raise click.UsageError("--mode variant does not take --annotate, --resume or --devices yet.")
            centred = annotate_variant_centred(
                vcf,
                model,
                output,
                fasta=fasta,
                tracks=tracks,
                targets=targets,
                gtf=gtf,
                stats=stats,
                detail=detail,
                centring=centring,
                tile_bins=tile_bins,
                batch_size=batch_size,
                device=device,
                bf16=bf16,
                check_ref=check_ref,
                progress=progress and sys.stderr.isatty(),
            )
            for line in centred.lines():
                click.echo(line, err=True)
            return
        summary = annotate_vcf(
            vcf,
            model,
            output,
            fasta=fasta,
            genes_path=genes_path,
            batch_size=batch_size,
            device=device,
            bf16=bf16,
            annotators=[a.strip() for a in annotators.split(",") if a.strip()],
            progress=progress and not quiet and sys.stderr.isatty(),
            check_ref=check_ref,
            annotator_options=parse_annotator_options(annotator_opts),
            resume=resume,
            devices=devices,
            max_ref_mismatch=max_ref_mismatch,
            fail_if_none=fail_if_none,
            argv=["varscore", *sys.argv[1:]],
            rc=rc,
            shifts=parse_shifts(shifts),
        )
    if os.environ.get("RANK", "0") != "0" or quiet:
        return  # under torchrun, rank 0 writes the output and reports the summary
    for line in summary.lines():
        click.echo(line, err=True)


# --- genome-browser tracks ---


@cli.command()
@click.argument("vcf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", help="Model bundle to score with; with --from-vcf, whose VARSCORE entries to draw.")
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created if missing; files in it are replaced).",
)
@click.option(
    "--format",
    "formats",
    default="bigwig,bed",
    show_default=True,
    help="Comma-separated: bigwig (bigWig tracks + bigBed of top variants), bedgraph, bed (BED9).",
)
@click.option(
    "--from-vcf",
    is_flag=True,
    help="Draw the VCF's VARSCORE entries instead of scoring (default when no --model is given).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA: contig names and lengths (default: the model bundle's).",
)
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) instead of the bundle's genes.",
)
@click.option(
    "--genome",
    help="IGV genome id / UCSC database (hg19, hg38) or FASTA for the session [the bundle's build, else the FASTA].",
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Variants per gene in the BED9, by |delta| (0 = all).",
)
@click.option(
    "--coverage-top",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Track models: strongest variants per gene whose ALT and delta coverage are drawn.",
)
@click.option("--hub-email", help="Contact e-mail for hub.txt (UCSC asks for one on public hubs).")
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Alternate windows per forward pass."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on GPU.")
@click.option(
    "--check-ref",
    type=click.Choice(["skip", "flag", "fail"]),
    default="flag",
    show_default=True,
    help="REF differing from the FASTA: flag (not scored), fail (stop), skip (do not compare).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@writes(("out_dir", "-o", "folder"))
def track(
    vcf: Path,
    model: str | None,
    out_dir: Path,
    formats: str,
    from_vcf: bool,
    fasta: Path | None,
    genes_path: Path | None,
    genome: str | None,
    top: int,
    coverage_top: int,
    hub_email: str | None,
    batch_size: int,
    device: str,
    bf16: bool,
    check_ref: str,
    progress: bool,
) -> None:
    """Genome-browser tracks of variant scores: bigWig/bedGraph, BED9, IGV session, UCSC hub."""
    from varscore.scoring.tracks import make_tracks

    result = make_tracks(
        vcf,
        out_dir,
        model=model,
        formats=formats,
        from_vcf=from_vcf,
        fasta=fasta,
        genes_path=genes_path,
        genome=genome,
        top=top,
        coverage_top=coverage_top,
        hub_email=hub_email,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        check_ref=check_ref,
        progress=progress and sys.stderr.isatty(),
    )
    for line in result.lines:
        click.echo(line, err=True)
    click.echo(
        f"wrote {len(result.files)} track files to {result.out_dir}; open {result.session} in IGV"
        + (
            f", or load {result.trackdb.parent / 'hub.txt'} in UCSC"
            if (result.out_dir / "hub.txt").exists() and result.trackdb
            else ""
        )
    )


@cli.command("plugins")
def plugins_command() -> None:
    """List installed plugins and what each registers."""
    from varscore.plugin.manager import manager

    for name in manager.plugin_names():
        provided = manager.provided_by(name)
        details = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in provided.items())
        click.echo(f"{name}\t{details or '(registers nothing)'}")


@cli.group("plugin")
def plugin_group() -> None:
    """Start a new plugin package (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["backbone", "genotype-backbone", "output-mode", "annotator"]),
    default="backbone",
    show_default=True,
    help="What the plugin registers.",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to create varscore-NAME/ in.",
)
@click.option("--force", is_flag=True, help="Write into an existing non-empty varscore-NAME/.")
@writes(("out_dir", "-o", "folder"))
def plugin_new(name: str, kind: str, out_dir: Path, force: bool) -> None:
    """Write a pip-installable plugin skeleton varscore-NAME/ with passing tests."""
    from varscore.plugin.template import write_plugin

    made = write_plugin(name, out_dir, kind=kind, force=force)
    for relative in made.files:
        click.echo(f"wrote {made.directory / relative}")
    click.echo(f"next: pip install -e {made.directory} && python -m pytest {made.directory / 'tests'}")


@cli.group()
def models() -> None:
    """List, inspect, install and create model bundles."""


@models.command("list")
def models_list() -> None:
    """Model bundles found on the search path."""
    from varscore.models.bundle import list_models, search_path

    found = list_models()
    if not found:
        dirs = ", ".join(str(d) for d in search_path())
        click.echo(f"No model bundles found (searched {dirs}).", err=True)
    for name, path in found:
        click.echo(f"{name}\t{path}")


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def models_info(name: str, as_json: bool) -> None:
    """Summarise a bundle: backbone, size, window, genes, build, output mode, metrics, provenance."""
    import json

    from varscore.models.bundle import load_bundle, summarise_bundle

    bundle = load_bundle(name)
    click.echo(json.dumps(bundle.manifest, indent=2) if as_json else summarise_bundle(bundle))


@models.command("install")
@click.argument("source")
@click.option("--sha256", "expected", help="Expected sha256 of weights.safetensors.")
@click.option("--name", help="Install under this plain name (letters, digits, . _ -; default: the directory name).")
def models_install(source: str, expected: str | None, name: str | None) -> None:
    """Copy a bundle directory into the user cache after validating it as loading does (manifest,
    every file's sha256, regular files only, backbone and weights)."""
    from varscore.models.bundle import install_bundle

    dest = install_bundle(source, expected, name)
    click.echo(f"installed {dest}")


@models.command("calibrate")
@click.argument("name")
@click.option(
    "--vcf",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Background variants (e.g. common SNVs of a 1000 Genomes VCF).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a calibrated copy of the bundle here (default: update the bundle in place).",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA [the bundle's].")
@click.option("--tracks", default="all", show_default=True, help="Tracks: all, indices or a pattern over --targets.")
@click.option("--targets", type=click.Path(dir_okay=False, path_type=Path), help="Targets file naming the tracks.")
@click.option("--gtf", type=click.Path(dir_okay=False, path_type=Path), help="GTF/GFF3 for gene-level backgrounds.")
@click.option("--stats", default="SUM,logSUM,D1,D2", show_default=True, help="Statistics to calibrate.")
@click.option("--centring", type=click.Choice(["exact", "tiled"]), default="exact", show_default=True)
@click.option("--tile-bins", type=click.IntRange(min=1), help="--centring tiled: tile width in output bins.")
@click.option("--max-variants", type=click.IntRange(min=1), help="Use only the first N scorable records.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@writes(("output", "-o", "bundle"))
def models_calibrate(
    name: str,
    vcf: Path,
    output: Path | None,
    fasta: Path | None,
    tracks: str,
    targets: Path | None,
    gtf: Path | None,
    stats: str,
    centring: str,
    tile_bins: int | None,
    max_variants: int | None,
    batch_size: int,
    device: str,
) -> None:
    """Score background variants and store |score| quantiles in the bundle (annotate adds VARSCORE_Q)."""
    from varscore.io.outputguard import Target, guarded_outputs
    from varscore.models.bundle import resolve_model
    from varscore.scoring.variant_mode import calibrate_model

    bundle_path = resolve_model(name)
    in_place = [] if output else [Target("NAME (in place)", bundle_path, directory=True)]  # -o: guarded by @writes
    with guarded_outputs(in_place, [bundle_path, vcf, fasta, targets, gtf], in_place=[bundle_path]):
        path, calibration, summary = calibrate_model(
            name,
            vcf,
            output=output,
            fasta=fasta,
            tracks=tracks,
            targets=targets,
            gtf=gtf,
            stats=stats,
            centring=centring,
            tile_bins=tile_bins,
            batch_size=batch_size,
            device=device,
            max_records=max_variants,
        )
    for line in summary.lines():
        click.echo(line, err=True)
    click.echo(f"calibrated {path} on {calibration.records} background records ({len(calibration.counts)} keys)")


@models.command("import")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["enformer", "borzoi"]),
    help="Checkpoint layout [from config.json's model_type].",
)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--name", help="Model name in the manifest [the output directory's name].")
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) to record (else pass --genes when annotating).",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA to record.")
@click.option("--genome-build", help="Genome build of the weights (e.g. hg38).")
@click.option("--window", type=int, help="Input window in bp [196608 Enformer, 524288 Borzoi].")
@click.option("--track", type=int, help="Output track scored [Enformer 4950 CAGE:blood; Borzoi 7531 RNA:blood].")
@click.option("--center-bins", type=int, help="Centre bins summed (stat center) [Enformer 3].")
@click.option(
    "--stat",
    type=click.Choice(["center", "SUM", "logSUM", "D1", "D2"]),
    help="Score statistic [Enformer center, Borzoi SUM].",
)
@click.option("--head", "output_head", default="human", show_default=True, help="Enformer output head.")
@click.option("--tf-gamma", is_flag=True, help="Enformer: TensorFlow's gamma positional features (196,608 bp only).")
@click.option(
    "--tracks",
    "tracks_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Track list to copy into the bundle [Borzoi: borzoi-pytorch's targets.txt].",
)
@click.option("--licence", help="Licence of the weights, recorded in the manifest.")
@click.option("--citation", help="How to cite the weights, recorded in the manifest.")
@writes(("output", "-o", "bundle"))
def models_import(
    directories: tuple[Path, ...],
    format_: str | None,
    output: Path,
    name: str | None,
    genes_path: Path | None,
    fasta: Path | None,
    genome_build: str | None,
    window: int | None,
    track: int | None,
    center_bins: int | None,
    stat: str | None,
    output_head: str,
    tf_gamma: bool,
    tracks_file: Path | None,
    licence: str | None,
    citation: str | None,
) -> None:
    """Make a bundle from published Enformer / Borzoi checkpoint directories (config.json +
    model.safetensors or pytorch_model.bin); several directories make a replicate ensemble."""
    from varscore.models.checkpoints import ImportOptions, import_checkpoints

    options = ImportOptions(
        name=name or output.name,
        window_size=window,
        output_head=output_head,
        use_tf_gamma=tf_gamma,
        track=track,
        center_bins=center_bins,
        stat=stat,
        genes_path=genes_path,
        reference_fasta=fasta,
        genome_build=genome_build,
        tracks_file=tracks_file,
        licence=licence,
        citation=citation,
    )
    bundle = import_checkpoints(list(directories), output, options, format=format_)
    click.echo(f"wrote {bundle} ({len(directories)} replicate{'s' if len(directories) > 1 else ''})")


@models.command("fetch")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Bundle directory [the user model cache].")
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table to record in the bundle.",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA to record.")
@click.option("--window", type=int, help="Input window in bp [the model's published one].")
@click.option("--endpoint", help="Hub server [HF_ENDPOINT, else https://huggingface.co].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Hub cache [HF_HUB_CACHE].")
@click.option(
    "--pretrained-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a config.json + model.safetensors directory here, for 'finetune --pretrained'.",
)
@click.option(
    "--max-file-size",
    metavar="SIZE",
    help="Largest file to download, e.g. 12G (K/M/G/T = powers of 1024) [the size the registry records, else 8G].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds without data before a download stops [HF_HUB_DOWNLOAD_TIMEOUT, else 30].",
)
@click.option("--list", "list_", is_flag=True, help="List the known published models and exit.")
@writes(("output", "-o", "bundle"), ("pretrained_dir", "--pretrained-dir", "folder"))
def models_fetch(
    name: str | None,
    output: Path | None,
    genes_path: Path | None,
    fasta: Path | None,
    window: int | None,
    endpoint: str | None,
    cache_dir: Path | None,
    pretrained_dir: Path | None,
    max_file_size: str | None,
    timeout: float | None,
    list_: bool,
) -> None:
    """Download a published model (pinned revision, every file's sha256 verified) and import it.
    HF_HUB_OFFLINE=1 uses the Hub cache only; --list shows the known models."""
    from varscore.io.download import parse_size
    from varscore.models.hub import fetch_model, registry

    if list_ or not name:
        if not list_:
            raise click.UsageError("name a model to fetch (see 'varscore models fetch --list').")
        for key, entry in sorted(registry().items()):
            click.echo(f"{key}\t{entry.get('description', '')}")
        return
    bundle = fetch_model(
        name,
        output,
        endpoint=endpoint,
        cache_dir=cache_dir,
        genes_path=genes_path,
        reference_fasta=fasta,
        window_size=window,
        max_bytes=parse_size(max_file_size) if max_file_size else None,
        timeout=timeout,
    )
    click.echo(f"wrote {bundle}; score with --model {bundle if output else name}")
    if pretrained_dir is not None:
        from varscore.models.checkpoints import write_pretrained_dir

        click.echo(
            f"wrote {write_pretrained_dir(bundle, pretrained_dir)}; fine-tune with --pretrained {pretrained_dir}"
        )


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    import json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE; got '{item}'", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _cohort_options(func: Any) -> Any:
    options = [
        click.option(
            "--vcf",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Cohort genotypes (VCF/BCF, indexed for speed).",
        ),
        click.option(
            "--expression",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="GTEx-layout expression: #chr start end gene_id, then one column per person.",
        ),
        click.option(
            "--genes",
            "genes_path",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Gene/TSS table (TSV, GTF or GFF3).",
        ),
        click.option(
            "--fasta", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA."
        ),
        click.option(
            "--folds",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Fold file (person, replicate, split); default: made with --seed and saved.",
        ),
        click.option("--replicate", default=0, show_default=True, help="Which replicate fold to use."),
        click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_cohort_options
@click.option("--backbone", default="enformer", show_default=True, help="Architecture (see 'varscore plugins').")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Bundle directory to write (training files go to OUTPUT.training/).",
)
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), help="The paper's settings for a tissue.")
@click.option(
    "--pretrained",
    type=click.Path(file_okay=False, path_type=Path),
    help="Start from a pre-trained Enformer or Borzoi in this local directory.",
)
@click.option("--param", "params", multiple=True, help="Backbone hyper-parameter KEY=VALUE (JSON value).")
@click.option("--window", type=int, help="Input window in bp [recipe or backbone default].")
@click.option("--lr", type=float, help="Learning rate [5e-6].")
@click.option("--batch-size", type=int, help="People per batch (one gene per batch) [32].")
@click.option("--accumulate", type=int, help="Gradient accumulation batches [4].")
@click.option("--max-epochs", type=int, help="Maximum epochs [100].")
@click.option("--patience", type=int, help="Early-stopping patience in epochs [20].")
@click.option("--people-per-epoch", type=int, help="People per gene per epoch [512].")
@click.option(
    "--freeze-batchnorm",
    is_flag=True,
    help="Re-estimate batch-norm statistics over train people of all genes, then keep them fixed "
    "(batch norms in eval mode) while fine-tuning.",
)
@click.option(
    "--output-mode",
    type=click.Choice(["scalar", "track"]),
    default="scalar",
    show_default=True,
    help="scalar: one expression value per person; track: per-person coverage over the window's bins "
    "(needs --coverage).",
)
@click.option(
    "--coverage",
    type=click.Path(path_type=Path),
    help="Track mode: coverage.npz (varscore simulate --coverage) or a directory of PERSON.bw bigWigs.",
)
@click.option(
    "--track-loss", type=click.Choice(["poisson", "mse"]), default="poisson", show_default=True, help="Track-mode loss."
)
@click.option(
    "--freeze-trunk-epochs",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Train only the new output layer for this many epochs, then all layers (the paper's Borzoi: 5).",
)
@click.option(
    "--score-stat",
    type=click.Choice(["SUM", "logSUM", "D1", "D2"]),
    default="SUM",
    show_default=True,
    help="Track mode: the statistic 'annotate' reports for a variant (alt vs ref predicted coverage).",
)
@click.option("--devices", default=1, show_default=True, help="Devices (GPUs, or CPU processes) for DDP.")
@click.option("--accelerator", default="auto", show_default=True, help="auto, cpu, gpu.")
@click.option("--seed", default=0, show_default=True, help="Seed for folds, sampling and initialisation.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.training/checkpoints/last.ckpt.")
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Train from random weights at the backbone's full default size (without --pretrained or size --param values).",
)
@click.option(
    "--smooth-epochs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Early stopping and the kept epoch follow tune R2 averaged over this many epochs (eligible once that many have run).",
)
@click.option(
    "--workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Data-loader worker processes building batches while the model trains.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--replicates",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Train this many replicate folds (from --replicate on) and save them as one ensemble bundle, "
    "scored by the replicates' mean (training files in OUTPUT.training/replicateN/).",
)
@click.option(
    "--init-from",
    "init_from",
    help="Start from the weights of this model bundle (name or directory) of the same architecture, e.g. to "
    "continue a model with another head pooling or on more genes.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
@writes(("output", "-o", "bundle"))
def finetune(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    backbone: str,
    output: Path,
    recipe: str | None,
    pretrained: Path | None,
    params: tuple[str, ...],
    window: int | None,
    lr: float | None,
    batch_size: int | None,
    accumulate: int | None,
    max_epochs: int | None,
    patience: int | None,
    people_per_epoch: int | None,
    freeze_batchnorm: bool,
    output_mode: str,
    coverage: Path | None,
    track_loss: str,
    freeze_trunk_epochs: int,
    score_stat: str,
    devices: int,
    accelerator: str,
    seed: int,
    resume: bool,
    from_scratch: bool,
    smooth_epochs: int,
    workers: int,
    progress: bool,
    quiet: bool,
    replicates: int = 1,
    init_from: str | None = None,
) -> None:
    """Fine-tune a sequence model on personal genomes + expression (Variformer), or fit a linear
    baseline per gene on the same folds (--backbone elastic-net, lasso, ridge)."""
    from varscore.training.finetune import FinetuneJob, OptionError, run_finetune
    from varscore.training.lightning import CohortInputs

    inputs = CohortInputs(
        vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None, coverage=coverage
    )
    job = FinetuneJob(
        inputs,
        output,
        backbone=backbone,
        backbone_params=_parse_params(params),
        recipe=recipe,
        pretrained=pretrained,
        settings={
            "window": window,
            "lr": lr,
            "batch_size": batch_size,
            "accumulate": accumulate,
            "max_epochs": max_epochs,
            "patience": patience,
            "people_per_epoch": people_per_epoch,
        },
        training={
            "devices": devices,
            "accelerator": accelerator,
            "freeze_batchnorm": freeze_batchnorm,
            "track_loss": track_loss,
            "freeze_trunk_epochs": freeze_trunk_epochs,
            "smooth_epochs": smooth_epochs,
            "num_workers": workers,
            "resume": resume,
            "progress": progress and not quiet and sys.stderr.isatty(),
        },
        output_mode=output_mode,
        score_stat=score_stat,
        seed=seed,
        from_scratch=from_scratch,
        replicates=replicates,
        quiet=quiet,
        init_from=init_from,
    )
    try:
        run_finetune(job, echo=_echo_stderr, announce=click.echo)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from exc


def _echo_stderr(line: str) -> None:
    click.echo(line, err=True)


@cli.command()
@_cohort_options
@click.option(
    "-m",
    "--model",
    "models_",
    required=True,
    multiple=True,
    help="Model bundle (repeat, or use --compare, to put models side by side).",
)
@click.option("--compare", multiple=True, help="Other bundles evaluated on the same people.")
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with one held-out person per line (default: the first model's test people).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the per-gene TSV here.")
@click.option("--batch-size", default=8, show_default=True)
@click.option(
    "--coverage",
    type=click.Path(path_type=Path),
    help="Observed coverage (coverage.npz or a bigWig folder), for coverage-track models.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bootstrap resamples of the held-out people for the 95% CIs.",
)
@click.option("--bootstrap-seed", default=0, show_default=True, help="Seed of the bootstrap resamples.")
@click.option(
    "--replicates",
    is_flag=True,
    help="The -m models are fits on different fold replicates: each is evaluated on its own test "
    "people and the summary gives mean ± sd over replicates.",
)
@writes(("output", "-o", "file"))
def evaluate(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    models_: tuple[str, ...],
    compare: tuple[str, ...],
    people_file: Path | None,
    output: Path | None,
    batch_size: int,
    coverage: Path | None,
    n_boot: int,
    bootstrap_seed: int,
    replicates: bool,
) -> None:
    """Per-gene R2 and Pearson r across held-out people (HOP: train genes, HOGP: other genes), with
    bootstrap 95% CIs over the people (r2_lo/r2_hi, pearson_lo/pearson_hi) and Pearson's two-sided
    p-value (pearson_p). With --compare, the paired difference of each compared model from the first
    (same people, same resamples) with its CI, written to OUTPUT's .compare.tsv beside it.

    Coverage-track models (finetune --output-mode track; give --coverage) also get, per gene, the mean
    per-bin Pearson r across people (bin_pearson) and the coefficient of variation across people of
    observed and predicted coverage (cov_observed, cov_predicted, and cov_pearson between the two)."""
    import pandas as pd

    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import held_out_people
    from varscore.training.evaluate import compare_evaluations, evaluate_bundle
    from varscore.training.lightning import CohortInputs, load_cohort
    from varscore.training.uncertainty import replicate_summary, summarise

    bundles = [load_bundle(m) for m in (*models_, *compare)]
    first = bundles[0]
    carried = first.carried_folds()
    if folds is None and carried is not None:
        folds, replicate = carried
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None)
    evaluations = []
    cohort_by_window: dict[tuple[int, int], Any] = {}
    for bundle in bundles:
        window = bundle.window_size
        track_model = bundle.spec.output_mode.name == "track"
        if track_model and coverage is None:
            raise InputError(f"Model '{bundle.name}' predicts coverage tracks: pass --coverage to evaluate it.")
        bins = int(bundle.spec.bin_size or 1) if track_model else 0
        if (window, bins) not in cohort_by_window:
            cohort_by_window[(window, bins)] = load_cohort(
                CohortInputs(**{**inputs.__dict__, "coverage": coverage if track_model else None}),
                window,
                bin_size=bins or None,
            )
        data = cohort_by_window[(window, bins)].data
        own = bundle if replicates and bundle.name in {b.name for b in bundles[: len(models_)]} else first
        wanted = held_out_people(own, people_file, [data.people[i] for i in data.test], data.people)
        index = {p: i for i, p in enumerate(data.people)}
        evaluations.append(
            evaluate_bundle(bundle, data, [index[p] for p in wanted], batch_size, n_boot, bootstrap_seed)
        )
    table = pd.concat([e.table for e in evaluations], ignore_index=True)
    paired = [compare_evaluations(evaluations[0], e, n_boot, bootstrap_seed) for e in evaluations[len(models_) :]]
    paired_table = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    if output:
        from varscore.io.outputguard import atomic_file, write_provenance_sidecar

        with atomic_file(output) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
        write_provenance_sidecar(output, first, ["varscore", *sys.argv[1:]], {"models": [b.name for b in bundles]})
        if not paired_table.empty:
            with atomic_file(output.with_suffix(".compare.tsv")) as tmp:
                paired_table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
    shown = [
        "model",
        "gene",
        "set",
        "people",
        "r2",
        "r2_lo",
        "r2_hi",
        "pearson",
        "pearson_lo",
        "pearson_hi",
        "pearson_p",
    ]
    click.echo(table[[c for c in shown if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    summary = summarise(table)
    click.echo(
        f"\nmean per model and gene set (over genes; r2_n/pearson_n genes used, *_nan genes NaN = constant "
        f"predictions; CIs: {n_boot} bootstrap resamples of people, seed {bootstrap_seed}):\n"
        + summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    if not paired_table.empty:
        click.echo(
            f"\npaired difference from {first.name} (model minus {first.name}; 95% bootstrap CI):\n"
            + paired_table[
                ["model", "gene", "people", "d_r2", "d_r2_lo", "d_r2_hi", "d_pearson", "d_pearson_lo", "d_pearson_hi"]
            ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )
    if replicates:
        reps = table[table["model"].isin([b.name for b in bundles[: len(models_)]])]
        if reps["replicate"].nunique() < 2:
            raise InputError("--replicates needs -m models fitted on at least 2 different fold replicates.")
        click.echo(
            "\nover fold replicates (mean ± sd of the per-replicate means over genes):\n"
            + replicate_summary(reps).to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )


@cli.command("plot-coverage")
@_cohort_options
@click.option("-m", "--model", required=True, help="Coverage-track model bundle (finetune --output-mode track).")
@click.option(
    "--coverage",
    required=True,
    type=click.Path(path_type=Path),
    help="Observed coverage: coverage.npz or a directory of PERSON.bw bigWigs.",
)
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with one held-out person per line (default: the model's test people).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@writes(("output", "-o", "file"))
def plot_coverage_command(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    model: str,
    coverage: Path,
    people_file: Path | None,
    output: Path,
    batch_size: int,
) -> None:
    """Heat map of observed vs predicted coverage (held-out people x bins) for one gene (--gene), with
    the coefficient of variation across people; people ranked by observed coverage at the TSS."""
    import numpy as np

    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import held_out_people
    from varscore.training.evaluate import CoverageComparison, columnwise_pearson, compare_coverage, plot_coverage
    from varscore.training.lightning import CohortInputs, load_cohort

    bundle = load_bundle(model)
    if bundle.spec.output_mode.name != "track":
        raise InputError(f"Model '{bundle.name}' does not predict coverage tracks (finetune --output-mode track).")
    if len(gene_names) > 1:
        raise InputError(f"plot-coverage draws one gene; got --gene {len(gene_names)} times.")
    carried = bundle.carried_folds()
    if folds is None and carried is not None:
        folds, replicate = carried
    wanted_genes = list(gene_names) or [bundle.genes[0].gene_id]
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, wanted_genes, coverage=coverage)
    data = load_cohort(inputs, bundle.window_size, bin_size=int(bundle.spec.bin_size or 1)).data
    wanted = held_out_people(bundle, people_file, [data.people[i] for i in data.test], data.people)
    index = {p: i for i, p in enumerate(data.people)}
    comparison = compare_coverage(bundle, bundle.backbone(), data, 0, np.array([index[p] for p in wanted]), batch_size)
    plot_coverage(comparison, output)
    cov_obs, cov_pred = CoverageComparison.cov(comparison.observed), CoverageComparison.cov(comparison.predicted)
    both = np.isfinite(cov_obs) & np.isfinite(cov_pred)
    cov_r = columnwise_pearson(cov_obs[both, None], cov_pred[both, None])[0] if both.sum() > 2 else float("nan")
    click.echo(
        f"wrote {output}: {comparison.gene}, {len(wanted)} people x {comparison.observed.shape[1]} bins; "
        f"mean per-bin Pearson r {np.nanmean(comparison.bin_pearson):.3f}, CoV profile Pearson r {cov_r:.3f}"
    )


# --- linear baselines ---


# --- variant analyses ---


def _analysis_options(func: Any) -> Any:
    options = [
        click.option("-m", "--model", required=True, help="Model bundle name or directory."),
        click.option(
            "--vcf",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Cohort VCF/BCF (indexed): its SNVs are scored and give MAFs and genotypes.",
        ),
        click.option(
            "--fasta",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Reference FASTA (default: the one recorded in the model bundle).",
        ),
        click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable; default: all)."),
        click.option(
            "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Sequences per forward pass."
        ),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _analysis_inputs(
    model: str, vcf: Path | None, fasta: Path | None, gene_names: tuple[str, ...], device: str, need_vcf: bool = True
) -> Any:
    """Bundle, scorer, genome, chosen genes and (when a VCF is given) their variants."""
    from types import SimpleNamespace

    from varscore.analysis.ism import ModelScorer, read_gene_variants
    from varscore.errors import InputError
    from varscore.genome.fasta import Genome
    from varscore.models.bundle import load_bundle

    bundle = load_bundle(model)
    fasta = bundle.resolve_reference(fasta)
    if vcf is None and need_vcf:
        raise InputError("This analysis needs the cohort's genotypes: pass --vcf.")
    genes = bundle.genes
    if gene_names:
        wanted = set(gene_names)
        genes = [g for g in genes if g.gene_id in wanted or g.name in wanted]
        unknown = wanted - {g.gene_id for g in genes} - {g.name for g in genes}
        if unknown:
            known = ", ".join(g.label for g in bundle.genes[:10])
            raise InputError(f"Model '{bundle.name}' has no gene {', '.join(sorted(unknown))} (it has {known}).")
    if not genes:
        raise InputError(f"Model '{bundle.name}' lists no genes.")
    scorer = ModelScorer.from_bundle(bundle, device=device)
    genome = Genome(fasta)
    variants = read_gene_variants(vcf, genes, genome, scorer.window_size) if vcf is not None else None
    return SimpleNamespace(bundle=bundle, scorer=scorer, genome=genome, genes=genes, variants=variants)


def _write_table(table: Any, output: Path) -> None:
    from varscore.io.outputguard import atomic_file, write_provenance_sidecar
    from varscore.models.bundle import load_bundle

    with atomic_file(output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    model = click.get_current_context().params.get("model")  # provenance in OUTPUT.provenance.json
    write_provenance_sidecar(output, load_bundle(model) if model else None, ["varscore", *sys.argv[1:]])


@cli.command()
@_analysis_options
@click.option("--saturation", is_flag=True, help="Every position of the window × 3 alternative bases.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@click.option(
    "--track",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-position ISM as a track: .bedGraph, or .bw (bigWig).",
)
@writes(("output", "-o", "file"), ("track", "--track", "file"))
def ism(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    saturation: bool,
    output: Path,
    track: Path | None,
) -> None:
    """In-silico mutagenesis of each gene's window: observed SNVs (--vcf) or all (--saturation)."""
    from varscore.analysis.ism import alleles_to_score, ism_table, write_ism_track
    from varscore.errors import InputError

    if vcf is None and not saturation:
        raise InputError("Give --vcf (score the cohort's SNVs) or --saturation (every position × 3 bases).")
    run = _analysis_inputs(model, vcf, fasta, gene_names, device, need_vcf=False)
    import pandas as pd
    from tqdm.auto import tqdm

    parts = []
    total = alleles_to_score(run.scorer, run.genes, run.variants, saturation)
    with tqdm(total=total, desc="ISM", unit="allele", disable=not (progress and sys.stderr.isatty())) as bar:
        for gene in run.genes:
            variants = run.variants[gene.gene_id] if run.variants is not None else None
            parts.append(
                ism_table(
                    run.scorer,
                    gene,
                    run.genome,
                    variants,
                    saturation=saturation,
                    batch_size=batch_size,
                    advance=bar.update,
                )
            )
    table = pd.concat(parts, ignore_index=True)
    if vcf is None:
        table = table.drop(columns=["maf"])
    _write_table(table.drop(columns=["key"]), output)
    click.echo(f"wrote {output} ({len(table):,} substitutions, {len(run.genes)} genes)", err=True)
    if track is not None:
        write_ism_track(table, track, run.genome.lengths)
        click.echo(f"wrote {track}", err=True)


@cli.command()
@_analysis_options
@click.option("--linear", help="Elastic-net bundle: k per gene = its number of non-zero coefficients.")
@click.option("--k", "k", type=click.IntRange(min=1), help="The same k for every gene (instead of --linear).")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: report enrichment for causal variants.",
)
@click.option(
    "--controls",
    "controls_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the matched control variants (±2.5 kb distance to TSS, MAF within 0.5%).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@writes(("output", "-o", "file"), ("controls_out", "--controls", "file"))
def hsv(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    linear: str | None,
    k: int | None,
    truth: Path | None,
    controls_out: Path | None,
    output: Path,
) -> None:
    """High-scoring variants: per gene the k SNVs with the largest |ISM|."""
    from varscore.analysis.hsv import (
        HSV_MAF_TOLERANCE,
        causal_enrichment,
        high_scoring_variants,
        k_from_linear,
        matched_controls,
        read_truth,
        sign_agreement,
        weight_pairs,
    )
    from varscore.analysis.ism import ModelScorer, score_genes
    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle

    if (linear is None) == (k is None):
        raise InputError("Give exactly one of --linear BUNDLE (k = its non-zero coefficients per gene) or --k N.")
    causal = read_truth(str(truth)) if truth is not None else None  # checked before anything is written
    run = _analysis_inputs(model, vcf, fasta, gene_names, device)
    ism_scores = score_genes(
        run.scorer, run.variants, run.genome, batch_size=batch_size, progress=progress and sys.stderr.isatty()
    )
    if linear is not None:
        linear_scorer = ModelScorer.from_bundle(load_bundle(linear))
        per_id = k_from_linear(linear_scorer.backbone)
        k_by_gene: dict[str, int] | int = {g.label: per_id[g.gene_id] for g in run.genes if g.gene_id in per_id}
    else:
        k_by_gene = int(k)  # type: ignore[arg-type]
    table = high_scoring_variants(ism_scores, k_by_gene)
    _write_table(table.drop(columns=["key"]), output)
    click.echo(f"wrote {output} ({len(table)} HSVs in {table['gene'].nunique()} genes)", err=True)
    controls = matched_controls(table, ism_scores, HSV_MAF_TOLERANCE)
    if controls_out is not None:
        _write_table(controls.drop(columns=["key"]), controls_out)
    if linear is not None:
        pairs = weight_pairs(linear_scorer, run.genes, ism_scores, only_nonzero=True)
        agree = sign_agreement(pairs["model_weight"].to_numpy(), pairs["linear_weight"].to_numpy())
        from varscore.analysis.matched import describe_p

        cut = f"|ISM| > {agree.threshold:.3g} and |weight| > {agree.linear_threshold:.3g}, each model's median"
        if agree.n:
            click.echo(
                f"sign agreement with {linear_scorer.name} ({cut}): {agree.agree}/{agree.n} = "
                f"{agree.fraction:.1%} (Fisher's exact test, {describe_p(agree.p_value, agree.n)})"
            )
        else:
            click.echo(
                f"sign agreement with {linear_scorer.name}: no variant has both weights above the thresholds "
                f"({cut}; the linear model has no non-zero weight on the scored variants)"
            )
    if causal is not None:
        result = causal_enrichment(table, controls, causal)
        click.echo(
            f"causal variants: {result.selected_causal}/{result.selected} HSVs vs {result.controls_causal}/"
            f"{result.controls} matched controls; odds ratio {result.odds_ratio:.2f}, "
            f"one-sided Fisher p = {result.p_value:.3g}"
        )
        _echo_matched_enrichment(table, ism_scores, causal, HSV_MAF_TOLERANCE)


def _echo_matched_enrichment(selected: Any, pool: Any, causal: Any, tolerance: float) -> None:
    """The permutation test over matched control sets and its dependence on the MAF tolerance."""
    from varscore.analysis.matched import permutation_enrichment, tolerance_sensitivity

    perm = permutation_enrichment(selected, pool, causal, tolerance)
    click.echo(
        f"{perm.test} ({perm.n_perm} draws, {perm.controls_per_variant} control per variant; matching: "
        f"{perm.rule}): {perm.observed} causal among {perm.matched} matched variants (of {perm.selected}) vs "
        f"{perm.null_mean:.2f} expected; {perm.describe()}"
    )
    click.echo(
        "dependence on the MAF tolerance:\n"
        + tolerance_sensitivity(selected, pool, causal).to_string(index=False, float_format=lambda v: f"{v:.3g}")
    )


@cli.command()
@_analysis_options
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Held-out people, one per line (default: the model's recorded test people).",
)
@click.option("--min-gain", default=0.05, show_default=True, help="Least rise of the explained fraction per driver.")
@click.option("--alpha", default=0.01, show_default=True, help="One-sided p threshold, divided by the variant count.")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: report recall and enrichment of causal variants.",
)
@click.option(
    "--summary",
    "summary_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-gene summary TSV (explained fraction, mean LD of drivers).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@writes(("output", "-o", "file"), ("summary_out", "--summary", "file"))
def drivers(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    people_file: Path | None,
    min_gain: float,
    alpha: float,
    truth: Path | None,
    summary_out: Path | None,
    output: Path,
) -> None:
    """Driver variants: forward selection of SNVs whose genotype × ISM approximates the model's
    predictions in held-out people."""
    from varscore.analysis.drivers import find_drivers
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, causal_enrichment, matched_controls, read_truth
    from varscore.analysis.ism import held_out_people, score_genes

    run = _analysis_inputs(model, vcf, fasta, gene_names, device)
    people = held_out_people(run.bundle, people_file)
    show = progress and sys.stderr.isatty()
    ism_scores = score_genes(run.scorer, run.variants, run.genome, batch_size=batch_size, progress=show)
    table, summary = find_drivers(
        run.scorer,
        run.variants,
        ism_scores,
        people,
        min_gain=min_gain,
        alpha=alpha,
        batch_size=batch_size,
        progress=show,
    )
    _write_table(table.drop(columns=["key"]) if len(table) else table, output)
    if summary_out is not None:
        _write_table(summary, summary_out)
    click.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(summary) and summary["mean_ld"].isna().any():
        from varscore.analysis.drivers import LD_NAN_REASON

        click.echo(f"({LD_NAN_REASON}: {int(summary['mean_ld'].isna().sum())} of {len(summary)} genes)")
    if truth is not None and len(table):
        causal = read_truth(str(truth))
        found = sum((g, k) in causal for g, k in zip(table["gene"], table["key"], strict=True))
        result = causal_enrichment(table, matched_controls(table, ism_scores, DRIVER_MAF_TOLERANCE), causal)
        click.echo(
            f"causal variants: {found}/{len(table)} drivers; {result.controls_causal}/{result.controls} "
            f"matched controls; one-sided Fisher p = {result.p_value:.3g}"
        )
        _echo_matched_enrichment(table, ism_scores, causal, DRIVER_MAF_TOLERANCE)


@cli.command()
@_analysis_options
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="People for the personal-genome attribution, one per line (default: the model's test people).",
)
@click.option("--reference-only", is_flag=True, help="Only the reference-sequence attribution.")
@click.option(
    "--variants",
    "variants_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An 'hsv' or 'drivers' TSV: compare their attributions with matched control variants.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Per-position TSV: chrom, pos, gene, reference, personal (standardised attributions).",
)
@writes(("output", "-o", "file"))
def attribute(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    people_file: Path | None,
    reference_only: bool,
    variants_file: Path | None,
    output: Path,
) -> None:
    """Gradient × input on the reference and on personal genomes (mean over people), |·| max over
    bases, z-scored along the window."""
    import pandas as pd
    from tqdm.auto import tqdm

    from varscore.analysis.attribution import attribute_gene, attribution_table
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, HSV_MAF_TOLERANCE, matched_controls
    from varscore.analysis.ism import held_out_people
    from varscore.errors import InputError

    run = _analysis_inputs(model, vcf, fasta, gene_names, device)
    people = None if reference_only else held_out_people(run.bundle, people_file)
    results = {}
    for gv in tqdm(
        list(run.variants.values()), desc="attribution", unit="gene", disable=not (progress and sys.stderr.isatty())
    ):
        rows = gv.people_rows(people) if people else None
        results[gv.gene.label] = attribute_gene(run.scorer, gv, rows, batch_size=batch_size)
    _write_table(pd.concat([attribution_table(a) for a in results.values()], ignore_index=True), output)
    click.echo(f"wrote {output}", err=True)
    if variants_file is None:
        return
    chosen = pd.read_csv(variants_file, sep="\t")
    missing = {"chrom", "pos", "ref", "alt", "gene"} - set(chosen.columns)
    if missing:
        raise InputError(f"{variants_file} lacks columns {', '.join(sorted(missing))}: give an 'hsv' or 'drivers' TSV.")
    chosen["key"] = (
        chosen["chrom"].astype(str) + ":" + chosen["pos"].astype(str) + ":" + chosen["ref"] + ":" + chosen["alt"]
    )
    chosen = chosen[chosen["gene"].isin(results)]
    pool = pd.concat([gv.table for gv in run.variants.values()], ignore_index=True)
    tolerance = DRIVER_MAF_TOLERANCE if "driver_rank" in chosen.columns else HSV_MAF_TOLERANCE
    controls = matched_controls(chosen, pool, tolerance)
    which = "reference" if reference_only else "personal"
    for label, frame in (("selected", chosen), ("controls", controls.drop_duplicates(["gene", "key"]))):
        values = (
            pd.concat([pd.Series(results[g].at(rows["pos"].to_numpy(), which)) for g, rows in frame.groupby("gene")])
            if len(frame)
            else pd.Series(dtype=float)
        )
        click.echo(f"{label}: {len(frame)} variants, mean standardised attribution ({which}) {values.mean():.3f}")


@cli.command()
@click.option("-m", "--model", required=True, help="Model bundle to report on.")
@click.option("--compare", multiple=True, help="Other bundles shown beside it (repeatable).")
@click.option("--linear", help="Elastic-net bundle for k per gene and sign agreement [first linear --compare].")
@click.option("--vcf", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Cohort VCF/BCF (indexed).")
@click.option(
    "--expression",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="GTEx-layout expression BED of the same people.",
)
@click.option(
    "--genes",
    "genes_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3).",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA [the model's].")
@click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable).")
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Held-out people, one per line [the model's test people].",
)
@click.option("--k", "k", type=click.IntRange(min=1), help="HSVs per gene when there is no linear model [10].")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: enrichment of HSVs/drivers for causal variants.",
)
@click.option("--motifs", help="Motif source for motif-change marks and rates (JASPAR2024, or a motif file).")
@click.option("--chromhmm", type=click.Path(dir_okay=False, path_type=Path), help="ChromHMM segmentation BED.")
@click.option("--finemap", type=click.Path(dir_okay=False, path_type=Path), help="Fine-mapped eQTL table.")
@click.option(
    "--attribution",
    is_flag=True,
    help="Also compute gradient × input at HSVs/drivers vs controls (slow: one backward pass per person).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for index.html, the figures (PNG + PDF) and tables (TSV).",
)
@writes(("output", "-o", "folder"))
def report(
    model: str,
    compare: tuple[str, ...],
    linear: str | None,
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    people_file: Path | None,
    k: int | None,
    truth: Path | None,
    motifs: str | None,
    chromhmm: Path | None,
    finemap: Path | None,
    attribution: bool,
    batch_size: int,
    device: str,
    progress: bool,
    output: Path,
) -> None:
    """Figures of the paper for a model (and models to compare) on a cohort, in one HTML page."""
    from varscore.analysis.report import ReportConfig, build_report

    config = ReportConfig(
        model=model,
        vcf=vcf,
        expression=expression,
        genes=genes_path,
        fasta=fasta,
        out_dir=output,
        compare=list(compare),
        linear=linear,
        people_file=people_file,
        gene_names=list(gene_names) or None,
        k=k,
        truth=truth,
        motifs=motifs,
        chromhmm=chromhmm,
        finemap=finemap,
        attribution=attribution,
        batch_size=batch_size,
        device=device,
        progress=progress and sys.stderr.isatty(),
    )
    result = build_report(config)
    made = [f for f in result.figures if f.missing is None]
    click.echo(f"wrote {result.html} ({len(made)} figures)")
    for entry in result.figures:
        if entry.missing:
            click.echo(f"not produced: {entry.title}: {entry.missing}", err=True)


def main() -> None:
    try:
        cli.add_plugin_commands()
    except VarscoreError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli(prog_name="varscore")
