"""The one-call Python API: :func:`score_variants` scores variants with a model bundle or an
in-memory torch module and returns the scores as a pandas table (the rows ``varscore annotate``
writes into INFO ``VARSCORE``, or into the ``--detail`` Parquet table in variant-centred mode).

Nothing heavy is imported at module level: torch and pandas load when a function runs.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varscore.errors import InputError
from varscore.types import Gene, Variant

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from varscore.genome.fasta import Genome
    from varscore.models.bundle import ModelBundle
    from varscore.plugin.contracts import OutputMode, SequenceBackbone

__all__ = ["CENTRED_COLUMNS", "GENE_COLUMNS", "MODES", "ScoringOptions", "TorchModel", "score_variants"]

MODES = ("gene", "variant")
#: Columns of the gene-mode table (see :func:`score_variants`).
GENE_COLUMNS = ("record", "chrom", "pos", "ref", "alt", "gene_id", "gene_name", "ref_pred", "alt_pred", "delta", "skip")
#: Columns of the variant-centred table: the ``--detail`` Parquet columns less ``id``, plus ``skip``.
CENTRED_COLUMNS = (
    "record",
    "chrom",
    "pos",
    "ref",
    "alt",
    "window_start",
    "scope",
    "gene_id",
    "gene_name",
    "track",
    "track_name",
    "stat",
    "ref_value",
    "alt_value",
    "score",
    "skip",
)
CHECK_REF = ("skip", "flag", "fail")
VARIANT_FIELDS = ("chrom", "pos", "ref", "alt")


@dataclass(frozen=True)
class ScoringOptions:
    """Everything :func:`score_variants` takes besides the model, the variants, the FASTA and the
    genes; the defaults are ``varscore annotate``'s.

    ``check_ref``: a REF that differs from the FASTA is ``flag``-ged (row with ``skip =
    "ref_mismatch"``), ``fail``-s (:class:`~varscore.errors.InputError`) or is not compared
    (``skip``). ``batch_size``: alternate windows per forward pass. ``device``: ``auto``, ``cpu``,
    ``cuda`` or ``cuda:N``; ``bf16``: bfloat16 autocast on CUDA. ``progress``: a progress bar.
    Variant-centred mode only: ``tracks`` (``"all"``, ``"0,5,10-12"``, a pattern over the
    ``targets`` descriptions, or a sequence of track indices), ``targets`` (a targets file naming
    the tracks), ``stats`` (of SUM, logSUM, D1, D2), ``centring`` (``exact`` or ``tiled``) and
    ``tile_bins`` (see docs/variant-centred.md).
    """

    check_ref: str = "flag"
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    progress: bool = False
    tracks: str | Sequence[int] = "all"
    targets: str | Path | None = None
    stats: str | Sequence[str] = "SUM,logSUM,D1,D2"
    centring: str = "exact"
    tile_bins: int | None = None

    def __post_init__(self) -> None:
        if self.check_ref not in CHECK_REF:
            raise InputError(f"check_ref must be one of {', '.join(CHECK_REF)}; got {self.check_ref!r}.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1; got {self.batch_size!r}.")

    @property
    def track_spec(self) -> str:
        """``tracks`` as the text :func:`varscore.scoring.centred.select_tracks` reads."""
        if isinstance(self.tracks, str):
            return self.tracks
        if not self.tracks or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in self.tracks):
            raise InputError(f"tracks must be 'all', a text like '0,5,10-12' or track indices; got {self.tracks!r}.")
        return ",".join(str(int(t)) for t in self.tracks)


@dataclass(frozen=True, eq=False)
class TorchModel:
    """An in-memory ``torch.nn.Module`` to score with, and the registered backbone whose
    architecture it follows (``varscore plugins`` lists them), e.g.
    ``TorchModel(module, BACKBONE, window_size=49_152, params={"head": "pretrained"})`` with the
    name of the installed backbone the module follows.

    The backbone's hyper-parameters are read from the module's library config (``module.config``,
    or the first sub-module's, as enformer-pytorch and borzoi-pytorch models carry one: every
    config entry named like a backbone parameter), then ``params`` override them. ``window_size``:
    input length in bp (default: the backbone's). ``output`` / ``output_params``: the output mode
    reducing ``(N, bins, tracks)`` to one value per window in gene mode (default ``scalar``: track 0,
    centre bin). The module's weights are used as they are (copied into the backbone's model, every
    name and shape checked; nothing is written to disk); the module itself is left untouched.
    """

    module: Any
    backbone: str
    window_size: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    output: str = "scalar"
    output_params: Mapping[str, Any] = field(default_factory=dict)
    name: str = "in-memory"

    def sequence_backbone(self, device: str = "auto", bf16: bool = False) -> SequenceBackbone:
        """The backbone holding the module's weights, placed on ``device``."""
        from varscore.plugin.manager import get_backbone
        from varscore.plugin.torch_backbone import TorchSequenceBackbone

        torch = sys.modules.get("torch")
        if torch is None or not isinstance(self.module, torch.nn.Module):
            raise InputError(f"TorchModel.module must be a torch.nn.Module; got {type(self.module).__name__}.")
        cls = get_backbone(self.backbone)
        if not issubclass(cls, TorchSequenceBackbone):
            raise InputError(
                f"Backbone '{self.backbone}' is not a PyTorch sequence backbone, so it cannot take an in-memory "
                "module; score with a saved bundle instead."
            )
        params = {**_config_params(self.module, cls.default_params), **dict(self.params)}
        if self.window_size is not None:
            params["window_size"] = self.window_size
        backbone = cls(**params)
        state = self.module.state_dict()
        try:
            backbone.load_state(state, f"the in-memory {type(self.module).__name__} module")
        except InputError as exc:
            raise InputError(
                f"{exc} Pass the architecture the module follows in TorchModel.params "
                f"(backbone '{self.backbone}' was built with {_shown(backbone.params)})."
            ) from exc
        backbone.configure(device=device, bf16=bf16)
        return backbone

    def output_mode(self) -> OutputMode:
        """The output mode ``output`` with ``output_params``, checked against the backbone."""
        from varscore.plugin.manager import check_output_mode, get_backbone, get_output_mode

        check_output_mode(get_backbone(self.backbone), self.output)
        return get_output_mode(self.output)(**dict(self.output_params))


