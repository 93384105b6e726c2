"""Option groups and helpers shared by several commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
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


def old_spelling(name: str, flag: str, new: str, required: bool = False, **kwargs: Any) -> Callable[[Any], Any]:
    """A hidden option ``flag`` (an old spelling, kept for one release) that fills the parameter
    ``name`` (spelled ``new`` now); ``required``: one of the two must be given. Declare the new
    parameter ``required=False``: this check replaces click's."""
    hidden = f"{name}__old_spelling"

    def decorate(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **values: Any) -> Any:
            old = values.pop(hidden, None)
            given = click.get_current_context().get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
            if old not in (None, ()):
                if given:
                    raise click.UsageError(f"{flag} is the old spelling of {new}: give it once.")
                values[name] = old
            elif required and not given and values.get(name) in (None, ()):
                raise click.UsageError(f"Missing {new}.")
            return func(*args, **values)

        return click.option(flag, hidden, hidden=True, **kwargs)(wrapper)

    return decorate


def input_vcf(required: bool = True, old_flag: str | None = "--vcf") -> Callable[[Any], Any]:
    """The input VCF as the positional argument VCF (``-`` reads standard input where the command
    streams), with the old ``--vcf`` spelling hidden."""
    path = click.Path(dir_okay=False, path_type=Path)

    def decorate(func: Any) -> Any:
        if old_flag:
            func = old_spelling("vcf", old_flag, "the argument VCF", required=required, type=path)(func)
        shown = "VCF" if required else "[VCF]"
        return click.argument("vcf", required=required and not old_flag, type=path, metavar=shown)(func)

    return decorate


def genes_only_option(help_text: str = "Only these genes: IDs or names, comma-separated (default: all).") -> Any:
    """``--genes-only ID,...`` into the parameter ``gene_names`` (a tuple); ``--gene ID`` (repeatable)
    is its hidden old spelling."""

    def decorate(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **values: Any) -> Any:
            given = values.pop("genes_only") or ()
            names = [n.strip() for item in given for n in item.split(",") if n.strip()]
            if given and not names:  # an empty value (an unset shell variable) names no gene, not every gene
                raise click.BadParameter(
                    "names no gene; expected ID,... (gene IDs or names).", param_hint="--genes-only"
                )
            names += list(values.pop("gene_old_spelling") or ())
            return func(*args, gene_names=tuple(dict.fromkeys(names)), **values)

        wrapper = click.option("--gene", "gene_old_spelling", multiple=True, hidden=True)(wrapper)
        return click.option("--genes-only", "genes_only", multiple=True, metavar="ID,...", help=help_text)(wrapper)

    return decorate


def selection_options(shard: bool = True, genes: bool = True) -> Callable[[Any], Any]:
    """``--regions``, ``--regions-file``, (``genes``) ``--genes-only`` and (``shard``) ``--shard``:
    the parameter ``selection`` (a :class:`varscore.scoring.selection.Selection`) instead. Without
    ``genes`` the command keeps its own ``--genes-only`` (e.g. :func:`genes_only_option`)."""

    def decorate(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **values: Any) -> Any:
            from varscore.scoring.selection import parse_selection

            selection = parse_selection(
                values.pop("regions"),
                values.pop("regions_file"),
                (values.pop("genes_only") or None) if genes else None,
                values.pop("shard", None),
            )
            return func(*args, selection=selection, **values)

        options = [
            click.option(
                "--regions",
                metavar="CHR:START-END,...",
                help="Only records in these regions (1-based, inclusive, as bcftools -r).",
            ),
            click.option(
                "--regions-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Only records in the intervals of this BED file (0-based, half-open).",
            ),
        ]
        if genes:
            options.append(
                click.option(
                    "--genes-only",
                    multiple=True,
                    metavar="ID,...",
                    help="Only these genes (IDs or names of the gene table) and the records in their windows.",
                )
            )
        if shard:
            options.append(
                click.option(
                    "--shard",
                    metavar="I/N",
                    help="Only the I-th of N shards (1 <= I <= N); the N outputs concatenated in order "
                    "(varscore merge) equal the whole run (README: Scale-out).",
                )
            )
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def cohort_options(func: Any) -> Any:
    return _cohort_options(func, fasta_required=True)


