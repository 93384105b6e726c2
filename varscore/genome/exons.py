"""Genes with their spans and exons from a GTF or GFF3 of the whole genome (GENCODE-style), and an
index that finds the genes overlapping a window.

Coordinates are 0-based half-open, as everywhere in varscore's intervals (pyranges' ``Start`` is
0-based, its ``End`` exclusive).
"""

from __future__ import annotations

import bisect
import gzip
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.genome.fasta import match_contigs

logger = logging.getLogger(__name__)

GTF_SUFFIXES = (".gtf", ".gtf.gz")
GFF_SUFFIXES = (".gff", ".gff.gz", ".gff3", ".gff3.gz")


@dataclass(frozen=True)
class GeneModel:
    """A gene's span ``[start, end)`` on ``chrom`` and its exons, merged (sorted, disjoint)."""

    gene_id: str
    name: str
    chrom: str
    start: int
    end: int
    strand: str
    exons: tuple[tuple[int, int], ...]

    @property
    def label(self) -> str:
        return self.name or self.gene_id


def merge_intervals(intervals: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, disjoint union of half-open intervals (touching ones are joined)."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value)
    return "" if text == "nan" else text


def _strip_prefix(identifier: str) -> str:
    for prefix in ("gene:", "transcript:"):
        if identifier.startswith(prefix):
            return identifier[len(prefix) :]
    return identifier


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (pandas reads a column with a gap as floats)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _line_of(path: Path, chrom: str, feature: str, fields: tuple[str, str]) -> int | None:
    """The 1-based number of the first line of the GTF/GFF3 ``path`` with these seqid, feature and
    (start, end) column texts; None when none matches (read again only to name a refused row)."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            columns = line.rstrip("\n").split("\t")
            if len(columns) >= 5 and columns[0] == chrom and columns[2] == feature:
                if tuple(_whole(c) for c in columns[3:5]) == tuple(_whole(f) for f in fields):
                    return number
    return None


def _check_feature(
    path: Path, row: Mapping[str, Any], feature: str, gene: str, lengths: Mapping[str, int] | None
) -> tuple[str, int, int]:
    """``(chrom, start, end)`` (0-based half-open) of a ``gene`` or ``exon`` row, refused with its
    line number, gene and coordinates when the coordinates are not whole numbers, the end precedes
    the start, the start precedes the contig, or the end lies beyond the contig's length."""
    chrom = str(row["Chromosome"])
    start0, end = _whole(row.get("Start")), _whole(row.get("End"))
    start = None if start0 is None else start0 + 1  # the file's 1-based start
    problem = None
    length = None if lengths is None else lengths.get(chrom)
    if start is None or end is None:
        problem = "its start and end must be whole numbers"
    elif end < start:
        problem = "its end precedes its start"
    elif start < 1:
        problem = "its start is before the contig's first base (coordinates are 1-based)"
    elif length is not None and end > length:
        problem = f"its end lies beyond {chrom}'s {length:,} bp in the reference FASTA"
    if problem is None:
        assert start0 is not None and end is not None
        return chrom, start0, end
    texts = (str(row.get("Start") if start is None else start), str(row.get("End")))
    line = _line_of(path, chrom, feature, texts)
    where = f"line {line}" if line is not None else "a row"
    raise InputError(
        f"Gene annotation {path}, {where}: the {feature} of gene {gene or '(unnamed)'} at {chrom}:{texts[0]}-"
        f"{texts[1]} is refused: {problem}. Fix or remove that row, or use an annotation made for this "
        "reference genome."
    )


def load_gene_models(path: str | Path, contig_lengths: Mapping[str, int] | None = None) -> list[GeneModel]:
    """Genes that have exons in a GTF (``exon`` rows carrying ``gene_id``) or GFF3 (``exon`` rows
    whose ``Parent`` is a transcript whose ``Parent`` is a gene, or a gene directly).

    A gene's span is its ``gene`` row when there is one, else the extent of its exons. Genes
    without exons are left out (they have no bins to score). A ``gene`` or ``exon`` row whose end
    precedes its start, or (given ``contig_lengths``, e.g. the reference FASTA's; contig names are
    matched as ``chr20`` / ``20``) whose end lies beyond its contig, is refused naming its line.
    """
    import pyranges as pr

    path = Path(path)
    if not path.exists():
        raise InputError(f"Gene annotation not found: {path}.")
    lowered = path.name.lower()
    if not lowered.endswith(GTF_SUFFIXES + GFF_SUFFIXES):
        raise InputError(f"Gene annotation {path} must be a GTF (.gtf[.gz]) or GFF3 (.gff3[.gz]) file.")
    gff = lowered.endswith(GFF_SUFFIXES)
    try:
        table = pr.read_gff3(str(path), as_df=True) if gff else pr.read_gtf(str(path), as_df=True)
    except Exception as exc:  # pyranges raises many types for malformed files
        raise InputError(f"Cannot read gene annotation {path}: {exc}") from exc
    if table is None or len(table) == 0 or "Feature" not in table.columns:
        raise InputError(f"Gene annotation {path} has no features.")
    records = table.to_dict("records")
    lengths = None
    if contig_lengths is not None:
        names = match_contigs({str(c) for c in table["Chromosome"].unique()}, contig_lengths)
        lengths = {chrom: int(contig_lengths[name]) for chrom, name in names.items()}
    spans: dict[str, tuple[str, int, int, str, str]] = {}
    parent_gene: dict[str, str] = {}
    exons: dict[str, list[tuple[int, int]]] = defaultdict(list)
    exon_chrom: dict[str, tuple[str, str]] = {}
    for row in records:
        feature = _text(row.get("Feature"))
        if feature not in ("gene", "exon"):  # GFF3: transcripts link exons to their genes
            ident, parent = _strip_prefix(_text(row.get("ID"))), _strip_prefix(_text(row.get("Parent")).split(",")[0])
            if gff and ident and parent:
                parent_gene[ident] = parent
            continue
        strand = _text(row["Strand"])
        if gff:
            ident = _strip_prefix(_text(row.get("ID")))
            parent = _strip_prefix(_text(row.get("Parent")).split(",")[0])
            gene_id = ident if feature == "gene" else ""
            if feature != "gene" and ident and parent:
                parent_gene[ident] = parent
        else:
            gene_id = _text(row.get("gene_id"))
            parent = gene_id
        name = _text(row.get("gene_name")) or _text(row.get("Name"))
        chrom, start, end = _check_feature(
            path, row, feature, name or gene_id or parent_gene.get(parent, parent), lengths
        )
        if feature == "gene":
            if not gene_id:
                continue
            spans[gene_id] = (chrom, start, end, strand, name)
        elif feature == "exon":
            if not parent:
                raise InputError(f"Gene annotation {path}: an exon at {chrom}:{start + 1}-{end} names no gene.")
            exons[parent].append((start, end))
            exon_chrom.setdefault(parent, (chrom, strand))
    # GFF3: exons hang off transcripts; move them to the transcripts' genes.
    by_gene: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for owner, intervals in exons.items():
        gene_id = owner
        seen = {owner}
        while gene_id not in spans and gene_id in parent_gene and parent_gene[gene_id] not in seen:
            gene_id = parent_gene[gene_id]
            seen.add(gene_id)
        by_gene[gene_id].extend(intervals)
        exon_chrom.setdefault(gene_id, exon_chrom[owner])
    models = []
    for gene_id, intervals in by_gene.items():
        merged = merge_intervals(intervals)
        if gene_id in spans:
            chrom, start, end, strand, name = spans[gene_id]
        else:
            chrom, strand = exon_chrom[gene_id]
            start, end, name = merged[0][0], merged[-1][1], ""
        models.append(
            GeneModel(gene_id, name, chrom, min(start, merged[0][0]), max(end, merged[-1][1]), strand, merged)
        )
    if not models:
        raise InputError(f"Gene annotation {path} has no exon features: gene-level scores need exons.")
    logger.info("%s: %d genes with exons", path, len(models))
    return sorted(models, key=lambda g: (g.chrom, g.start, g.end, g.gene_id))


class GeneModelIndex:
    """Finds the genes whose span overlaps an interval; contig names are matched to the
    annotation's (``chr20`` / ``20``) the first time a contig is asked for."""

    def __init__(self, models: Sequence[GeneModel]) -> None:
        by_chrom: dict[str, list[GeneModel]] = defaultdict(list)
        for model in models:
            by_chrom[model.chrom].append(model)
        self.models = {c: sorted(v, key=lambda g: g.start) for c, v in by_chrom.items()}
        self.starts = {c: [g.start for g in v] for c, v in self.models.items()}
        self.longest = {c: max(g.end - g.start for g in v) for c, v in self.models.items()}
        self._names: dict[str, str | None] = {}

    def _contig(self, chrom: str) -> str | None:
        if chrom not in self._names:
            self._names[chrom] = match_contigs([chrom], self.models).get(chrom)
        return self._names[chrom]

    def overlapping(self, chrom: str, start: int, end: int) -> list[GeneModel]:
        """Genes with ``gene.start < end`` and ``gene.end > start``, by start."""
        name = self._contig(chrom)
        if name is None:
            return []
        starts = self.starts[name]
        lo = bisect.bisect_left(starts, start - self.longest[name])
        hi = bisect.bisect_left(starts, end)
        return [g for g in self.models[name][lo:hi] if g.end > start]


__all__ = ["GeneModel", "GeneModelIndex", "load_gene_models", "merge_intervals"]
