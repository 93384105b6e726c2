"""In-silico mutagenesis tables: every observed SNV (or every position × 3 alternatives) of a
gene's window scored by a model, with distance to the TSS and minor-allele frequency.

Variant weight = ``alt_pred - ref_pred``. Sequence models: the model's output (the output mode's
scalar) on the reference window with the ALT base on both haplotypes, minus the reference's.
Genotype models: their variant effects, on the same scale (see
:data:`varscore.plugin.contracts.HOMOZYGOUS_ALT`; a linear model's ALT_PRED is the intercept + 2 × coefficient).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.genome.sequence import BASES
from varscore.scoring.selection import Selection
from varscore.training.cohort import held_out_people  # noqa: F401  (re-exported for the analyses)
from varscore.types import Gene, Window, tss_window

if TYPE_CHECKING:
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.plugin.contracts import Backbone, GenotypeBackbone, ISMResult, OutputMode, SequenceBackbone
    from varscore.scoring.effect_cache import EffectCache

logger = logging.getLogger(__name__)
CHUNK_ALLELES = 512  # alleles per backbone.ism call when scoring a gene (progress granularity)

ISM_COLUMNS = ("chrom", "pos", "ref", "alt", "gene", "distance_to_tss", "ref_pred", "alt_pred", "delta", "maf")


def distance_to_tss(pos: np.ndarray | int, gene: Gene) -> np.ndarray:
    """Signed distance (bp) of 1-based ``pos`` from the gene's TSS along its strand: negative
    upstream, positive downstream (as in ``truth_variants.tsv``)."""
    sign = -1 if gene.strand == "-" else 1
    return (np.asarray(pos, dtype=np.int64) - gene.tss) * sign


def variant_key(chrom: str, pos: int, ref: str, alt: str) -> str:
    return f"{chrom}:{int(pos)}:{ref}:{alt}"


@dataclass
class GeneVariants:
    """The observed SNVs of one gene's window and everyone's genotypes.

    ``table``: one row per SNV column — chrom, pos (1-based), ref, alt, key, distance_to_tss,
    maf (over all people with a call). ``dosage``: ``(P, V)`` float32 ALT counts 0/1/2 (missing
    calls count as reference), rows in ``people`` order. ``reference``: the window's ``(L, 4)``
    one-hot. ``genotypes``: the :class:`~varscore.genome.personal.WindowGenotypes` they came from.
    """

    gene: Gene
    window: Window
    table: pd.DataFrame
    dosage: np.ndarray
    people: list[str]
    reference: np.ndarray
    genotypes: Any

    def people_rows(self, people: Sequence[str]) -> np.ndarray:
        """``(B,)`` row indices of ``people``; unknown names are an :class:`InputError`."""
        return np.asarray(self.genotypes.sample_indices(list(people)))


def _maf(haplotypes: np.ndarray) -> np.ndarray:
    """``(V,)`` minor-allele frequency from ``(P, 2, V)`` haplotypes (1 ALT, 0 other, -1 missing)."""
    called = (haplotypes >= 0).sum(axis=(0, 1))
    alt = (haplotypes == 1).sum(axis=(0, 1))
    af = np.divide(alt, called, out=np.zeros(alt.shape, dtype=np.float64), where=called > 0)
    return np.minimum(af, 1.0 - af)


def read_gene_variants(
    vcf: str | Path,
    genes: Sequence[Gene],
    genome: Any,
    window_size: int,
    people: Sequence[str] | None = None,
) -> dict[str, GeneVariants]:
    """The observed SNVs of each gene's ``window_size`` TSS-centred window, by gene id."""
    from varscore.genome.personal import GenotypeReader

    out: dict[str, GeneVariants] = {}
    with GenotypeReader(vcf, samples=people) as reader:
        for gene in genes:
            window = tss_window(gene, window_size)
            reference = genome.window_sequence(window).one_hot
            genotypes = reader.read(window, reference)
            positions = genotypes.positions.astype(np.int64)
            refs, alts = genotypes.refs.astype(str), genotypes.alts.astype(str)
            table = pd.DataFrame(
                {
                    "chrom": gene.chrom,
                    "pos": positions,
                    "ref": refs,
                    "alt": alts,
                    "key": [variant_key(gene.chrom, p, r, a) for p, r, a in zip(positions, refs, alts, strict=True)],
                    "gene": gene.label,
                    "distance_to_tss": distance_to_tss(positions, gene),
                    "maf": _maf(genotypes.haplotypes),
                }
            )
            out[gene.gene_id] = GeneVariants(
                gene, window, table, genotypes.dosage(), list(genotypes.samples), reference, genotypes
            )
    return out