def cohort_options_fasta_optional(func: Any) -> Any:
    """:func:`cohort_options` whose ``--fasta`` defaults to the model bundle's recorded FASTA."""
    return _cohort_options(func, fasta_required=False)


def _cohort_options(func: Any, fasta_required: bool) -> Any:
    fasta_help = "Reference FASTA." if fasta_required else "Reference FASTA (default: the one recorded in the model)."
    options = [
        input_vcf(),
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
            "--fasta", required=fasta_required, type=click.Path(dir_okay=False, path_type=Path), help=fasta_help
        ),
        click.option(
            "--folds",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Fold file (person, replicate, split); default: made with --seed and saved.",
        ),
        click.option("--replicate", default=0, show_default=True, help="Which replicate fold to use."),
        genes_only_option("Only these genes: IDs or names, comma-separated (default: all)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def analysis_options(func: Any) -> Any:
    options = [
        click.option("-m", "--model", required=True, help="Model bundle name or directory."),
        input_vcf(required=False),
        click.option(
            "--fasta",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Reference FASTA (default: the one recorded in the model bundle).",
        ),
        genes_only_option(),
        click.option(
            "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Sequences per forward pass."
        ),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def cache_option(holds: str = "ISM results") -> Any:
    """``--cache DIR`` into the parameter ``cache_dir`` (varscore.scoring.effect_cache); ``holds``
    names what the command keeps there."""

    def folder(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
        if value is not None and not value.strip():  # '' would be the working directory
            raise click.BadParameter("names no folder; expected a directory.", ctx, param)
        return None if value is None else Path(value)

    def decorate(func: Any) -> Any:
        files = [(name, option) for name, option, kind in getattr(func, "varscore_outputs", ()) if kind == "file"]

        @functools.wraps(func)
        def wrapper(*args: Any, **values: Any) -> Any:
            cache = values.get("cache_dir")
            for name, option in files:
                value = values.get(name)
                if cache is None or value is None or str(value) == "-":
                    continue
                if Path(value).absolute() == Path(cache).absolute():
                    # the folder would be made first and the file could not be written after the work
                    raise click.UsageError(f"--cache {cache} and {option} {value} name one path: give each its own.")
            return func(*args, **values)

        return click.option(
            "--cache",
            "cache_dir",
            type=click.Path(file_okay=False),
            callback=folder,
            help=f"Keep {holds} (reference passes and effects, per model and window) in this folder and reuse "
            "them in later runs [off].",
        )(wrapper)

    return decorate


def ism_table_option(multiple: bool = False) -> Any:
    """``--ism TABLE`` (a table ``varscore ism VCF`` wrote) into ``ism_table``, or, ``multiple``,
    one per model into ``ism_tables``."""
    if multiple:
        return click.option(
            "--ism",
            "ism_tables",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="ISM tables 'varscore ism VCF' wrote, each used for the model it names instead of computing "
            "(repeatable).",
        )
    return click.option(
        "--ism",
        "ism_table",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="An ISM table 'varscore ism VCF' wrote with the same model: used instead of computing the ISM again.",
    )


def bundle_fasta(model: str, fasta: Path | None) -> Path:
    """``fasta``, else the reference FASTA recorded in the bundle ``model`` (one-line error when none)."""
    if fasta is not None:
        return fasta
    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle

    recorded = load_bundle(model).reference_fasta
    if recorded is None:
        raise InputError(f"Model '{model}' records no reference FASTA: pass one with --fasta.")
    return Path(recorded)


def echo_stderr(line: str) -> None:
    click.echo(line, err=True)
