"""``varscore report``: run the variant analyses for one model (and models to compare) on a cohort
and write the paper's figures (PNG + PDF), their tables (TSV) and one ``index.html``.

Figures that need an input that was not given are listed in the HTML as "not produced" with the
option that would produce them.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.io.outputguard import atomic_file, write_text

if TYPE_CHECKING:
    from varscore.analysis.ism import ModelScorer

logger = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """What the report runs on. ``linear``: the elastic-net bundle giving k per gene and the sign
    comparison (default: the first linear model among ``compare``). ``ism``: tables ``varscore ism
    --vcf`` wrote, each used for the model its provenance names instead of computing its ISM (which
    the report otherwise computes once per model and passes to every analysis)."""

    model: str
    vcf: Path
    expression: Path
    genes: Path
    fasta: Path | None
    out_dir: Path
    compare: list[str] = field(default_factory=list)
    linear: str | None = None
    people_file: Path | None = None
    gene_names: list[str] | None = None
    k: int | None = None
    truth: Path | None = None
    motifs: str | None = None
    chromhmm: Path | None = None
    finemap: Path | None = None
    attribution: bool = False
    batch_size: int = 8
    device: str = "cpu"
    progress: bool = False
    hsv_min_maf: list[float] = field(default_factory=list)  # HSV analyses repeated without HSVs below each MAF
    ism: list[Path] = field(default_factory=list)
    cache: Path | None = None  # keeps ISM results between runs (varscore.scoring.effect_cache)


@dataclass
class FigureEntry:
    """One figure of the report: produced (``png``/``pdf`` set) or not (``missing`` says why).
    ``caption`` states n, the test and its result; ``tables``: the TSVs it was drawn from;
    ``facts``: what it shows per axes (:func:`varscore.analysis.layout.figure_facts`)."""

    key: str
    title: str
    caption: str
    png: Path | None = None
    pdf: Path | None = None
    missing: str | None = None
    tables: list[str] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReportResult:
    """The report written to ``out_dir``: its ``html`` page, every figure (produced or not), the
    ``tables`` by name and the ``numbers`` quoted on the page."""

    out_dir: Path
    html: Path
    figures: list[FigureEntry]
    tables: dict[str, Path]
    numbers: dict[str, Any]

    def lines(self) -> list[str]:
        """What the command prints on stdout: the page written and its number of figures."""
        made = [f for f in self.figures if f.missing is None]
        return [f"wrote {self.html} ({len(made)} figures)"]

    def notes(self) -> list[str]:
        """What the command prints on stderr: the figures not produced, and why."""
        return [f"not produced: {f.title}: {f.missing}" for f in self.figures if f.missing]


@dataclass
class _ModelRun:
    name: str
    scorer: ModelScorer
    variants: dict[str, Any]
    ism: pd.DataFrame
    predictions: dict[str, np.ndarray]


def _load_models(config: ReportConfig) -> tuple[Any, list[Any], Any]:
    from varscore.models.bundle import load_bundle

    main = load_bundle(config.model)
    others = [load_bundle(m) for m in config.compare]
    names = [main.name, *[b.name for b in others]]
    if len(set(names)) != len(names):
        raise InputError(f"Models to compare must have different names; got {', '.join(names)}.")
    if config.linear is not None:
        linear = next((b for b in others if b.name == config.linear or str(b.path) == config.linear), None)
        linear = linear or load_bundle(config.linear)
    else:
        linear = next((b for b in others if b.takes_genotypes), None)
    return main, others, linear


def _observed(config: ReportConfig, main: Any, window: int) -> tuple[dict[str, pd.Series], list[str]]:
    """Observed expression per gene label (indexed by person) and the held-out people."""
    from varscore.training.cohort import held_out_people
    from varscore.training.lightning import CohortInputs, load_cohort

    carried = main.carried_folds()
    folds, replicate = carried if carried is not None else (None, main.spec.folds.replicate if main.spec.folds else 0)
    fasta = config.fasta or main.reference_fasta
    inputs = CohortInputs(config.vcf, config.expression, config.genes, fasta, folds, replicate, config.gene_names)
    cohort = load_cohort(inputs, window)
    for line in cohort.report:
        logger.info(line)
    data = cohort.data
    observed = {g.gene.label: pd.Series(g.expression, index=data.people) for g in data.genes}
    return observed, held_out_people(main, config.people_file, cohort_people=data.people)


def ism_tables_by_model(paths: Sequence[Path]) -> dict[str, Path]:
    """The ``--ism`` tables by the model name their provenance sidecar records (checked in full,
    weights checksum included, when read)."""
    import json

    found: dict[str, Path] = {}
    for path in paths:
        try:
            name = json.loads(Path(f"{path}.provenance.json").read_text())["varscore_model"]["ID"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"--ism {path}: its provenance sidecar {path}.provenance.json names no model ({exc}); give a table "
                "written by 'varscore ism'."
            ) from None
        if name in found:
            raise InputError(f"--ism {found[name]} and {path} are both tables of model '{name}': give one.")
        found[str(name)] = Path(path)
    return found


def _run_model(bundle: Any, config: ReportConfig, genome: Any, genes: list[Any], people: list[str]) -> _ModelRun:
    from varscore.analysis.ism import ModelScorer, read_gene_variants, read_ism_table, score_genes
    from varscore.io.progress import progress_iter

    scorer = ModelScorer.from_bundle(bundle, device=config.device, cache=config.cache)
    genes = [g for g in genes if scorer.has_gene(g)]
    variants = read_gene_variants(config.vcf, genes, genome, scorer.window_size)
    given = ism_tables_by_model(config.ism).get(bundle.name)
    if given is not None:
        ism = read_ism_table(given, bundle, variants)
    else:
        ism = score_genes(scorer, variants, genome, batch_size=config.batch_size, progress=config.progress)
    predictions = {}
    for gv in progress_iter(list(variants.values()), f"report: predict {scorer.name}", "genes", config.progress):
        predictions[gv.gene.label] = scorer.predict_people(gv, gv.people_rows(people), batch_size=config.batch_size)
    return _ModelRun(bundle.name, scorer, variants, ism.assign(model=bundle.name), predictions)


def _motif_hits(
    config: ReportConfig, genome: Any, genes: list[Any], tables: list[pd.DataFrame], window: int
) -> set[tuple[str, str]]:
    """(gene, key) of the variants in ``tables`` whose ALT allele changes a motif match."""
    from varscore.plugin.contracts import AnnotationContext
    from varscore.plugin.manager import get_annotator
    from varscore.types import Variant, tss_window

    annotator = get_annotator("motifs")(motifs=config.motifs)
    rows = pd.concat(tables, ignore_index=True).drop_duplicates(["key"])
    variants = [
        Variant(str(r.chrom), int(r.pos), str(r.ref), (str(r.alt),), index=i) for i, r in enumerate(rows.itertuples())
    ]
    context = AnnotationContext(genes=genes, windows={g.gene_id: tss_window(g, window) for g in genes}, fasta=genome)
    frame = annotator.annotate(variants, context)
    changed = {key for key, value in frame.iloc[:, 0].items() if isinstance(value, str) and value}
    all_rows = pd.concat(tables, ignore_index=True)
    return {(g, k) for g, k in zip(all_rows["gene"], all_rows["key"], strict=True) if k in changed}


@dataclass
class _Report:
    """What the report's steps share: the inputs, each model's run, the analyses' tables as they
    are computed, and the figures and tables written so far (see :data:`REPORT_STEPS`)."""

    config: ReportConfig
    out: Path
    main: Any
    linear: Any
    models: list[str]
    genome: Any
    genes: list[Any]
    people: list[str]
    observed: dict[str, pd.Series]
    runs: dict[str, _ModelRun]
    figures: list[FigureEntry] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    ism_all: pd.DataFrame = field(default_factory=pd.DataFrame)
    hsvs: pd.DataFrame = field(default_factory=pd.DataFrame)
    hsv_controls: pd.DataFrame = field(default_factory=pd.DataFrame)
    drivers: pd.DataFrame = field(default_factory=pd.DataFrame)
    drivers_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    driver_controls: pd.DataFrame = field(default_factory=pd.DataFrame)
    motif_pairs: set[tuple[str, str]] = field(default_factory=set)
    motif_missing: str | None = None
    motif_keys: set[tuple[str, str, str]] = field(default_factory=set)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        path = self.out / f"{name}.tsv"
        with atomic_file(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        self.tables[name] = path

    def figure(
        self,
        key: str,
        title: str,
        caption: str,
        make: Any = None,
        missing: str | None = None,
        sources: Sequence[str] = (),
    ) -> None:
        from varscore.analysis import plots
        from varscore.analysis.layout import figure_facts

        entry = FigureEntry(key, title, caption, missing=missing, tables=list(sources))
        if missing is None:
            fig = make()
            entry.facts = figure_facts(fig)
            entry.png, entry.pdf = plots.save_figure(fig, self.out, key)
        self.figures.append(entry)

    def motif_test(self, selected: pd.DataFrame, controls: pd.DataFrame, label: str) -> str:
        """The one-sided Fisher test of motif-changing variants among ``selected`` vs their controls."""
        from varscore.analysis.hsv import causal_enrichment
        from varscore.analysis.matched import describe_p

        parts = []
        for name in self.models:
            sel, ctl = selected[selected["model"] == name], controls[controls["model"] == name]
            result = causal_enrichment(sel, ctl, self.motif_pairs)
            parts.append(
                f"{name}: {result.selected_causal}/{result.selected} {label} vs {result.controls_causal}/"
                f"{result.controls} controls, {describe_p(result.p_value, result.selected)}"
            )
        return "; ".join(parts)

    def motif_rates(self, selected: pd.DataFrame, controls: pd.DataFrame, label: str) -> pd.DataFrame:
        rows = []
        for name in self.models:
            for group, frame in ((label, selected), ("matched controls", controls)):
                part = frame[frame["model"] == name].drop_duplicates(["gene", "key"])
                k = sum((g, key) in self.motif_pairs for g, key in zip(part["gene"], part["key"], strict=True))
                rows.append(
                    {
                        "model": name,
                        "group": group,
                        "k": k,
                        "n": len(part),
                        "rate": k / len(part) if len(part) else math.nan,
                    }
                )
        return pd.DataFrame(rows)


def _accuracy(r: _Report) -> None:
    """Fig. 1: accuracy across held-out people (bootstrap CIs over the people, seeded)."""
    from varscore.analysis import plots
    from varscore.training.lightning import per_gene_metrics
    from varscore.training.uncertainty import N_BOOT, SEED, bootstrap_indices, gene_uncertainty

    people, main, models = r.people, r.main, r.models
    boot = bootstrap_indices(len(people), N_BOOT, SEED)
    pred_rows, metric_rows = [], []
    for name, run in r.runs.items():
        for label, pred in run.predictions.items():
            obs = r.observed[label].loc[people].to_numpy()
            pred_rows.append(
                pd.DataFrame({"model": name, "gene": label, "person": people, "observed": obs, "predicted": pred})
            )
            ((r2, pearson),) = per_gene_metrics(np.zeros(len(obs), dtype=np.int64), pred, obs, 1)
            metric_rows.append(
                {
                    "model": name,
                    "gene": label,
                    "people": len(obs),
                    "r2": r2,
                    "pearson": pearson,
                    **gene_uncertainty(obs, pred, boot),
                }
            )
    predictions = r.predictions = pd.concat(pred_rows, ignore_index=True)
    metrics = r.metrics = pd.DataFrame(metric_rows)
    r.table("predictions", predictions)
    r.table("metrics", metrics)
    main_rows = metrics[metrics["model"] == main.name]
    best = main_rows.loc[main_rows["r2"].idxmax()] if main_rows["r2"].notna().any() else None
    r.figure(
        "fig1a_observed_vs_predicted",
        "Fig. 1a — observed vs predicted expression",
        f"n = {len(people)} held-out people per panel, {len(r.genes)} genes; r: Pearson's correlation (two-sided "
        "t test p-values and bootstrap 95% CIs in metrics.tsv)."
        + (
            f" Best {main.name} gene: {best['gene']}, r = {best['pearson']:.2f} "
            f"(95% CI {best['pearson_lo']:.2f}–{best['pearson_hi']:.2f}, p = {best['pearson_p']:.2g})."
            if best is not None
            else ""
        ),
        lambda: plots.observed_vs_predicted(predictions, models),
        sources=["predictions", "metrics"],
    )
    compared = [m for m in models if m != main.name]
    for key, metric, label in (
        ("fig1b_r2_between_models", "r2", "R²"),
        ("fig1c_pearson_between_models", "pearson", "Pearson r"),
    ):
        wide = metrics.pivot_table(index="gene", columns="model", values=metric)
        counts = "; ".join(
            f"{main.name} higher on {int((wide[main.name] > wide[o]).sum())} of "
            f"{int(wide[[main.name, o]].notna().all(axis=1).sum())} genes vs {o}"
            for o in compared
            if o in wide
        )
        r.figure(
            key,
            f"Fig. 1{key[4]} — per-gene {label}, {main.name} vs other models",
            f"n = {len(wide)} genes (points), each across {len(people)} held-out people; {counts}. Lines: 95% "
            f"percentile-bootstrap CIs ({N_BOOT} resamples of the people, seed {SEED}). No test across genes: "
            "with this few genes, read the per-gene intervals (paired differences: varscore evaluate --compare).",
            lambda metric=metric: plots.metric_between_models(metrics, metric, main.name, compared),
            missing=None if compared else "needs --compare MODEL",
            sources=["metrics"],
        )


def _high_scoring(r: _Report) -> None:
    """HSVs: k per gene from the elastic net (or --k), and their matched controls."""
    from varscore.analysis.hsv import HSV_MAF_TOLERANCE, high_scoring_variants, k_from_linear, matched_controls

    if r.linear is not None:
        per_id = k_from_linear(r.runs[r.linear.name].scorer.backbone)
        k_by_gene: dict[str, int] | int = {g.label: per_id[g.gene_id] for g in r.genes if g.gene_id in per_id}
    else:
        k_by_gene = r.config.k or 10
    r.numbers["k"] = k_by_gene
    r.ism_all = pd.concat([run.ism for run in r.runs.values()], ignore_index=True)
    hsv_parts, control_parts = [], []
    for name, run in r.runs.items():
        picked = high_scoring_variants(run.ism, k_by_gene).assign(model=name)
        hsv_parts.append(picked)
        control_parts.append(matched_controls(picked, run.ism, HSV_MAF_TOLERANCE).assign(model=name))
    r.hsvs = pd.concat(hsv_parts, ignore_index=True)
    r.hsv_controls = pd.concat(control_parts, ignore_index=True)
    r.table("ism", r.ism_all)
    r.table("hsvs", r.hsvs)


def _drivers(r: _Report) -> None:
    """Drivers (sequence models: forward selection; genotype models: the variants they use, e.g. an
    elastic net's non-zero coefficients) and their matched controls."""
    from varscore.analysis.drivers import find_drivers, ld_pairs, mean_pairwise_ld
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, matched_controls

    driver_parts, driver_summary = [], []
    for name, run in r.runs.items():
        if run.scorer.declares_drivers:
            chosen = []
            for gv in run.variants.values():
                nonzero = run.scorer.model_drivers(gv.gene)
                rows = run.ism[(run.ism["gene"] == gv.gene.label) & run.ism["key"].isin(nonzero)]
                chosen.append(rows)
                cols = np.flatnonzero(gv.table["key"].isin(nonzero).to_numpy())
                driver_summary.append(
                    {
                        "model": name,
                        "gene": gv.gene.label,
                        "drivers": len(rows),
                        "mean_ld": mean_pairwise_ld(gv.dosage[:, cols]),
                        "ld_pairs": ld_pairs(gv.dosage[:, cols]),
                    }
                )
            driver_parts.append(pd.concat(chosen, ignore_index=True).assign(model=name))
            continue
        found, summary = find_drivers(
            run.scorer,
            run.variants,
            run.ism,
            r.people,
            batch_size=r.config.batch_size,
            progress=r.config.progress,
            predictions=run.predictions,
        )
        driver_parts.append(found.assign(model=name))
        driver_summary.extend(summary.assign(model=name).to_dict("records"))
    drivers = r.drivers = pd.concat(driver_parts, ignore_index=True)
    r.drivers_summary = pd.DataFrame(driver_summary).merge(
        r.metrics[["model", "gene", "r2"]], on=["model", "gene"], how="left"
    )
    r.driver_controls = pd.concat(
        [
            matched_controls(drivers[drivers["model"] == m], r.runs[m].ism, DRIVER_MAF_TOLERANCE).assign(model=m)
            for m in r.models
        ],
        ignore_index=True,
    )
    if r.linear is not None:
        lin_r2 = r.metrics[r.metrics["model"] == r.linear.name].set_index("gene")["r2"]
        r.drivers_summary["r2_relative"] = r.drivers_summary["r2"] - r.drivers_summary["gene"].map(lin_r2)
    r.table("drivers", drivers)
    r.table("drivers_summary", r.drivers_summary)


def _motif_changes(r: _Report) -> None:
    """Which HSVs, drivers and controls change a motif match (the motifs annotator), when asked for."""
    r.motif_missing = "needs --motifs (a JASPAR release such as JASPAR2024, or a MEME/JASPAR/HOCOMOCO file)"
    if r.config.motifs:
        from varscore.errors import PluginError

        try:
            r.motif_pairs = _motif_hits(
                r.config,
                r.genome,
                r.genes,
                [r.hsvs, r.hsv_controls, r.drivers, r.driver_controls],
                r.main.window_size,
            )
            r.motif_missing = None
        except PluginError as exc:
            r.motif_missing = f"needs the motifs annotator plugin ({exc})"
    hsvs = r.hsvs
    r.motif_keys = {
        (m, g, k) for m, g, k in zip(hsvs["model"], hsvs["gene"], hsvs["key"], strict=True) if (g, k) in r.motif_pairs
    }


def _fig2a_weights(r: _Report) -> None:
    from varscore.analysis import plots

    ism_all, hsvs, models = r.ism_all, r.hsvs, r.models
    window_sizes = {n: run.scorer.window_size for n, run in r.runs.items()}
    scored = "; ".join(
        f"{n}: {int((ism_all['model'] == n).sum())} variants scored, {int((hsvs['model'] == n).sum())} "
        f"HSVs, {window_sizes[n] / 1000:g}-kb window"
        for n in models
    )
    r.figure(
        "fig2a_weights_vs_distance",
        "Fig. 2a — variant weights vs distance to TSS",
        f"n: {scored}. Each model scores only the variants inside its own input window (the windows differ: "
        "a sequence model sees the sequence it was trained on, a linear model every SNV of its larger window); "
        "narrower windows are shaded. ISM (alt − ref) for sequence models; 2 × coefficient (homozygous ALT, the "
        f"same scale) for linear models. {r.main.name} is drawn on top (filled); other models as open markers. "
        "No test. Large markers are HSVs"
        + (
            "; light vertical lines mark HSVs that change a TF motif."
            if r.motif_keys
            else "."
            if r.motif_missing is None
            else f" (motif marks not drawn: {r.motif_missing})."
        ),
        lambda: plots.weights_vs_distance(ism_all, hsvs, models, r.motif_keys, window_sizes),
        sources=["ism", "hsvs"],
    )


def _fig2c_sign_agreement(r: _Report) -> None:
    """Fig. 2c: sign agreement with the linear model."""
    from varscore.analysis import plots
    from varscore.analysis.hsv import sign_agreement, weight_pairs
    from varscore.analysis.matched import MIN_PAIRS, describe_p

    linear = r.linear
    if linear is None:
        r.figure(
            "fig2c_sign_agreement",
            "Fig. 2c — sign agreement with the linear model",
            "",
            missing="needs --linear or an elastic-net model among --compare",
        )
        return
    pairs_parts, agreements, all_pairs = [], {}, {}
    for name in r.models:
        if name == linear.name:
            continue
        pair = weight_pairs(r.runs[linear.name].scorer, r.genes, r.runs[name].ism).assign(model=name)
        pair = pair[["model", "gene", "key", "linear_weight", "model_weight"]]
        pairs_parts.append(pair)
        agreements[name] = sign_agreement(pair["model_weight"], pair["linear_weight"], 0.05)
        all_pairs[name] = sign_agreement(pair["model_weight"], pair["linear_weight"], 0.0)
    if not agreements:
        r.figure(
            "fig2c_sign_agreement",
            "Fig. 2c — sign agreement",
            "",
            missing="needs a non-linear model besides the linear one",
        )
        return
    pairs = pd.concat(pairs_parts, ignore_index=True)
    r.table("sign_agreement_pairs", pairs)
    r.numbers["sign_agreement"] = {
        f"{m} ({label})": {
            "agree": a.agree,
            "n": a.n,
            "fraction": a.fraction,
            "fisher_p": a.p_value,
            "result": describe_p(a.p_value, a.n),
        }
        for m in agreements
        for label, a in (("|w| > 0.05", agreements[m]), ("all pairs", all_pairs[m]))
    }
    agree_text = "; ".join(
        f"{m}: {a.agree}/{a.n} agree with both |w| > 0.05 ({describe_p(a.p_value, a.n)}), "
        f"{all_pairs[m].agree}/{all_pairs[m].n} over all pairs "
        f"({describe_p(all_pairs[m].p_value, all_pairs[m].n)})"
        for m, a in agreements.items()
    )
    r.figure(
        "fig2c_sign_agreement",
        f"Fig. 2c — sign agreement with {linear.name}",
        f"n: variants with a non-zero {linear.name} coefficient (points). Test: Fisher's exact test "
        f"(two-sided) of the 2×2 table of signs, given only from {MIN_PAIRS} pairs up. Result: {agree_text}. "
        "The ISM axis is symmetric-log so that small and large weights are both visible.",
        lambda: plots.sign_agreement_plot(pairs, linear.name, agreements, all_pairs),
        sources=["sign_agreement_pairs"],
    )


def _fig3a_chromhmm(r: _Report) -> None:
    from varscore.analysis import plots

    if r.config.chromhmm is None:
        r.figure(
            "fig3a_chromhmm_enrichment",
            "Fig. 3a — chromatin-state enrichment of HSVs",
            "",
            missing="needs --chromhmm BED (a ChromHMM segmentation)",
        )
        return
    from varscore.analysis.enrichment import read_segmentation, state_enrichment
    from varscore.types import tss_window

    hsvs = r.hsvs
    segmentation = read_segmentation(r.config.chromhmm)
    per_state = pd.concat(
        [
            state_enrichment(
                hsvs[hsvs["model"] == name],
                {g.label: tss_window(g, run.scorer.window_size) for g in r.genes},
                segmentation,
            ).per_state
            for name, run in r.runs.items()
        ],
        ignore_index=True,
    )
    r.table("chromhmm_enrichment", per_state)
    r.figure(
        "fig3a_chromhmm_enrichment",
        "Fig. 3a — chromatin-state enrichment of HSVs",
        "Per state: ln of the HSVs observed in it over those expected from the state's share of the annotated "
        f"bases of each gene's window, summed over genes; n = {len(hsvs)} HSVs over {len(r.genes)} genes "
        "(bar label: HSVs in the state). No test.",
        lambda: plots.state_enrichment_plot(per_state, r.models),
        sources=["chromhmm_enrichment", "hsvs"],
    )


def _fig3b_hsv_motifs(r: _Report) -> None:
    from varscore.analysis import plots

    hsv_motif = r.motif_rates(r.hsvs, r.hsv_controls, "HSVs") if r.motif_missing is None else None
    if hsv_motif is not None:
        r.table("motif_rates_hsvs", hsv_motif)
    r.figure(
        "fig3b_motif_changes",
        "Fig. 3b — HSVs that change a TF motif",
        "Share of HSVs (and of their distance- and MAF-matched controls: ±2.5 kb, MAF ±0.5%) whose ALT allele "
        "creates, strengthens, weakens or destroys a motif match (the motifs annotator's default threshold; "
        "motifbreakR effect strong or weak). Test: one-sided Fisher exact, HSVs vs distinct controls. "
        + (r.motif_test(r.hsvs, r.hsv_controls, "HSVs") + "." if r.motif_missing is None else ""),
        lambda: plots.rate_bars(hsv_motif, "HSVs changing a TF motif", "share of variants"),
        missing=r.motif_missing,
        sources=["motif_rates_hsvs", "hsvs"],
    )


def _fig3c_finemap(r: _Report) -> None:
    from varscore.analysis import plots

    if r.config.finemap is None:
        r.figure(
            "fig3c_finemap_auroc",
            "Fig. 3c — fine-mapped eQTL auROC / auPR",
            "",
            missing="needs --finemap TABLE (CAVIAR, SuSiE or DAP-G fine-mapping)",
        )
        return
    from varscore.analysis.finemapping import evaluate_finemap, read_finemap_table

    evaluation = evaluate_finemap(
        r.ism_all[["model", "gene", "chrom", "pos", "delta"]],
        read_finemap_table(r.config.finemap),
        {g.label: g for g in r.genes},
    )
    r.table("finemap_per_gene", evaluation.per_gene)
    r.table("finemap_overall", evaluation.overall)
    r.numbers["finemap"] = evaluation.overall.to_dict("records")
    r.figure(
        "fig3c_finemap_auroc",
        "Fig. 3c — fine-mapped eQTL auROC / auPR",
        "Positives: fine-mapped variants (posterior ≥ 0.1); 5 distance-matched negatives each; score: "
        "|variant weight|; n: positives and negatives per model in finemap_overall.tsv. No test.",
        lambda: plots.finemap_plot(evaluation.per_gene, evaluation.overall, r.models),
        sources=["finemap_per_gene", "finemap_overall"],
    )


def _fig3d_maf(r: _Report) -> None:
    from varscore.analysis import plots

    hsvs = r.hsvs
    r.figure(
        "fig3d_hsv_maf",
        "Fig. 3d — MAF of HSVs",
        "Minor-allele frequency in the cohort (all people); n per model under each box ("
        + ", ".join(f"{m}: {int((hsvs['model'] == m).sum())}" for m in r.models)
        + "). No test.",
        lambda: plots.maf_distribution(hsvs, r.models, "HSVs"),
        sources=["hsvs"],
    )


def _fig4_drivers(r: _Report) -> None:
    """Fig. 4e–g: drivers' performance vs LD, their distance to the TSS and their motif changes."""
    from varscore.analysis import plots
    from varscore.analysis.drivers import LD_NAN_REASON

    summary, drivers, models = r.drivers_summary, r.drivers, r.models
    no_ld = int(summary["mean_ld"].isna().sum())
    r.figure(
        "fig4e_drivers_ld",
        "Fig. 4e — drivers: performance vs LD",
        f"n = {len(summary)} (model, gene) points. Sequence models: drivers (forward selection on "
        f"{len(r.people)} held-out people); linear models: non-zero coefficients. x: mean pairwise r² of a gene's "
        f"drivers; {no_ld} points have no pair ({LD_NAN_REASON}) and sit in the 'n/a' column. y: R² on the "
        "held-out people. Marker area ∝ number of drivers. No test.",
        lambda: plots.drivers_overview(summary, models, r.linear.name if r.linear is not None else None),
        sources=["drivers_summary", "metrics"],
    )
    r.figure(
        "fig4f_driver_distance",
        "Fig. 4f — distance to TSS of drivers",
        "Sequence models: drivers; linear models: non-zero coefficients; n per model on the axis. No test.",
        lambda: plots.distance_distribution(drivers, models, "drivers (linear models: non-zero coefficients)"),
        sources=["drivers"],
    )
    driver_motif = r.motif_rates(drivers, r.driver_controls, "drivers") if r.motif_missing is None else None
    if driver_motif is not None:
        r.table("motif_rates_drivers", driver_motif)
    r.figure(
        "fig4g_driver_motifs",
        "Fig. 4g — drivers that change a TF motif",
        "Share of drivers (linear models: non-zero coefficients) and of their matched controls (±2.5 kb, MAF "
        "±10%) whose ALT allele changes a motif match. Test: one-sided Fisher exact. "
        + (r.motif_test(drivers, r.driver_controls, "drivers") + "." if r.motif_missing is None else ""),
        lambda: plots.rate_bars(driver_motif, "Drivers changing a TF motif", "share of variants"),
        missing=r.motif_missing,
        sources=["motif_rates_drivers", "drivers"],
    )


def _attribution(r: _Report) -> None:
    """Gradient × input at HSVs/drivers vs their matched controls (sequence models)."""
    from varscore.analysis import plots

    sequence_models = [n for n in r.models if r.runs[n].scorer.scores_sequence]
    if not (r.config.attribution and sequence_models):
        r.figure(
            "figS10_attribution",
            "Standardised gradient × input at HSVs and drivers",
            "",
            missing="needs --attribution (and a sequence model)",
        )
        return
    from varscore.analysis.attribution import attribute_gene
    from varscore.io.progress import progress_iter

    rows = []
    for name in sequence_models:
        run = r.runs[name]
        for gv in progress_iter(list(run.variants.values()), f"report: attribution {name}", "genes", r.config.progress):
            gene_attr = attribute_gene(run.scorer, gv, gv.people_rows(r.people), batch_size=r.config.batch_size)
            for group, frame in (
                ("HSVs", r.hsvs),
                ("HSV controls", r.hsv_controls),
                ("drivers", r.drivers),
                ("driver controls", r.driver_controls),
            ):
                part = frame[(frame["model"] == name) & (frame["gene"] == gv.gene.label)]
                part = part.drop_duplicates(["key"])
                for background in ("reference", "personal"):
                    for value in gene_attr.at(part["pos"].to_numpy(), background):
                        rows.append(
                            {
                                "model": name,
                                "gene": gv.gene.label,
                                "group": group,
                                "background": background,
                                "value": value,
                            }
                        )
    attributions = pd.DataFrame(rows)
    r.table("attribution_at_variants", attributions)
    r.figure(
        "figS10_attribution",
        "Standardised gradient × input at HSVs and drivers",
        "Reference: the reference window; personal: the mean over held-out people's windows. Controls are "
        "matched by distance to TSS (±2.5 kb) and MAF; n per bar under it. Bars: mean with a 95% bootstrap "
        "CI (1,000 resamples of variants). No test.",
        lambda: plots.attribution_at_variants(attributions, sequence_models),
        sources=["attribution_at_variants"],
    )


def _causal_truth(r: _Report) -> None:
    """Simulation truth: enrichment of HSVs and drivers for causal variants."""
    from varscore.analysis import plots
    from varscore.analysis.hsv import (
        DRIVER_MAF_TOLERANCE,
        HSV_MAF_TOLERANCE,
        causal_enrichment,
        read_truth,
    )
    from varscore.analysis.matched import MIN_PAIRS, describe_p, permutation_enrichment, tolerance_sensitivity

    if r.config.truth is None:
        r.figure(
            "figS_causal_enrichment",
            "Causal variants among HSVs and drivers",
            "",
            missing="needs --truth truth_variants.tsv (a simulated cohort)",
        )
        return
    causal = read_truth(str(r.config.truth))
    rows, enrich, sensitivity = [], {}, []
    for name in r.models:
        for label, sel, ctl, tolerance in (
            ("HSVs", r.hsvs, r.hsv_controls, HSV_MAF_TOLERANCE),
            ("drivers", r.drivers, r.driver_controls, DRIVER_MAF_TOLERANCE),
        ):
            chosen = sel[sel["model"] == name]
            result = causal_enrichment(chosen, ctl[ctl["model"] == name], causal)
            perm = permutation_enrichment(chosen, r.runs[name].ism, causal, tolerance)
            enrich[f"{name} {label}"] = {
                **result.__dict__,
                "fisher": describe_p(result.p_value, result.selected),
                "perm": perm.describe(),
                "matched": perm.matched,
                "perm_null_mean": perm.null_mean,
                "rule": perm.rule,
                "median_candidates": perm.median_candidates,
            }
            sensitivity.append(tolerance_sensitivity(chosen, r.runs[name].ism, causal).assign(model=name, group=label))
            rows.append(
                {
                    "model": name,
                    "group": label,
                    "k": result.selected_causal,
                    "n": result.selected,
                    "rate": result.selected_rate,
                }
            )
            rows.append(
                {
                    "model": name,
                    "group": f"{label} controls",
                    "k": result.controls_causal,
                    "n": result.controls,
                    "rate": result.control_rate,
                }
            )
    truth_rates = pd.DataFrame(rows)
    r.table("causal_enrichment", truth_rates)
    tolerance_table = pd.concat(sensitivity, ignore_index=True)
    r.table("causal_enrichment_tolerance", tolerance_table)
    r.numbers["causal_enrichment"] = enrich
    r.numbers["causal_enrichment_tolerance"] = tolerance_table
    results = "; ".join(
        f"{k}: {v['selected_causal']}/{v['selected']} causal, permutation {v['perm']}, Fisher {v['fisher']}"
        for k, v in enrich.items()
    )
    r.figure(
        "figS_causal_enrichment",
        "Causal variants among HSVs and drivers (simulation truth)",
        "Share of selected variants that are true causal variants of their gene, vs their distance- and "
        "MAF-matched controls (±2.5 kb; MAF within 0.5% for HSVs, 10% for drivers). Linear models: their "
        "non-zero coefficients stand in for drivers. Tests: a one-sided permutation test (2,000 matched "
        "control sets, one control drawn per selected variant with a match) and the one-sided Fisher exact "
        f"test against all distinct controls; no p-value below {MIN_PAIRS} variants. Results: {results}. "
        "How both depend on the MAF tolerance: causal_enrichment_tolerance.tsv and the table above.",
        lambda: plots.rate_bars(truth_rates, "Causal variants (simulated truth)", "share causal"),
        sources=["causal_enrichment", "causal_enrichment_tolerance"],
    )


def _maf_filtered(r: _Report) -> None:
    """Fig. S8: the HSV enrichments (motif changes, chromatin states, causal variants) repeated
    after removing the HSVs with a MAF below each of ``config.hsv_min_maf``; the controls are
    matched again to the HSVs left."""
    if not r.config.hsv_min_maf:
        return
    from varscore.analysis import plots
    from varscore.analysis.hsv import HSV_MAF_TOLERANCE, causal_enrichment, filter_by_maf, matched_controls, read_truth

    pair_sets = {}
    if r.motif_missing is None:
        pair_sets["motif change"] = r.motif_pairs
    if r.config.truth is not None:
        pair_sets["causal (truth)"] = read_truth(str(r.config.truth))
    kept_parts, rate_rows, state_parts = [], [], []
    for threshold in r.config.hsv_min_maf:
        kept = pd.concat([filter_by_maf(r.hsvs[r.hsvs["model"] == m], threshold) for m in r.models], ignore_index=True)
        controls = pd.concat(
            [
                matched_controls(kept[kept["model"] == m], r.runs[m].ism, HSV_MAF_TOLERANCE).assign(model=m)
                for m in r.models
            ],
            ignore_index=True,
        )
        kept_parts.append(kept.assign(min_maf=threshold))
        for analysis, pairs in pair_sets.items():
            for name in r.models:
                result = causal_enrichment(kept[kept["model"] == name], controls[controls["model"] == name], pairs)
                for group, k, n, rate in (
                    ("HSVs", result.selected_causal, result.selected, result.selected_rate),
                    ("controls", result.controls_causal, result.controls, result.control_rate),
                ):
                    rate_rows.append(
                        {
                            "min_maf": threshold,
                            "analysis": analysis,
                            "model": name,
                            "group": f"{group}, MAF ≥ {threshold:g}",
                            "k": k,
                            "n": n,
                            "rate": rate,
                            "fisher_p": result.p_value if group == "HSVs" else math.nan,
                        }
                    )
        if r.config.chromhmm is not None:
            from varscore.analysis.enrichment import read_segmentation, state_enrichment
            from varscore.types import tss_window

            segmentation = read_segmentation(r.config.chromhmm)
            for name, run in r.runs.items():
                if not (kept["model"] == name).any():
                    continue  # no HSV of this model reaches the threshold
                windows = {g.label: tss_window(g, run.scorer.window_size) for g in r.genes}
                per_state = state_enrichment(kept[kept["model"] == name], windows, segmentation).per_state
                state_parts.append(per_state.assign(min_maf=threshold))
    kept_all = pd.concat(kept_parts, ignore_index=True)
    r.table("hsvs_maf_filtered", kept_all)
    r.numbers["hsv_min_maf"] = {
        f"{m} MAF ≥ {t:g}": int(((kept_all["model"] == m) & (kept_all["min_maf"] == t)).sum())
        for t in r.config.hsv_min_maf
        for m in r.models
    }
    rates = pd.DataFrame(rate_rows)
    if not rates.empty:
        r.table("hsv_enrichment_maf_filtered", rates)
    left = "; ".join(f"{k}: {v} HSVs" for k, v in r.numbers["hsv_min_maf"].items())
    for analysis, key in (("motif change", "figS8_motif_changes_maf"), ("causal (truth)", "figS8_causal_maf")):
        part = rates[rates["analysis"] == analysis] if not rates.empty else rates
        tests = (
            "; ".join(
                f"{row.model} MAF ≥ {row.min_maf:g}: {row.k}/{row.n}, one-sided Fisher p = {row.fisher_p:.3g}"
                for row in part[part["group"].str.startswith("HSVs")].itertuples()
            )
            if not part.empty
            else ""
        )
        r.figure(
            key,
            f"Fig. S8 — HSVs ({analysis}) after removing rare HSVs",
            f"HSVs left after removing those with MAF below each threshold ({left}), vs controls matched again to "
            f"them (±2.5 kb, MAF ±0.5%). Test: one-sided Fisher exact, HSVs vs distinct controls: {tests}.",
            lambda part=part, analysis=analysis: plots.rate_bars(part, f"HSVs: {analysis}", "share of variants"),
            missing=None
            if not part.empty
            else ("needs --motifs" if analysis == "motif change" else "needs --truth truth_variants.tsv"),
            sources=["hsv_enrichment_maf_filtered", "hsvs_maf_filtered"],
        )
    if state_parts:
        states = pd.concat(state_parts, ignore_index=True)
        r.table("chromhmm_enrichment_maf_filtered", states)
        for threshold in r.config.hsv_min_maf:
            part = states[states["min_maf"] == threshold]
            r.figure(
                f"figS8_chromhmm_maf{threshold:g}",
                f"Fig. S8 — chromatin-state enrichment of HSVs with MAF ≥ {threshold:g}",
                f"As Fig. 3a, over the HSVs left after removing those with MAF < {threshold:g} ({left}). No test.",
                lambda part=part: plots.state_enrichment_plot(part, r.models),
                sources=["chromhmm_enrichment_maf_filtered", "hsvs_maf_filtered"],
            )


#: The report's steps, in order: analyses first (each fills tables of :class:`_Report` that later
#: steps read), then one builder per figure or group of figures. Each writes its tables and adds
#: its figures, produced or listed as "not produced" with the option that would produce them.
REPORT_STEPS = (
    _accuracy,
    _high_scoring,
    _drivers,
    _motif_changes,
    _fig2a_weights,
    _fig2c_sign_agreement,
    _fig3a_chromhmm,
    _fig3b_hsv_motifs,
    _fig3c_finemap,
    _fig3d_maf,
    _fig4_drivers,
    _attribution,
    _causal_truth,
    _maf_filtered,
)


def build_report(config: ReportConfig) -> ReportResult:
    """Run every analysis the inputs allow and write the report into ``config.out_dir``."""
    import json

    from varscore.genome.fasta import Genome, load_genes

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main, others, linear = _load_models(config)
    bundles = [main, *others]
    if linear is not None and linear.name not in {b.name for b in bundles}:
        bundles.append(linear)
    models = [b.name for b in bundles]
    unused = sorted(set(ism_tables_by_model(config.ism)) - set(models))
    if unused:
        raise InputError(
            f"--ism gives tables of {', '.join(unused)}, not a model of this report ({', '.join(models)})."
        )
    fasta = config.fasta or main.reference_fasta
    if fasta is None:
        raise InputError(f"Model '{main.name}' records no reference FASTA: pass --fasta.")
    genome = Genome(fasta)
    observed, people = _observed(config, main, main.window_size)
    genes = [g for g in load_genes(config.genes, names=config.gene_names) if g.label in observed]
    runs = {b.name: _run_model(b, config, genome, genes, people) for b in bundles}
    report = _Report(config, out, main, linear, models, genome, genes, people, observed, runs)
    report.numbers.update({"models": models, "people": len(people), "genes": [g.label for g in genes]})
    for step in REPORT_STEPS:
        step(report)
    write_text(
        out / "figures.json",
        json.dumps(
            [
                {
                    "key": f.key,
                    "title": f.title,
                    "caption": f.caption,
                    "missing": f.missing,
                    "tables": f.tables,
                    "facts": f.facts,
                }
                for f in report.figures
            ],
            indent=1,
            default=str,
        )
        + "\n",
    )
    page = write_text(
        out / "index.html", _html(main.name, models, people, report.figures, report.tables, report.numbers)
    )
    return ReportResult(out, page, report.figures, report.tables, report.numbers)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def _html(
    main: str,
    models: list[str],
    people: list[str],
    figures: list[FigureEntry],
    tables: dict[str, Path],
    numbers: dict[str, Any],
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>varscore report: {esc(main)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "figure{margin:2em 0}img{max-width:100%;border:1px solid #ddd}.missing{color:#a33}"
        "td,th{padding:2px 8px;text-align:left}</style></head><body>",
        f"<h1>varscore report: {esc(main)}</h1>",
        f"<p>Models: {esc(', '.join(models))}. Held-out people: {len(people)}. "
        f"Genes: {esc(', '.join(numbers.get('genes', [])))}.</p>",
    ]
    if "sign_agreement" in numbers:
        parts.append(
            "<h2>Sign agreement with the linear model</h2><table>"
            "<tr><th>model (pairs)</th><th>agree</th><th>n</th><th>share</th><th>Fisher's exact test</th></tr>"
        )
        for model, row in numbers["sign_agreement"].items():
            parts.append(
                f"<tr><td>{esc(model)}</td><td>{row['agree']}</td><td>{row['n']}</td>"
                f"<td>{row['fraction']:.1%}</td><td>{esc(row['result'])}</td></tr>"
            )
        parts.append("</table>")
    if "causal_enrichment" in numbers:
        parts.append(
            "<h2>Causal variants vs matched controls (simulation truth)</h2><table><tr><th>set</th>"
            "<th>causal / selected</th><th>matched</th><th>median candidates</th><th>permutation test "
            "(expected causal)</th><th>causal / controls</th><th>odds ratio</th><th>one-sided Fisher</th>"
            "</tr>"
        )
        for label, row in numbers["causal_enrichment"].items():
            parts.append(
                f"<tr><td>{esc(label)}</td><td>{row['selected_causal']}/{row['selected']}</td>"
                f"<td>{row['matched']}</td><td>{row['median_candidates']:.3g}</td>"
                f"<td>{esc(row['perm'])} ({row['perm_null_mean']:.2f})</td>"
                f"<td>{row['controls_causal']}/{row['controls']}</td><td>{row['odds_ratio']:.2f}</td>"
                f"<td>{esc(row['fisher'])}</td></tr>"
            )
        parts.append(
            "</table><p>Matching rule: same gene, distance to TSS within ±2,500 bp, MAF within the "
            "tolerance (HSVs 0.5%, drivers 10%), not itself selected. Permutation test: one control drawn "
            "per matched selected variant, 2,000 draws, p = (1 + draws with at least as many causal) / "
            "2,001.</p>"
        )
        sensitivity = numbers.get("causal_enrichment_tolerance")
        if sensitivity is not None and len(sensitivity):
            columns = [
                "model",
                "group",
                "maf_tolerance",
                "matched",
                "median_candidates",
                "causal_selected",
                "perm_null_mean",
                "verdict",
                "fisher_controls",
                "fisher_controls_causal",
                "fisher_p",
            ]
            parts.append(
                "<h3>Dependence on the MAF tolerance</h3><table><tr>"
                + "".join(f"<th>{esc(c)}</th>" for c in columns)
                + "</tr>"
            )
            for row in sensitivity[columns].itertuples(index=False):
                parts.append("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>")
            parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for entry in figures:
        if entry.missing:
            parts.append(
                f"<figure id='{esc(entry.key)}'><h3>{esc(entry.title)}</h3>"
                f"<p class='missing'>not produced: {esc(entry.missing)}</p></figure>"
            )
            continue
        assert entry.png is not None and entry.pdf is not None
        sources = ", ".join(
            f"<a href='{esc(tables[t].name)}'>{esc(tables[t].name)}</a>" for t in entry.tables if t in tables
        )
        parts.append(
            f"<figure id='{esc(entry.key)}'><h3>{esc(entry.title)}</h3>"
            f"<img src='{esc(entry.png.name)}' alt='{esc(entry.title)}'>"
            f"<figcaption>{esc(entry.caption)}"
            + (f" <span class='sources'>Drawn from: {sources}.</span>" if sources else "")
            + f" <a href='{esc(entry.pdf.name)}'>PDF</a></figcaption></figure>"
        )
    parts.append("<h2>Tables</h2><ul>")
    parts.extend(f"<li><a href='{esc(p.name)}'>{esc(p.name)}</a></li>" for p in tables.values())
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
