"""Chromatin-state segmentations (ChromHMM BED files), the state of each variant, and the
enrichment of high-scoring variants (HSVs) across states.

Enrichment (the Variformer paper's definition): for every gene and state, ``observed`` is the
number of the gene's HSVs inside the state and ``expected`` the state's share of the annotated
bases of the gene's window times the gene's HSV count. Per model and state,
``log_enrichment = ln(sum of observed / sum of expected)`` over the genes.

Variant weights come from an annotated VCF (``VARSCORE`` INFO entries, one per allele × gene ×
model) or an ISM table (tab-separated; ``chrom``, ``pos``, ``gene``, ``delta`` and optionally
``ref``, ``alt``, ``model``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.types import Window

ENRICHMENT_COLUMNS = ("model", "state", "observed", "expected", "log_enrichment", "genes")
WEIGHT_COLUMNS = ("chrom", "pos", "ref", "alt", "gene", "model", "delta")


# --------------------------------------------------------------------------------------------
# Segmentations


@dataclass
class Segmentation:
    """Non-overlapping labelled intervals per contig, sorted; 0-based half-open ``[start, end)``.

    ``starts[chrom]``/``ends[chrom]``: ``(K,)`` int64; ``states[chrom]``: ``(K,)`` object (labels).
    """

    path: Path
    starts: dict[str, np.ndarray] = field(default_factory=dict)
    ends: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def contigs(self) -> list[str]:
        return list(self.starts)

    @property
    def state_names(self) -> list[str]:
        names: set[str] = set()
        for values in self.states.values():
            names.update(values.tolist())
        return sorted(names)

    def resolve(self, chrom: str) -> str | None:
        """The segmentation's name for ``chrom`` (``chr`` spellings match), or None."""
        from varscore.genome.fasta import match_contigs

        return match_contigs([chrom], self.starts).get(chrom)

    def states_at(self, chrom: str, positions: Iterable[int]) -> list[str | None]:
        """The state at each 1-based position (None outside every segment)."""
        name = self.resolve(chrom)
        pos = np.asarray(list(positions), dtype=np.int64)
        if name is None:
            return [None] * len(pos)
        starts, ends, states = self.starts[name], self.ends[name], self.states[name]
        index = np.searchsorted(starts, pos - 1, side="right") - 1
        inside = (index >= 0) & (pos - 1 < ends[np.maximum(index, 0)])
        return [states[i] if ok else None for i, ok in zip(index, inside, strict=True)]

    def state_bases(self, window: Window) -> dict[str, int]:
        """Bases of each state inside ``window``."""
        name = self.resolve(window.chrom)
        out: dict[str, int] = {}
        if name is None:
            return out
        starts, ends, states = self.starts[name], self.ends[name], self.states[name]
        lo = int(np.searchsorted(ends, window.start, side="right"))
        for i in range(lo, len(starts)):
            if starts[i] >= window.end:
                break
            overlap = min(ends[i], window.end) - max(starts[i], window.start)
            if overlap > 0:
                out[str(states[i])] = out.get(str(states[i]), 0) + int(overlap)
        return out

    def require_contigs(self, contigs: Iterable[str], what: str) -> None:
        """Every contig in ``contigs`` must have segments."""
        missing = [c for c in contigs if self.resolve(c) is None]
        if missing:
            raise InputError(
                f"Segmentation {self.path} has no segments on {', '.join(missing[:5])} ({what}); it covers "
                f"{', '.join(self.contigs[:5])}{'…' if len(self.contigs) > 5 else ''}. Use a segmentation of the "
                "same genome build."
            )

    def check_contigs(self, reference: Iterable[str], what: str = "the reference") -> None:
        """Every contig of the segmentation must exist in ``reference`` (``chr`` spellings match)."""
        from varscore.genome.fasta import match_contigs

        available = list(reference)
        mapping = match_contigs(self.contigs, available)
        unknown = [c for c in self.contigs if c not in mapping]
        if unknown:
            more = "…" if len(available) > 5 else ""
            raise InputError(
                f"Segmentation {self.path} names contigs not in {what}: {', '.join(unknown[:5])} "
                f"({what} has {', '.join(available[:5])}{more}). Use a segmentation of the same genome build."
            )