def saturation_substitutions(reference: np.ndarray) -> list[tuple[int, str]]:
    """Every position × the 3 bases other than the reference base: ``(offset, base)`` pairs
    (positions with N get all 4 bases)."""
    codes = np.where(reference.max(axis=1) == 1, reference.argmax(axis=1), 4)
    return [(offset, base) for offset, code in enumerate(codes.tolist()) for b, base in enumerate(BASES) if b != code]


@dataclass
class ModelScorer:
    """A loaded model bundle ready to score variants: ``backbone`` (built) and ``output_mode``.
    :meth:`from_bundle` gives a :class:`SequenceScorer` or a :class:`GenotypeScorer`.

    Capabilities: ``scores_sequence`` — any substitution of a window can be scored (saturation
    mutagenesis, gradients); ``declares_drivers`` — the model itself says which variants it uses
    (:meth:`model_drivers`), so drivers need no forward selection."""

    name: str
    backbone: Backbone
    output_mode: OutputMode
    window_size: int
    cache: EffectCache | None = None  # ISM results kept on disk (sequence models), see varscore.scoring.effect_cache
    scores_sequence: ClassVar[bool] = False
    declares_drivers: ClassVar[bool] = False

    @classmethod
    def from_bundle(cls, bundle: Any, device: str = "cpu", cache: str | Path | None = None) -> ModelScorer:
        """The scorer of ``bundle``; with ``cache`` (a folder) a sequence model's ISM results are kept
        there (:mod:`varscore.scoring.effect_cache`)."""
        from varscore.plugin.contracts import GenotypeBackbone
        from varscore.scoring.effect_cache import EffectCache

        backbone = bundle.backbone()
        backbone.configure(device=device)
        if isinstance(backbone, GenotypeBackbone):  # its effects are read, not computed: nothing to keep
            return GenotypeScorer(bundle.name, backbone, bundle.output_mode(), int(backbone.window_size))
        kept = EffectCache.for_bundle(cache, bundle) if cache is not None else None
        return SequenceScorer(bundle.name, backbone, bundle.output_mode(), int(backbone.window_size), kept)

    def has_gene(self, gene: Gene) -> bool:
        """Whether the model predicts ``gene``."""
        return True

    def model_drivers(self, gene: Gene) -> set[str]:
        """Keys of the variants the model uses for ``gene`` (models with ``declares_drivers``)."""
        raise InputError(f"Model '{self.name}' does not say which variants it uses; find drivers by selection.")

    def allele_weights(self, gene: Gene) -> dict[str, float] | None:
        """Additive per-ALT-dosage weights of ``gene``'s variants, for models that have them."""
        return None

    def score(
        self,
        gene: Gene,
        reference: np.ndarray,
        table: pd.DataFrame,
        batch_size: int = 8,
        advance: Callable[[int], object] | None = None,
    ) -> pd.DataFrame:
        """``table`` (chrom, pos, ref, alt, ...) of ``gene``'s window with ref_pred, alt_pred and
        delta added. ``advance(n)`` is called as each chunk of ``n`` alleles is scored (a progress
        bar moves per allele, not per gene)."""
        out = table.copy()
        out["ref_pred"], out["alt_pred"] = self._predictions(gene, reference, out, batch_size, advance)
        out["delta"] = out["alt_pred"] - out["ref_pred"]
        return out

    def _predictions(
        self,
        gene: Gene,
        reference: np.ndarray,
        table: pd.DataFrame,
        batch_size: int,
        advance: Callable[[int], object] | None,
    ) -> tuple[Any, Any]:
        raise NotImplementedError

    def predict_people(self, variants: GeneVariants, rows: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """The model's prediction for the people at ``rows`` of ``variants``: ``(B,)``."""
        raise NotImplementedError


class SequenceScorer(ModelScorer):
    """Scores by ISM of the reference window."""

    backbone: SequenceBackbone
    scores_sequence: ClassVar[bool] = True

    def _predictions(
        self,
        gene: Gene,
        reference: np.ndarray,
        table: pd.DataFrame,
        batch_size: int,
        advance: Callable[[int], object] | None,
    ) -> tuple[Any, Any]:
        if reference.shape != (self.window_size, 4):
            raise InputError(f"Model '{self.name}' takes {self.window_size}-bp windows; got {reference.shape[0]} bp.")
        window = tss_window(gene, self.window_size)
        subs = [(window.offset(int(p)), str(a)) for p, a in zip(table["pos"], table["alt"], strict=True)]
        # chunks of alleles, so progress is reported while a saturation scan of one gene runs
        # (each chunk repeats the one reference pass: a small share of CHUNK_ALLELES forwards)
        step = max(CHUNK_ALLELES, batch_size)
        alternates, ref_pred = [], None
        for start in range(0, max(len(subs), 1), step):
            result = self._ism(reference, subs[start : start + step], batch_size)
            if result.reference.shape[0] != 1:
                raise InputError(
                    f"Model '{self.name}' has output mode '{self.output_mode.name}' with "
                    f"{result.reference.shape[0]} outputs; variant analyses need one number per "
                    "sequence (the 'scalar' output mode)."
                )
            ref_pred = float(result.reference[0])
            alternates.append(np.asarray(result.alternates[:, 0], dtype=np.float64))
            if advance is not None:
                advance(len(subs[start : start + step]))
        return ref_pred, (np.concatenate(alternates) if len(subs) else np.empty(0))

    def _ism(self, reference: np.ndarray, subs: list[tuple[int, str]], batch_size: int) -> ISMResult:
        """``backbone.ism`` of the reduced output, through the cache when there is one."""
        from varscore.plugin.contracts import ISMResult

        def compute(window: np.ndarray, wanted: Sequence[tuple[int, str]]) -> ISMResult:
            return self.backbone.ism(window, wanted, self.output_mode.reduce, batch_size=batch_size)

        if self.cache is None:
            return compute(reference, subs)
        return ISMResult(*self.cache.ism(compute, reference, subs, "reduce"))

    def predict_people(self, variants: GeneVariants, rows: np.ndarray, batch_size: int = 8) -> np.ndarray:
        from varscore.plugin.fastpredict import predict_people

        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.empty(0)
        predicted = predict_people(self.backbone, variants.reference, variants.genotypes, rows, batch_size).predictions
        return self.output_mode.reduce(predicted)[:, 0].astype(np.float64)


class GenotypeScorer(ModelScorer):
    """Scores by the genotype model's variant effects (see :data:`varscore.plugin.contracts.HOMOZYGOUS_ALT`);
    variants the model lacks get no effect (ALT_PRED = REF_PRED)."""

    backbone: GenotypeBackbone
    declares_drivers: ClassVar[bool] = True

    def _gene_id(self, gene: Gene) -> str | None:
        """The model's id of ``gene`` (its id, else its name), None if the model lacks it."""
        return next((key for key in (gene.gene_id, gene.name) if key and self.backbone.has_gene(key)), None)

    def _required_gene_id(self, gene: Gene) -> str:
        gene_id = self._gene_id(gene)
        if gene_id is None:
            raise InputError(f"Genotype model '{self.name}' has no weights for gene '{gene.label}'.")
        return gene_id

    def has_gene(self, gene: Gene) -> bool:
        return self._gene_id(gene) is not None

    def model_drivers(self, gene: Gene) -> set[str]:
        return set(self.backbone.used_variants(self._required_gene_id(gene)))

    def allele_weights(self, gene: Gene) -> dict[str, float] | None:
        gene_id = self._gene_id(gene)
        return None if gene_id is None else self.backbone.allele_weights(gene_id)

    def _predictions(
        self,
        gene: Gene,
        reference: np.ndarray,
        table: pd.DataFrame,
        batch_size: int,
        advance: Callable[[int], object] | None,
    ) -> tuple[Any, Any]:
        effects = self.backbone.variant_effects(self._required_gene_id(gene))
        ref_pred = (
            effects[0].ref_pred
            if effects
            else float(self.backbone.predict_dosages(self._required_gene_id(gene), np.zeros((1, 0)))[0])
        )
        alt_of = {e.key: e.alt_pred for e in effects}
        keys = [
            variant_key(c, p, r, a)
            for c, p, r, a in zip(table["chrom"], table["pos"], table["ref"], table["alt"], strict=True)
        ]
        if advance is not None:
            advance(len(keys))
        return ref_pred, np.array([alt_of.get(k, ref_pred) for k in keys], dtype=np.float64)

    def predict_people(self, variants: GeneVariants, rows: np.ndarray, batch_size: int = 8) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        pred, _ = self.backbone.predict_aligned(
            self._required_gene_id(variants.gene), list(variants.table["key"]), variants.dosage[rows]
        )
        return np.asarray(pred, dtype=np.float64)


def ism_table(
    scorer: ModelScorer,
    gene: Gene,
    genome: Any,
    variants: GeneVariants | None = None,
    saturation: bool = False,
    batch_size: int = 8,
    advance: Callable[[int], object] | None = None,
) -> pd.DataFrame:
    """The ISM table of one gene (columns :data:`ISM_COLUMNS`, plus ``key``): the observed SNVs of
    ``variants``, or with ``saturation`` every position × 3 alternative bases (``maf`` then
    filled in for observed SNVs only, NaN elsewhere). ``advance(n)``: see :meth:`ModelScorer.score`."""
    window = tss_window(gene, scorer.window_size)
    if variants is not None and variants.window != window:
        raise InputError(f"Variants were read for {variants.window}; model '{scorer.name}' needs {window}.")
    if saturation:
        if not scorer.scores_sequence:
            raise InputError(
                f"Saturation mutagenesis needs a sequence model; '{scorer.name}' is a genotype model. "
                "Score the observed variants (the VCF argument) instead."
            )
        reference = variants.reference if variants is not None else genome.window_sequence(window).one_hot
        subs = saturation_substitutions(reference)
        pos = np.array([window.start + 1 + offset for offset, _ in subs], dtype=np.int64)
        ref_bases = np.array(list("ACGTN"))[np.where(reference.max(axis=1) == 1, reference.argmax(axis=1), 4)]
        table = pd.DataFrame(
            {"chrom": gene.chrom, "pos": pos, "ref": ref_bases[pos - 1 - window.start], "alt": [b for _, b in subs]}
        )
        table["key"] = [
            variant_key(gene.chrom, p, r, a) for p, r, a in zip(table["pos"], table["ref"], table["alt"], strict=True)
        ]
        table["gene"] = gene.label
        table["distance_to_tss"] = distance_to_tss(pos, gene)
        maf = variants.table.set_index("key")["maf"] if variants is not None else pd.Series(dtype=float)
        table["maf"] = table["key"].map(maf).astype(float)
    elif variants is None:
        raise InputError("ISM of observed variants needs a VCF (the argument VCF); or ask for --saturation.")
    else:
        reference, table = variants.reference, variants.table
    scored = scorer.score(gene, reference, table, batch_size=batch_size, advance=advance)
    return scored[[*ISM_COLUMNS, "key"]]


def alleles_to_score(
    scorer: ModelScorer, genes: list[Gene], variants: dict[str, GeneVariants] | None, saturation: bool
) -> int:
    """How many alleles an ISM run scores: the total of its progress bar."""
    if saturation:
        return 3 * scorer.window_size * len(genes)
    return sum(len(variants[g.gene_id].table) for g in genes if variants is not None and g.gene_id in variants)


def ism_track(table: pd.DataFrame) -> pd.DataFrame:
    """Per-position signal of an ISM table: the delta of largest magnitude among the position's
    alleles. Columns chrom, start (0-based), end, value; sorted."""
    if table.empty:
        return pd.DataFrame(columns=["chrom", "start", "end", "value"])
    order = table.assign(_abs=table["delta"].abs()).sort_values(["chrom", "pos", "_abs"], ascending=[True, True, False])
    top = order.drop_duplicates(["chrom", "pos"])
    return pd.DataFrame(
        {
            "chrom": top["chrom"].to_numpy(),
            "start": top["pos"].to_numpy() - 1,
            "end": top["pos"].to_numpy(),
            "value": top["delta"].to_numpy(),
        }
    )


def write_ism_track(table: pd.DataFrame, path: str | Path, chrom_sizes: dict[str, int]) -> Path:
    """Write :func:`ism_track` with :mod:`varscore.scoring.tracks`: bigWig when ``path`` ends
    ``.bw``/``.bigwig``, else bedGraph. ``chrom_sizes``: contig lengths (the FASTA's)."""
    from varscore.scoring.tracks import Interval, write_bedgraph, write_bigwig

    path = Path(path)
    track = ism_track(table)
    intervals = [
        Interval(str(c), int(s), int(e), float(v))
        for c, s, e, v in zip(track["chrom"], track["start"], track["end"], track["value"], strict=True)
    ]
    if path.suffix.lower() in (".bw", ".bigwig"):
        write_bigwig(path, intervals, chrom_sizes)
    else:
        write_bedgraph(
            path, intervals, chrom_sizes, name="ism", description="ISM delta (alt - ref), largest |delta| per position"
        )
    return path


def score_genes(
    scorer: ModelScorer,
    variants: dict[str, GeneVariants],
    genome: Any,
    saturation: bool = False,
    batch_size: int = 8,
    progress: bool = False,
) -> pd.DataFrame:
    """ISM tables of every gene in ``variants`` (by gene id), concatenated."""
    from varscore.io.progress import Progress

    genes = [gv.gene for gv in variants.values()]
    total = alleles_to_score(scorer, genes, {gv.gene.gene_id: gv for gv in variants.values()}, saturation)
    with Progress(total, f"ism {scorer.name}", "alleles", progress) as bar:
        parts = [
            ism_table(scorer, gv.gene, genome, gv, saturation=saturation, batch_size=batch_size, advance=bar.update)
            for gv in variants.values()
        ]
    if not parts:
        return pd.DataFrame(columns=[*ISM_COLUMNS, "key"])
    return pd.concat(parts, ignore_index=True)


def read_ism_table(path: str | Path, bundle: Any, variants: dict[str, GeneVariants]) -> pd.DataFrame:
    """The ISM table of ``variants``' SNVs (as :func:`score_genes` returns it) read from ``path``, a
    table ``varscore ism --vcf`` wrote (its values round-trip exactly), after checking that it
    belongs to ``bundle`` (the name and weights checksum its provenance sidecar records), has the
    ISM columns and scores every SNV of each gene (a saturation table with ``--vcf`` does too)."""
    import json

    from varscore.io.outputguard import model_provenance

    path = Path(path)
    sidecar = Path(f"{path}.provenance.json")
    try:
        recorded = json.loads(sidecar.read_text()).get("varscore_model")
    except FileNotFoundError:
        raise InputError(
            f"--ism {path} has no provenance sidecar {sidecar.name}, so its model cannot be checked: give a table "
            "written by 'varscore ism'."
        ) from None
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"--ism: cannot read {sidecar}: {exc}.") from exc
    expected = model_provenance(bundle)
    if expected["SHA256"] == ".":
        raise InputError(f"Model '{bundle.name}' records no weights checksum, so --ism {path} cannot be checked.")
    if not isinstance(recorded, dict) or {k: recorded.get(k) for k in expected} != expected:
        got = recorded if isinstance(recorded, dict) else {}
        raise InputError(
            f"--ism {path} was computed with model '{got.get('ID', '?')}' (weights sha256 "
            f"{str(got.get('SHA256', '?'))[:12]}), not '{bundle.name}' ({expected['SHA256'][:12]}): compute it with "
            f"'varscore ism -m {bundle.name} --vcf VCF'."
        )
    try:
        table = pd.read_csv(
            path,
            sep="\t",
            dtype={"chrom": str, "ref": str, "alt": str, "gene": str},
            keep_default_na=False,
            na_values={"maf": [""], "ref_pred": [""], "alt_pred": [""], "delta": [""]},
        )
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"--ism: cannot read {path} as a TSV: {exc}.") from exc
    missing = [c for c in ISM_COLUMNS if c not in table.columns]
    if missing:
        hint = " (a table without --vcf has no maf: write it with --vcf)" if missing == ["maf"] else ""
        raise InputError(f"--ism {path} lacks the ISM column(s) {', '.join(missing)}{hint}.")
    _check_numbers(table, path)
    table["key"] = pd.Series(
        [
            variant_key(c, int(p), r, a)
            for c, p, r, a in zip(table["chrom"], table["pos"], table["ref"], table["alt"], strict=True)
        ],
        index=table.index,
        dtype=object,
    )
    parts = []
    for gv in variants.values():
        rows = _unique_rows(table[table["gene"] == gv.gene.label], path).set_index("key")
        keys = list(gv.table["key"])
        absent = [k for k in keys if k not in rows.index]
        if absent:
            raise InputError(
                f"--ism {path} does not score {len(absent)} of the {len(keys)} SNVs of {gv.gene.label} in this VCF "
                f"(e.g. {absent[0]}): compute it on the same VCF and genes."
            )
        part = rows.loc[keys].reset_index()
        _check_predictions(part, path, gv.gene.label)
        # what the VCF and the gene table decide comes from them (the table may come from other people)
        derived = gv.table.set_index("key").loc[keys]
        part["distance_to_tss"] = derived["distance_to_tss"].to_numpy()
        part["maf"] = derived["maf"].to_numpy()
        parts.append(part.astype({"pos": np.int64, "distance_to_tss": np.int64})[[*ISM_COLUMNS, "key"]])
    if not parts:
        return pd.DataFrame(columns=[*ISM_COLUMNS, "key"])
    return pd.concat(parts, ignore_index=True)


