"""``varscore models``: list, info, install, calibrate, import, fetch."""

from __future__ import annotations

from pathlib import Path

import click

from varscore.cli.app import cli
from varscore.cli.options import input_vcf
from varscore.io.outputguard import writes


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
@input_vcf()
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a calibrated copy of the bundle here (default: update the bundle in place).",
)
@click.option(
    "--mode",
    type=click.Choice(["gene", "variant"]),
    default="gene",
    show_default=True,
    help="The scoring to calibrate, as annotate's --mode: gene (|DELTA| per gene of gene-window scoring) or variant "
    "(variant-centred scores). A bundle keeps one calibration of each.",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA [the bundle's].")
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode gene: gene/TSS table instead of the model's genes (annotate with the same).",
)
@click.option(
    "--tracks", default="all", show_default=True, help="--mode variant: all, indices or a pattern over --targets."
)
@click.option("--targets", type=click.Path(dir_okay=False, path_type=Path), help="--mode variant: targets file.")
@click.option("--gtf", type=click.Path(dir_okay=False, path_type=Path), help="--mode variant: GTF/GFF3 with exons.")
@click.option("--stats", default="SUM,logSUM,D1,D2", show_default=True, help="--mode variant: statistics to calibrate.")
@click.option(
    "--centring", type=click.Choice(["exact", "tiled"]), default="exact", show_default=True, help="--mode variant."
)
@click.option("--tile-bins", type=click.IntRange(min=1), help="--centring tiled: tile width in output bins.")
@click.option(
    "--max-variants", type=click.IntRange(min=1), help="Use only the first N scorable (gene: scored) records."
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@writes(("output", "-o", "bundle"))
def models_calibrate(
    name: str,
    vcf: Path,
    output: Path | None,
    mode: str,
    fasta: Path | None,
    genes_path: Path | None,
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
    """Score the background variants of VCF (e.g. common SNVs of a 1000 Genomes VCF) and store
    |score| quantiles in the bundle (annotate then adds VARSCORE_Q): per gene for gene-window
    scoring (--mode gene, the default), per scope, track and statistic for --mode variant."""
    from varscore.errors import InputError
    from varscore.io.outputguard import Target, guarded_outputs
    from varscore.models.bundle import resolve_model
    from varscore.scoring.gene_mode import GeneCalibrateJob, run_gene_calibration
    from varscore.scoring.variant_mode import CalibrateJob, run_calibration

    other = "variant" if mode == "gene" else "gene"
    given = _options_given(_VARIANT_ONLY if mode == "gene" else ("genes_path",))
    if given:
        what = f"{given[0]} applies" if len(given) == 1 else f"{', '.join(given)} apply"
        raise InputError(
            f"{what} to --mode {other} only (calibrating --mode {mode}): pass --mode {other}, or drop {'it' if len(given) == 1 else 'them'}."
        )
    bundle_path = resolve_model(name)
    in_place = [] if output else [Target("NAME (in place)", bundle_path, directory=True)]  # -o: guarded by @writes
    inputs = [bundle_path, vcf, fasta, genes_path, targets, gtf]
    with guarded_outputs(in_place, inputs, in_place=[bundle_path]):
        if mode == "gene":
            gene_job = GeneCalibrateJob(
                name, vcf, output, fasta, genes_path, batch_size, device=device, max_records=max_variants
            )
            lines = run_gene_calibration(gene_job).lines()
        else:
            job = CalibrateJob(
                model=name,
                vcf=vcf,
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
            lines = run_calibration(job).lines()
    *summary, closing = lines
    for line in summary:
        click.echo(line, err=True)
    click.echo(closing)


#: ``models calibrate`` options of variant-centred scoring only
_VARIANT_ONLY = ("tracks", "targets", "gtf", "stats", "centring", "tile_bins")


def _options_given(names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` (parameter names) given on the command line (or by environment)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [
        p.opts[-1]
        for p in ctx.command.params
        if p.name in names and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)
    ]


@models.command("import")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    metavar="NAME",
    help="Checkpoint format, one that a plugin registers (see 'varscore plugins') [from config.json].",
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
    """Make a bundle from published checkpoint directories (config.json + model.safetensors or
    pytorch_model.bin; plugins add formats, e.g. Enformer, Borzoi); several directories make a
    replicate ensemble."""
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
    from varscore.io.download import Limits, parse_size
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
        limits=Limits(max_bytes=parse_size(max_file_size) if max_file_size else None, timeout=timeout),
    )
    click.echo(f"wrote {bundle}; score with --model {bundle if output else name}")
    if pretrained_dir is not None:
        from varscore.models.checkpoints import write_pretrained_dir

        click.echo(
            f"wrote {write_pretrained_dir(bundle, pretrained_dir)}; fine-tune with --pretrained {pretrained_dir}"
        )