def read_segmentation(path: str | Path) -> Segmentation:
    """A ChromHMM segmentation: ``*_segments.bed`` (chrom, start, end, state) or the dense or
    expanded browser BED9 files (``track``/``browser`` lines skipped; the expanded file's
    zero-length placeholder rows dropped). Overlapping segments are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation BED not found: {path}.")
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    rows: dict[str, list[tuple[int, int, str]]] = {}
    try:
        with opener(path, "rt") as handle:
            for line_no, line in enumerate(handle, start=1):
                text = line.rstrip("\n\r")
                if not text.strip() or text.startswith(("#", "track", "browser")):
                    continue
                parts = text.split("\t") if "\t" in text else text.split()
                if len(parts) < 4:
                    raise InputError(
                        f"{path}:{line_no}: a segmentation line needs chrom, start, end and state; "
                        f"got {len(parts)} column(s)."
                    )
                try:
                    start, end = int(parts[1]), int(parts[2])
                except ValueError as exc:
                    raise InputError(
                        f"{path}:{line_no}: start and end must be integers; got '{parts[1]}', '{parts[2]}'."
                    ) from exc
                if start < 0 or end < start:
                    raise InputError(f"{path}:{line_no}: invalid interval {start}-{end} (0-based, start <= end).")
                if end == start:
                    continue
                rows.setdefault(parts[0], []).append((start, end, parts[3]))
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"Cannot read segmentation {path}: {exc}.") from exc
    if not rows:
        raise InputError(f"Segmentation {path} has no segments (expected BED lines: chrom, start, end, state).")
    segmentation = Segmentation(path)
    for chrom, items in rows.items():
        items.sort()
        starts = np.array([s for s, _, _ in items], dtype=np.int64)
        ends = np.array([e for _, e, _ in items], dtype=np.int64)
        overlap = np.flatnonzero(starts[1:] < ends[:-1])
        if len(overlap):
            i = int(overlap[0])
            raise InputError(
                f"Segmentation {path}: segments overlap on {chrom} ({starts[i]}-{ends[i]} and "
                f"{starts[i + 1]}-{ends[i + 1]}); use one sample's segmentation."
            )
        segmentation.starts[chrom] = starts
        segmentation.ends[chrom] = ends
        segmentation.states[chrom] = np.array([st for _, _, st in items], dtype=object)
    return segmentation


# --------------------------------------------------------------------------------------------
# Variant weights


def read_variant_weights(path: str | Path) -> pd.DataFrame:
    """Variant weights with columns ``WEIGHT_COLUMNS`` from an annotated VCF (``VARSCORE``
    entries) or an ISM table (TSV; a table without ``model`` gets the file's stem)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Variant weights not found: {path}. Pass an annotated VCF or an ISM table.")
    name = path.name.lower()
    if name.endswith((".vcf", ".vcf.gz", ".bcf")):
        return _weights_from_vcf(path)
    return _weights_from_table(path)


def _weights_from_vcf(path: Path) -> pd.DataFrame:
    from varscore.io.vcf import SCORE_FORMAT, SCORE_KEY, open_vcf, score_columns

    reader = open_vcf(path)
    rows: list[tuple[str, int, str, str, str, str, float]] = []
    try:
        header = reader.get_header_type(SCORE_KEY) if f"ID={SCORE_KEY}," in reader.raw_header else None
        if header is None:
            raise InputError(
                f"{path} has no {SCORE_KEY} INFO field (Format: {SCORE_FORMAT}); annotate it with "
                "'varscore annotate' first."
            )
        wanted = ("ALLELE", "GENE", "MODEL", "DELTA")
        column, n_fields = score_columns(str(header.get("Description", "")), path, wanted)
        allele, gene, model, delta = (column[name] for name in wanted)
        for record in reader:
            value = record.INFO.get(SCORE_KEY)
            if not value:
                continue
            for entry in str(value).split(","):
                parts = entry.split("|")
                if len(parts) != n_fields:
                    raise InputError(f"{path}: malformed {SCORE_KEY} entry '{entry}' at {record.CHROM}:{record.POS}.")
                try:
                    effect = float(parts[delta])
                except ValueError:
                    raise InputError(
                        f"{path}: DELTA '{parts[delta]}' is not a number at {record.CHROM}:{record.POS}."
                    ) from None
                rows.append(
                    (record.CHROM, int(record.POS), record.REF, parts[allele], parts[gene], parts[model], effect)
                )
    finally:
        reader.close()
    return pd.DataFrame(rows, columns=list(WEIGHT_COLUMNS))


def _weights_from_table(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Cannot read ISM table {path}: {exc}") from exc
    table.columns = [str(c).lstrip("#").strip().lower() for c in table.columns]
    if "delta" not in table.columns and "weight" in table.columns:
        table = table.rename(columns={"weight": "delta"})
    missing = [c for c in ("chrom", "pos", "gene", "delta") if c not in table.columns]
    if missing:
        raise InputError(
            f"ISM table {path} lacks column(s) {', '.join(missing)}; it needs chrom, pos, gene and "
            f"delta (weight), tab-separated with a header. It has: {', '.join(table.columns)}."
        )
    for column, default in (("ref", ""), ("alt", ""), ("model", path.name.split(".")[0])):
        if column not in table.columns:
            table[column] = default
    try:
        table["pos"] = table["pos"].astype(np.int64)
        table["delta"] = table["delta"].astype(float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"ISM table {path}: pos must be integers and delta numbers ({exc}).") from exc
    table[["chrom", "gene", "model", "ref", "alt"]] = table[["chrom", "gene", "model", "ref", "alt"]].astype(str)
    return table[list(WEIGHT_COLUMNS)].reset_index(drop=True)


def select_hsvs(weights: pd.DataFrame, top: int | None = None, k_from: str | None = None) -> pd.DataFrame:
    """High-scoring variants of every model and gene: the ``top`` sites with the largest
    ``|delta|``, or as many as the model ``k_from`` has non-zero weights for that gene (the
    paper's choice, with an elastic net as ``k_from``). Adds ``hsv_rank``."""
    from varscore.analysis.hsv import high_scoring_variants

    if (top is None) == (k_from is None):
        raise InputError("Choose the HSV count with exactly one of --top K or --k-from MODEL.")
    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1; got {top}.")
    k: int | dict[str, int]
    if k_from is not None:
        source = weights[weights["model"] == k_from]
        if source.empty:
            models = ", ".join(sorted(weights["model"].unique()))
            raise InputError(f"--k-from model '{k_from}' is not in the weights (models: {models}).")
        k = {str(g): int((rows["delta"] != 0).sum()) for g, rows in source.groupby("gene")}
    else:
        k = int(top) if top is not None else 0
    # one row per site: alleles of a multi-allelic record are one variant, weighted by the largest |delta|
    sites = (
        weights.assign(magnitude=weights["delta"].abs())
        .sort_values("magnitude", ascending=False, kind="stable")
        .drop_duplicates(["model", "gene", "chrom", "pos"])
        .drop(columns="magnitude")
        .sort_index()
    )
    parts = [high_scoring_variants(rows, k).assign(model=model) for model, rows in sites.groupby("model", sort=True)]
    return pd.concat(parts, ignore_index=True) if parts else weights.iloc[0:0].assign(hsv_rank=pd.Series(dtype=int))


# --------------------------------------------------------------------------------------------
# Enrichment


@dataclass
class StateEnrichment:
    """``per_gene``: model, gene, state, observed, expected (one row per gene × state present in
    its window); ``per_state``: ``ENRICHMENT_COLUMNS`` (ln of summed observed over summed
    expected; ``-inf`` when no HSV falls in the state)."""

    per_gene: pd.DataFrame
    per_state: pd.DataFrame


def state_enrichment(hsvs: pd.DataFrame, windows: Mapping[str, Window], segmentation: Segmentation) -> StateEnrichment:
    """Enrichment of ``hsvs`` (columns model, gene, chrom, pos) across the segmentation's states.

    ``windows`` maps each gene (as named in ``hsvs``) to its window; genes with no annotated
    bases in their window are left out (their expected counts are undefined).
    """
    missing = sorted(set(hsvs["gene"].astype(str)) - set(windows))
    if missing:
        raise InputError(
            f"No window for gene(s) {', '.join(missing[:5])}: pass the gene table they come from (--genes)."
        )
    gene_rows = []
    for (model, gene), rows in hsvs.groupby(["model", "gene"], sort=True):
        window = windows[str(gene)]
        bases = segmentation.state_bases(window)
        total = sum(bases.values())
        if total == 0:
            continue
        states = segmentation.states_at(str(rows["chrom"].iloc[0]), rows["pos"].to_numpy())
        counts: dict[str, int] = {}
        for state in states:
            if state is not None:
                counts[state] = counts.get(state, 0) + 1
        n = len(rows)
        for state in sorted(set(bases) | set(counts)):
            gene_rows.append((model, gene, state, counts.get(state, 0), bases.get(state, 0) / total * n))
    per_gene = pd.DataFrame(gene_rows, columns=["model", "gene", "state", "observed", "expected"])
    summary = []
    for (model, state), rows in per_gene.groupby(["model", "state"], sort=True):
        observed, expected = float(rows["observed"].sum()), float(rows["expected"].sum())
        if expected > 0:
            value = math.log(observed / expected) if observed > 0 else -math.inf
        else:
            value = math.nan
        summary.append((model, state, observed, expected, value, int(rows["gene"].nunique())))
    return StateEnrichment(per_gene, pd.DataFrame(summary, columns=list(ENRICHMENT_COLUMNS)))
