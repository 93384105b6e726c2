"""Reference genome access (plain or bgzipped FASTA with a faidx index), gene/TSS tables
(GTF, GFF3 or TSV) and TSS-centred windows."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varscore.errors import InputError
from varscore.genome.sequence import one_hot
from varscore.types import Gene, Window

logger = logging.getLogger(__name__)


def _alternative_names(name: str) -> list[str]:
    """Spellings of the same contig across builds' naming schemes (``chr20``/``20``, ``chrM``/``MT``)."""
    base = name[3:] if name.lower().startswith("chr") else name
    names = [base, f"chr{base}"]
    if base in ("M", "MT"):
        names += ["M", "MT", "chrM", "chrMT"]
    return [n for n in names if n != name]


def match_contigs(wanted: Iterable[str], available: Iterable[str]) -> dict[str, str]:
    """Map each wanted contig name to an available one.

    Exact names win; otherwise ``chr``-prefix and mitochondrial spellings are tried and used
    only when exactly one available name matches. Unmatched names are left out.
    """
    available_set = set(available)
    mapping: dict[str, str] = {}
    for name in wanted:
        if name in available_set:
            mapping[name] = name
            continue
        hits = [alt for alt in _alternative_names(name) if alt in available_set]
        if len(hits) == 1:
            mapping[name] = hits[0]
    return mapping


@dataclass
class WindowSequence:
    """A window's one-hot sequence and how many of its bases lie off the contig ends."""

    window: Window
    one_hot: np.ndarray  # (L, 4) float32
    padded: int


@dataclass
class Genome:
    """A FASTA file opened with pyfaidx. Plain or bgzipped (with ``.fai`` and ``.gzi``)."""

    path: Path
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import pyfaidx

        self.path = Path(self.path)
        if not self.path.exists():
            raise InputError(f"FASTA file not found: {self.path}. Pass an existing file with --fasta.")
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True)
        except Exception as exc:  # pyfaidx raises many types for bad input
            raise InputError(
                f"Cannot read FASTA {self.path}: {exc}. It must be plain or bgzip-compressed "
                "(bgzip, not gzip) and its directory writable for the .fai index, or indexed."
            ) from exc
        self.lengths: dict[str, int] = {name: len(rec) for name, rec in self._fasta.records.items()}

    @property
    def contigs(self) -> list[str]:
        return list(self.lengths)

    def resolve(self, chrom: str) -> str | None:
        """The FASTA's name for ``chrom`` (after ``chr`` matching), or None if it has none."""
        if chrom in self.lengths:
            return chrom
        if chrom in self.aliases:
            return self.aliases[chrom]
        mapping = match_contigs([chrom], self.lengths)
        if chrom in mapping:
            self.aliases[chrom] = mapping[chrom]
            logger.info("contig '%s' matched to FASTA contig '%s'", chrom, mapping[chrom])
            return mapping[chrom]
        return None

    def fetch(self, window: Window) -> str:
        """The window's bases (upper case), padded with N where it runs off the contig."""
        return self._fetch_padded(window)[0]

    def window_sequence(self, window: Window) -> WindowSequence:
        """The window one-hot encoded, with the count of bases padded off the contig ends."""
        seq, padded = self._fetch_padded(window)
        return WindowSequence(window, one_hot(seq), padded)

    def _fetch_padded(self, window: Window) -> tuple[str, int]:
        name = self.resolve(window.chrom)
        if name is None:
            more = "…" if len(self.contigs) > 5 else ""
            raise InputError(
                f"Contig '{window.chrom}' is not in FASTA {self.path} (it has {', '.join(self.contigs[:5])}{more})."
            )
        length = self.lengths[name]
        start, end = max(window.start, 0), min(window.end, length)
        if end <= start:
            return "N" * window.length, window.length
        try:
            body = str(self._fasta[name][start:end])
        except ValueError:
            if start == 0:
                raise
            # pyfaidx (Bio.bgzf) cannot start a read exactly at the end of a BGZF block: read one base earlier
            body = str(self._fasta[name][start - 1 : end])[1:]
        left = start - window.start
        right = window.length - left - len(body)
        return "N" * left + body + "N" * right, left + right

    def base(self, chrom: str, pos: int) -> str:
        """The reference base at 1-based ``pos``."""
        return self.fetch(Window(chrom, pos - 1, pos))


GENE_TSV_COLUMNS = ("chrom", "tss", "strand")