PREDICTION_COLUMNS = ("ref_pred", "alt_pred", "delta")


def _check_numbers(table: pd.DataFrame, path: Path) -> None:
    """``table``'s positions as integers and its predictions as numbers, in place; anything else is
    a one-line error naming the line of the file."""
    for column in ("pos", *PREDICTION_COLUMNS):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if column == "pos":
            bad |= values.isna() | (values.fillna(0) % 1 != 0)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            what = "an integer position" if column == "pos" else "a number"
            raise InputError(f"--ism {path} line {row + 2}: {column} '{table[column].iloc[row]}' is not {what}.")
        table[column] = values.astype(np.int64) if column == "pos" else values.astype(np.float64)


def _unique_rows(rows: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``rows`` (of one gene) with repeated substitutions dropped; repeats that disagree are an error."""
    repeated = rows[rows.duplicated("key", keep=False)]
    if not repeated.empty:
        differing = repeated.groupby("key")[list(PREDICTION_COLUMNS)].nunique(dropna=False).max(axis=1) > 1
        if differing.any():
            key = differing.index[int(np.argmax(differing.to_numpy()))]
            raise InputError(
                f"--ism {path} scores {key} of {rows['gene'].iloc[0]} more than once, with different values: "
                "keep one row per substitution."
            )
    return rows.drop_duplicates("key")


def _check_predictions(part: pd.DataFrame, path: Path, gene: str) -> None:
    """The predictions of ``gene``'s SNVs are finite and ``delta`` is ``alt_pred - ref_pred``."""
    values = part[list(PREDICTION_COLUMNS)].to_numpy(dtype=np.float64)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        key = part["key"].iloc[int(np.argmin(finite))]
        raise InputError(
            f"--ism {path} has {int((~finite).sum())} rows of {gene} with a missing, NaN or infinite prediction "
            f"(e.g. {key}): compute the table again."
        )
    agree = np.isclose(values[:, 2], values[:, 1] - values[:, 0], rtol=1e-6, atol=1e-9)
    if not agree.all():
        key = part["key"].iloc[int(np.argmin(agree))]
        raise InputError(
            f"--ism {path}: delta is not alt_pred - ref_pred for {int((~agree).sum())} rows of {gene} (e.g. {key}): "
            "an edited or damaged table; compute it again."
        )


def gene_ism(run: Any, ism: str | Path | None, batch_size: int = 8, progress: bool = False) -> pd.DataFrame:
    """The ISM table of ``run``'s genes (a :class:`~varscore.analysis.inputs.LoadedInputs`): read
    from ``ism`` (:func:`read_ism_table`) when given, else computed (:func:`score_genes`)."""
    variants = run.cohort_variants()
    if ism is not None:
        return read_ism_table(ism, run.bundle, variants)
    return score_genes(run.scorer, variants, run.genome, batch_size=batch_size, progress=progress)


@dataclass(frozen=True)
class IsmJob:
    """One ``varscore ism`` run: score the observed SNVs of each gene's window (``inputs.vcf``) or,
    with ``saturation``, every position × 3 alternative bases; write the table to ``output`` and,
    with ``track``, the per-position ISM as a bedGraph or bigWig (``.bw``). ``argv`` is the command
    recorded in the provenance sidecar (None: this process's). ``selection``: ``--regions`` and
    ``--shard i/N`` (:mod:`varscore.scoring.selection`; genes are chosen by ``inputs.gene_names``)
    keep the SNVs of the VCF records selected (:func:`select_gene_variants`)."""

    inputs: AnalysisInputs
    output: Path
    saturation: bool = False
    track: Path | None = None
    batch_size: int = 8
    progress: bool = False
    argv: Sequence[str] | None = None
    selection: Selection = Selection()


@dataclass
class IsmResult:
    """``table``: the ISM table written (columns :data:`ISM_COLUMNS` plus ``key``; no ``maf``
    without a VCF), of ``genes`` genes; ``output`` and ``track`` the files written."""

    table: pd.DataFrame
    genes: int
    output: Path
    track: Path | None

    def lines(self) -> list[str]:
        """What the command prints on stdout: nothing (the table is the result)."""
        return []

    def notes(self) -> list[str]:
        """What the command prints on stderr: the files written."""
        notes = [f"wrote {self.output} ({len(self.table):,} substitutions, {self.genes} genes)"]
        return notes + ([f"wrote {self.track}"] if self.track is not None else [])


def _position_keys(variants: Sequence[Any], genes: Sequence[Gene]) -> dict[tuple[str, int], int]:
    """``(gene contig, POS)`` of each record of ``variants`` -> its first place among them."""
    from varscore.genome.fasta import match_contigs

    contigs = match_contigs({v.chrom for v in variants}, {g.chrom for g in genes})
    keys: dict[tuple[str, int], int] = {}
    for place, variant in enumerate(variants):
        if variant.chrom in contigs:
            keys.setdefault((contigs[variant.chrom], int(variant.pos)), place)
    return keys


def select_gene_variants(
    vcf: str | Path, variants: dict[str, GeneVariants], genes: Sequence[Gene], selection: Selection, window_size: int
) -> dict[str, GeneVariants]:
    """``variants`` (by gene id) keeping the SNVs of the records of ``vcf`` that ``selection``
    keeps (:func:`varscore.scoring.selection.select_variants`: POS in a region, then the shard's
    block, cut between gene windows so a gene's SNVs all fall in one shard). The shards of one run
    concatenated in shard order equal the whole table only when the genes with SNVs come in the
    order of their first record (the genome's, for a sorted VCF and gene table); otherwise
    ``--shard`` is an error. ``genotypes`` keeps every SNV of the window (ISM reads ``table`` only)."""
    from dataclasses import replace

    from varscore.io.vcf import iter_variants
    from varscore.scoring.selection import header_contigs, select_variants

    records = list(iter_variants(vcf))
    in_regions = select_variants(records, replace(selection, shard=None), genes, window_size, header_contigs(vcf))
    if selection.shard is not None:
        order = _position_keys(in_regions, genes)
        firsts = []
        for gene in genes:
            if gene.gene_id not in variants:
                continue
            places = [order.get((gene.chrom, int(p)), -1) for p in variants[gene.gene_id].table["pos"]]
            places = [place for place in places if place >= 0]
            if places:
                firsts.append((min(places), gene))
        for (before, gene_a), (after, gene_b) in zip(firsts, firsts[1:], strict=False):
            if after < before:
                raise InputError(
                    f"--shard needs the genes in the order of their records: {gene_b.label} comes after "
                    f"{gene_a.label} in the model's genes but before it in the VCF, so the shards would not "
                    "concatenate into the table of one run. Use --regions or --genes-only instead."
                )
        in_regions = select_variants(in_regions, Selection(shard=selection.shard), genes, window_size)
    kept = _position_keys(in_regions, genes)
    out = {}
    for gene_id, gv in variants.items():
        mask = np.array([(gv.gene.chrom, int(p)) in kept for p in gv.table["pos"]], dtype=bool)
        out[gene_id] = replace(gv, table=gv.table[mask].reset_index(drop=True), dosage=gv.dosage[:, mask])
    return out


def _check_selection(job: IsmJob) -> None:
    if not (job.selection.regions or job.selection.shard):
        return
    if job.saturation:
        raise InputError(
            "--saturation scores whole gene windows: --regions and --shard select VCF records; "
            "choose genes with --genes-only instead."
        )
    if job.selection.genes_only:
        raise InputError("varscore ism chooses genes with --genes-only of its inputs, not of the selection.")


def run_ism(job: IsmJob) -> IsmResult:
    """Run ``job``; see :class:`IsmJob`."""
    from varscore.io.outputguard import atomic_file, write_provenance_sidecar
    from varscore.io.progress import Progress

    if job.inputs.vcf is None and not job.saturation:
        raise InputError("Give a VCF (score the cohort's SNVs) or --saturation (every position × 3 bases).")
    _check_selection(job)
    run = job.inputs.load(need_vcf=False)
    selection = job.selection
    variants = run.variants
    if variants is not None and job.inputs.vcf is not None and (selection.regions or selection.shard):
        variants = select_gene_variants(job.inputs.vcf, variants, run.genes, selection, run.scorer.window_size)
    parts = []
    total = alleles_to_score(run.scorer, run.genes, variants, job.saturation)
    with Progress(total, "ism", "alleles", job.progress) as bar:
        for gene in run.genes:
            gene_variants = variants[gene.gene_id] if variants is not None else None
            parts.append(
                ism_table(
                    run.scorer,
                    gene,
                    run.genome,
                    gene_variants,
                    saturation=job.saturation,
                    batch_size=job.batch_size,
                    advance=bar.update,
                )
            )
    table = pd.concat(parts, ignore_index=True)
    if job.inputs.vcf is None:
        table = table.drop(columns=["maf"])
    with atomic_file(job.output) as tmp:  # every float with the digits to read it back exactly
        table.drop(columns=["key"]).to_csv(tmp, sep="\t", index=False, float_format=None)
    write_provenance_sidecar(job.output, run.bundle, job.argv, _selection_record(job, run.genes))
    if job.track is not None:
        write_ism_track(table, job.track, run.genome.lengths)
    return IsmResult(table, len(run.genes), job.output, job.track)


def _selection_record(job: IsmJob, genes: Sequence[Gene]) -> dict[str, Any]:
    """What the provenance sidecar records of a selected run, so ``varscore merge`` can tell that
    shards belong together: the shard, and the input (name and size), genes and regions that decide
    the rows."""
    selection = job.selection
    if not (selection.regions or selection.shard):
        return {}
    vcf = Path(job.inputs.vcf) if job.inputs.vcf is not None else None
    record: dict[str, Any] = {
        "varscore_selection": {
            "input": vcf.name if vcf is not None else None,
            # two inputs of one name (other folders, other cohorts) tell apart by size
            "input_bytes": vcf.stat().st_size if vcf is not None and vcf.is_file() else None,
            "genes": [g.label for g in genes],
            "regions": [[r.chrom, r.start, r.end] for r in selection.regions],
        }
    }
    if selection.shard is not None:
        record["varscore_shard"] = str(selection.shard)
    return record