def _config_params(module: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The backbone parameters a module's library config records (``config.to_dict()`` entries
    named like a key of ``defaults``); none when the module carries no such config."""
    for sub in module.modules():
        to_dict = getattr(getattr(sub, "config", None), "to_dict", None)
        if callable(to_dict):
            config = to_dict()
            return {key: config[key] for key in defaults if key in config}
    return {}


def _shown(params: Mapping[str, Any], limit: int = 8) -> str:
    keys = [k for k in ("head", "window_size", "dim", "depth", "heads", "output_heads") if k in params]
    keys += [k for k in params if k not in keys]
    return ", ".join(f"{k}={params[k]!r}" for k in keys[:limit])


ModelLike = Any  # str | Path | ModelBundle | TorchModel | tuple[torch.nn.Module, str]


def score_variants(
    model: ModelLike,
    variants: str | os.PathLike[str] | pd.DataFrame | Iterable[tuple[str, int, str, str]],
    *,
    fasta: str | os.PathLike[str] | None = None,
    genes: str | os.PathLike[str] | Sequence[str | Gene] | None = None,
    mode: str = "gene",
    options: ScoringOptions | None = None,
) -> pd.DataFrame:
    """Score ``variants`` with ``model``: ``prediction(ALT) - prediction(REF)``, as a table.

    ``model``: a bundle name or directory (resolved like ``--model``), a loaded
    :class:`~varscore.models.bundle.ModelBundle`, a :class:`TorchModel`, or ``(module, backbone)``
    (short for ``TorchModel(module, backbone)``). ``variants``: a VCF path, a DataFrame with
    columns ``chrom, pos, ref, alt``, or ``(chrom, pos, ref, alt)`` tuples; ``pos`` is 1-based and
    ``alt`` may list several alleles separated by commas. ``fasta``: the reference (default: the
    bundle's; required with a torch module). ``options``: see :class:`ScoringOptions`.

    ``mode="gene"``: ``genes`` is a gene/TSS table (TSV, GTF or GFF3), :class:`~varscore.types.Gene`
    objects, or ids/names picking among the bundle's genes (default: all of them). Each gene's
    window has length ``L = window_size`` with the TSS base at 0-based index ``L // 2``: the
    0-based half-open interval ``[tss - 1 - L // 2, tss - 1 - L // 2 + L)``, N (all-zero one-hot)
    past a contig end. ``ref_pred`` is the output mode's value (default: the centre bin's, bin
    ``bins // 2``, of track 0) on that reference window; ``alt_pred`` on it with the allele
    applied at offset ``pos - 1 - start`` (indels keep the TSS at ``L // 2``). One row per allele ×
    gene whose window holds ``pos``: ``record`` (0-based input index), ``chrom``, ``pos``, ``ref``,
    ``alt``, ``gene_id``, ``gene_name``, ``ref_pred``, ``alt_pred``, ``delta`` and ``skip`` (None).

    ``mode="variant"``: the window centred on each variant (its POS base at index ``L // 2``; see
    docs/variant-centred.md for ``tiled``), statistics over the chosen tracks; ``genes`` is a
    GTF/GFF3 for gene-level scores over exon bins. One row per allele × scope (``window``, or
    ``gene`` with ``gene_id``/``gene_name``) × track × statistic: the ``--detail`` Parquet columns
    (:data:`CENTRED_COLUMNS`): ``ref_value``, ``alt_value``, ``score`` and ``skip``.

    A record that is not scored is one row with its reason in ``skip`` and no scores:
    ``outside_windows`` (in no gene's window), ``ref_mismatch``, ``symbolic``, ``missing_alt``,
    ``ambiguous_ref``, ``ambiguous_alt``, ``not_in_fasta`` (variant mode), ``not_in_model``
    (genotype models). Bad input raises a :class:`~varscore.errors.VarscoreError` with a one-line
    message.
    """
    import pandas as pd

    options = options if options is not None else ScoringOptions()
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    resolved = _resolve_model(model)
    records = read_variants(variants)
    if mode == "gene":
        columns = _score_genes(resolved, records, fasta, genes, options)
        return pd.DataFrame(columns, columns=list(GENE_COLUMNS))
    return _score_centred(resolved, records, fasta, genes, options)


# --- inputs ------------------------------------------------------------------------------------


def _resolve_model(model: ModelLike) -> ModelBundle | TorchModel:
    from varscore.models.bundle import ModelBundle, load_bundle

    if isinstance(model, (ModelBundle, TorchModel)):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_bundle(Path(model))
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[1], str):
        return TorchModel(model[0], model[1])
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        raise InputError(
            "A torch module needs the backbone whose architecture it follows: pass (module, 'enformer') or "
            "TorchModel(module, 'enformer', window_size=...)."
        )
    raise InputError(
        "model must be a bundle name or directory, a ModelBundle, a TorchModel or (module, backbone); "
        f"got {type(model).__name__}."
    )


def read_variants(
    variants: str | os.PathLike[str] | pd.DataFrame | Iterable[tuple[str, int, str, str]],
) -> list[Variant]:
    """``variants`` as :class:`~varscore.types.Variant` records, ``index`` = 0-based input order."""
    import pandas as pd

    if isinstance(variants, (str, os.PathLike)):
        path = Path(variants)
        if not path.is_file():
            raise InputError(
                f"VCF file not found: {path}. Pass a VCF path, a DataFrame with columns chrom, pos, ref, alt, or a "
                "list of (chrom, pos, ref, alt) tuples."
            )
        from varscore.io.vcf import iter_variants

        records = list(iter_variants(path))
        what = f"{path} has no records"
    elif isinstance(variants, pd.DataFrame):
        missing = [c for c in VARIANT_FIELDS if c not in variants.columns]
        if missing:
            raise InputError(
                f"The variants DataFrame lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, variants.columns))}."
            )
        rows = zip(*(variants[c].tolist() for c in VARIANT_FIELDS), strict=True)
        records = [_variant(i, row, "variants row") for i, row in enumerate(rows)]
        what = "the DataFrame has no rows"
    elif isinstance(variants, Iterable) and not isinstance(variants, (bytes, Mapping)):
        records = [_variant(i, item, "variants") for i, item in enumerate(variants)]
        what = "got an empty list"
    else:
        raise InputError(
            "variants must be a VCF path, a DataFrame with columns chrom, pos, ref, alt, or (chrom, pos, ref, alt) "
            f"tuples; got {type(variants).__name__}."
        )
    if not records:
        raise InputError(f"score_variants needs at least one variant; {what}.")
    return records


def _variant(index: int, item: Any, where: str) -> Variant:
    fields = tuple(item) if isinstance(item, (tuple, list)) else None
    ok = fields is not None and len(fields) == 4
    if ok and fields is not None:
        chrom, pos, ref, alt = fields
        if isinstance(chrom, numbers.Integral) and not isinstance(chrom, bool):
            chrom = str(chrom)
        ok = (
            isinstance(chrom, str)
            and bool(chrom.strip())
            and isinstance(pos, numbers.Integral)
            and not isinstance(pos, bool)
            and int(pos) >= 1
            and isinstance(ref, str)
            and bool(ref)
            and isinstance(alt, str)
            and bool(alt)
        )
        if ok:
            alts = tuple(a.strip() for a in alt.split(","))
            return Variant(chrom.strip(), int(pos), ref.strip(), alts, None, index)
    shown = " ".join(repr(item).split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise InputError(
        f"{where}[{index}] must be (chrom, pos, ref, alt) with a 1-based integer pos and non-empty alleles; got {shown}."
    )


def _genome(model: ModelBundle | TorchModel, fasta: str | os.PathLike[str] | None) -> Genome:
    from varscore.genome.fasta import Genome

    if isinstance(model, TorchModel):
        if fasta is None:
            raise InputError("Scoring with an in-memory module needs the reference: pass fasta='genome.fa'.")
        return Genome(Path(fasta))
    return Genome(model.resolve_reference(None if fasta is None else Path(fasta)))


def _gene_list(
    model: ModelBundle | TorchModel, genes: str | os.PathLike[str] | Sequence[str | Gene] | None
) -> list[Gene]:
    """Gene mode's genes: a table read from a path, Gene objects, or the bundle's genes picked by id/name."""
    from varscore.genome.fasta import load_genes

    if isinstance(genes, (str, os.PathLike)):
        return load_genes(Path(genes))
    if genes is not None and not genes:
        raise InputError("genes is an empty list: pass None for the model's genes, a path, or some genes.")
    if genes is not None and all(isinstance(g, Gene) for g in genes):
        return [g for g in genes if isinstance(g, Gene)]
    if isinstance(model, TorchModel):
        raise InputError(
            "Scoring genes with an in-memory module needs them: pass genes='genes.tsv' (chrom, tss, strand, gene_id) "
            "or a list of varscore.Gene."
        )
    known = model.genes
    if genes is None:
        if not known:
            raise InputError(
                f"Model '{model.name}' records no genes: pass genes='genes.tsv' or a list of varscore.Gene."
            )
        return known
    wanted = [g for g in genes if isinstance(g, str)]
    if len(wanted) != len(genes):
        raise InputError("genes must be a path, a list of varscore.Gene, or a list of gene ids/names, not a mixture.")
    picked = [g for g in known if g.gene_id in wanted or g.name in wanted]
    unknown = sorted(set(wanted) - {g.gene_id for g in picked} - {g.name for g in picked})
    if unknown:
        shown = ", ".join(g.label for g in known[:8]) + (" ..." if len(known) > 8 else "")
        raise InputError(f"Model '{model.name}' has no gene {', '.join(unknown)}; it has {shown}.")
    return picked


# --- gene mode ---------------------------------------------------------------------------------


def _score_genes(
    model: ModelBundle | TorchModel,
    records: list[Variant],
    fasta: str | os.PathLike[str] | None,
    genes: str | os.PathLike[str] | Sequence[str | Gene] | None,
    options: ScoringOptions,
) -> dict[str, list[Any]]:
    from varscore.scoring.engine import ScoringResult, plan_scoring, run_plan, score_genotypes

    gene_list = _gene_list(model, genes)
    names = {g.gene_id: g.name for g in gene_list}
    skipped: dict[int, str] = {}
    result: ScoringResult
    if isinstance(model, TorchModel) or not model.takes_genotypes:
        genome = _genome(model, fasta)
        # scores carry a gene's label; naming every gene by its id makes them carry the id
        keyed = [dataclasses.replace(g, name=g.gene_id) for g in gene_list]
        if isinstance(model, TorchModel):
            backbone = model.sequence_backbone(options.device, options.bf16)
            plan = plan_scoring(iter(records), keyed, genome, backbone.window_size, check_ref=options.check_ref)
            result = run_plan(
                plan, backbone, model.output_mode(), genome, batch_size=options.batch_size, progress=options.progress
            )
        else:
            from varscore.scoring.ensemble import PlanRun, score_plan

            # planned before the model loads, so that bad input fails first (as annotate does)
            plan = plan_scoring(iter(records), keyed, genome, model.window_size, check_ref=options.check_ref)
            run = PlanRun(options.device, options.bf16, options.batch_size, options.progress)
            result, _ = score_plan(model, plan, genome, run)
        skipped = plan.skipped
        fallback = "outside_windows"
    else:
        result = score_genotypes(iter(records), model.genotype_backbone(), {g.gene_id: g.gene_id for g in gene_list})
        fallback = "not_in_model"
    columns: dict[str, list[Any]] = {name: [] for name in GENE_COLUMNS}
    nan = float("nan")
    for variant in records:
        scores = result.scores.get(variant.index)
        common = (variant.index, variant.chrom, variant.pos, variant.ref)
        row: tuple[Any, ...]
        if scores:
            for s in scores:
                row = (*common, s.allele, s.gene, names.get(s.gene, ""), s.ref_pred, s.alt_pred, s.delta, None)
                for name, value in zip(GENE_COLUMNS, row, strict=True):
                    columns[name].append(value)
        else:
            reason = skipped.get(variant.index, fallback)
            row = (*common, ",".join(variant.alts), None, None, nan, nan, nan, reason)
            for name, value in zip(GENE_COLUMNS, row, strict=True):
                columns[name].append(value)
    return columns


# --- variant-centred mode ----------------------------------------------------------------------


def _score_centred(
    model: ModelBundle | TorchModel,
    records: list[Variant],
    fasta: str | os.PathLike[str] | None,
    genes: str | os.PathLike[str] | Sequence[str | Gene] | None,
    options: ScoringOptions,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from varscore.genome.exons import load_gene_models
    from varscore.scoring.centred import parse_stats, read_targets
    from varscore.scoring.variant_mode import CentredSettings, centred_scorer

    if genes is not None and not isinstance(genes, (str, os.PathLike)):
        raise InputError("Variant-centred mode takes genes as a GTF/GFF3 path (their exons), not a list.")
    if not isinstance(model, TorchModel) and model.takes_genotypes:
        raise InputError(f"Model '{model.name}' takes genotypes; variant-centred mode needs a sequence model.")
    stats = parse_stats(options.stats)
    genome = _genome(model, fasta)
    descriptions = read_targets(options.targets) if options.targets is not None else None
    gene_models = load_gene_models(Path(genes), genome.lengths) if genes is not None else None
    backbone = model.sequence_backbone(options.device, options.bf16)  # the inputs read first, as annotate does
    settings = CentredSettings(
        tracks=options.track_spec,
        stats=stats,
        centring=options.centring,
        tile_bins=options.tile_bins,
        batch_size=options.batch_size,
        check_ref=options.check_ref,
    )
    scorer, selection = centred_scorer(backbone, genome, settings, gene_models, descriptions)
    tracks = np.asarray(selection.indices, dtype=np.int64)
    track_names = np.asarray(selection.names, dtype=object)
    stat_names = np.asarray(stats, dtype=object)
    block = len(tracks) * len(stats)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in CENTRED_COLUMNS}

    def add(values: Mapping[str, Any], n: int, numbers_: np.ndarray | None) -> None:
        for name in CENTRED_COLUMNS:
            if name in values:
                parts[name].append(np.full(n, values[name], dtype=object))
        if numbers_ is None:
            for name in ("track", "track_name", "stat"):
                parts[name].append(np.full(n, None, dtype=object))
            for name in ("ref_value", "alt_value", "score"):
                parts[name].append(np.full(n, np.nan))
            return
        parts["track"].append(np.repeat(tracks, len(stats)).astype(object))
        parts["track_name"].append(np.repeat(track_names, len(stats)))
        parts["stat"].append(np.tile(stat_names, len(tracks)))
        flat = np.asarray(numbers_, dtype=np.float64).reshape(block, 3)
        for k, name in enumerate(("ref_value", "alt_value", "score")):
            parts[name].append(flat[:, k])

    for record in scorer.score(iter(records)):
        variant = record.variant
        common = {"record": variant.index, "chrom": variant.chrom, "pos": variant.pos, "ref": variant.ref}
        if record.reason is not None:
            empty = {"alt": ",".join(variant.alts), "window_start": None, "scope": None, "gene_id": None}
            add({**common, **empty, "gene_name": None, "skip": record.reason}, 1, None)
            continue
        for allele in record.alleles:
            scopes: list[tuple[str, str | None, str | None, np.ndarray]] = [("window", None, None, allele.window)]
            scopes += [("gene", gene.gene_id, gene.name or None, values) for gene, values in allele.genes]
            for scope, gene_id, gene_name, values in scopes:
                row = {"alt": allele.allele, "window_start": record.window_start, "scope": scope, "gene_id": gene_id}
                add({**common, **row, "gene_name": gene_name, "skip": None}, block, values)
    table = pd.DataFrame({name: np.concatenate(parts[name]) if parts[name] else [] for name in CENTRED_COLUMNS})
    for name in ("record", "pos"):
        table[name] = table[name].astype("int64")
    for name in ("window_start", "track"):
        table[name] = table[name].astype("Int64")
    for name in ("ref_value", "alt_value", "score"):
        table[name] = table[name].astype("float64")
    return table