def _genes_from_tsv(path: Path) -> list[Gene]:
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", dtype=str, comment=None, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"Gene table {path} is empty: it needs a header (chrom, tss, strand, gene_id) and rows."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read gene table {path}: {exc}".rstrip() + " (tab-separated text expected).") from exc
    table.columns = [c.lstrip("#").strip().lower() for c in table.columns]
    missing = [c for c in GENE_TSV_COLUMNS if c not in table.columns]
    id_col = "gene_id" if "gene_id" in table.columns else ("gene_name" if "gene_name" in table.columns else None)
    if missing or id_col is None:
        raise InputError(
            f"Gene table {path} needs columns chrom, tss, strand and gene_id or gene_name "
            f"(tab-separated, with a header); it has {', '.join(table.columns)}."
        )
    genes = []
    for row in table.itertuples(index=False):
        record = row._asdict()
        try:
            tss = int(record["tss"])
        except ValueError as exc:
            raise InputError(f"Gene table {path}: TSS '{record['tss']}' is not an integer.") from exc
        strand = record["strand"]
        if strand not in ("+", "-"):
            raise InputError(f"Gene table {path}: strand must be + or -; got '{strand}'.")
        name = record.get("gene_name") or ""
        genes.append(Gene(gene_id=record[id_col], chrom=record["chrom"], tss=tss, strand=strand, name=name))
    return genes


def _genes_from_gtf(path: Path) -> list[Gene]:
    import pyranges as pr

    try:
        if path.name.endswith((".gff3", ".gff3.gz", ".gff", ".gff.gz")):
            table = pr.read_gff3(str(path), as_df=True)
        else:
            table = pr.read_gtf(str(path), as_df=True)
    except Exception as exc:
        raise InputError(f"Cannot read gene annotation {path}: {exc}") from exc
    genes_df = table[table["Feature"] == "gene"]
    if genes_df.empty:
        raise InputError(f"Gene annotation {path} has no 'gene' features.")
    genes = []
    for row in genes_df.itertuples(index=False):
        record = row._asdict()
        # pyranges Start is 0-based; a minus-strand gene starts at its End.
        tss = int(record["Start"]) + 1 if record["Strand"] == "+" else int(record["End"])
        gene_id = str(record.get("gene_id") or record.get("ID") or "")
        name = str(record.get("gene_name") or record.get("Name") or "")
        if gene_id.startswith("gene:"):
            gene_id = gene_id[5:]
        genes.append(
            Gene(
                gene_id=gene_id,
                chrom=str(record["Chromosome"]),
                tss=tss,
                strand=str(record["Strand"]),
                name=name if name != "nan" else "",
            )
        )
    return genes


def _check_genes(genes: Sequence[Gene], path: Path) -> None:
    """No rows, a repeated gene id, an empty id or contig, or a TSS below 1 is an error, never a
    silently dropped gene."""
    if not genes:
        raise InputError(f"Gene table {path} lists no genes.")
    counts: dict[str, int] = {}
    for gene in genes:
        counts[gene.gene_id] = counts.get(gene.gene_id, 0) + 1
        if not gene.gene_id.strip() or not gene.chrom.strip():
            raise InputError(
                f"Gene table {path}: a gene has an empty id or contig ({gene.gene_id!r} on {gene.chrom!r})."
            )
        if gene.tss < 1:
            raise InputError(f"Gene table {path}: gene {gene.gene_id} has TSS {gene.tss}; TSSs are 1-based (>= 1).")
    repeated = sorted(g for g, n in counts.items() if n > 1)
    if repeated:
        shown = ", ".join(repeated[:5]) + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
        raise InputError(f"Gene table {path} defines these gene ids more than once: {shown}. Keep one row per gene.")


def load_genes(path: str | Path, names: Sequence[str] | None = None) -> list[Gene]:
    """Read genes and their TSSs from a GTF, GFF3 or TSV (``chrom, tss, strand, gene_id|gene_name``;
    TSS 1-based). ``names`` keeps only genes whose id or name is listed."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Gene table not found: {path}.")
    lowered = path.name.lower()
    if any(lowered.endswith(ext) for ext in (".gtf", ".gtf.gz", ".gff", ".gff.gz", ".gff3", ".gff3.gz")):
        genes = _genes_from_gtf(path)
    else:
        genes = _genes_from_tsv(path)
    _check_genes(genes, path)
    if names is not None:
        wanted = set(names)
        genes = [g for g in genes if g.gene_id in wanted or g.name in wanted]
        found = {g.gene_id for g in genes} | {g.name for g in genes}
        if wanted - found:
            raise InputError(f"Genes not in {path}: {', '.join(sorted(wanted - found))}.")
    return genes
