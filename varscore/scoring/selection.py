"""Which records a scoring run reads: ``--regions``, ``--regions-file``, ``--genes-only`` and
``--shard i/N``, shared by every scoring command through its job's :class:`Selection`.

Regions follow bcftools: ``chr:start-end`` is 1-based and inclusive (``chr`` alone is the whole
contig, ``chr:pos`` one base), a BED file 0-based and half-open; a record is selected when its
POS lies in a region (``bcftools view -t``). ``--genes-only`` keeps the listed genes (IDs or
names of the gene table) and the records in their windows (VEP's habit). ``--shard i/N``
(``1 <= i <= N``) then keeps the i-th of N consecutive blocks of the remaining records, cut only
between *units*: records that share a gene window stay in one shard, so every gene's alleles
are scored in the same batches as in the unsharded run, and the N outputs concatenated in shard
order (``bcftools concat`` or ``varscore merge``) equal the unsharded output record for record.
Every shard reads the whole input to find the cuts, so the split depends only on the input.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from varscore.errors import InputError
from varscore.io.vcf_prepare import PreparedVCF
from varscore.types import Gene, Variant

logger = logging.getLogger(__name__)

SHARD_HEADER = "##varscore_shard"


@dataclass(frozen=True)
class Region:
    """A 0-based, half-open interval ``[start, end)`` of ``chrom`` (``end`` ``None``: to the contig's end)."""

    chrom: str
    start: int = 0
    end: int | None = None

    def holds(self, pos: int) -> bool:
        """Whether the 1-based ``pos`` lies in the region."""
        return self.start < pos and (self.end is None or pos <= self.end)


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` shards."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Selection:
    """The records (and genes) a run keeps; empty: all of them."""

    regions: tuple[Region, ...] = ()
    genes_only: tuple[str, ...] = ()
    shard: Shard | None = None

    @property
    def active(self) -> bool:
        return bool(self.regions or self.genes_only or self.shard)

    def genes_of(self, genes: Sequence[Gene]) -> list[Gene]:
        """``genes`` restricted to ``genes_only`` (IDs or names); an unknown name is an error."""
        if not self.genes_only:
            return list(genes)
        if not genes:
            raise InputError("--genes-only needs a gene table: this run has none (gene mode with a model, or --genes).")
        known = {g.gene_id for g in genes} | {g.name for g in genes if g.name}
        unknown = [name for name in self.genes_only if name not in known]
        if unknown:
            shown = ", ".join(g.label for g in list(genes)[:5])
            raise InputError(
                f"--genes-only names {len(unknown)} gene(s) not in the gene table: {', '.join(unknown[:5])} "
                f"(the table has {len(genes)} genes, e.g. {shown})."
            )
        wanted = set(self.genes_only)
        return [g for g in genes if g.gene_id in wanted or (g.name and g.name in wanted)]


# --- parsing ---------------------------------------------------------------------------------

_REGION = re.compile(r"^([^:\s]+?)(?::([0-9]+)(?:-([0-9]+)?)?)?$")
_THOUSANDS = re.compile(r"^[0-9]{3}(-[0-9]+)?$")


def parse_regions(text: str) -> tuple[Region, ...]:
    """``chr:start-end[,...]`` (1-based, inclusive; ``chr`` or ``chr:pos`` too) as regions."""
    regions = []
    previous = ""
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if ":" in previous and _THOUSANDS.match(item):  # chr20:10,000-20,000 as genome browsers show it
            raise InputError(
                f"--regions: '{text}' looks like positions written with thousands separators; "
                "write them without (chr20:10000-20000): commas separate regions."
            )
        previous = item
        match = _REGION.match(item)
        if match is None:
            raise InputError(f"--regions: cannot read '{item}'; expected chr, chr:pos or chr:start-end (1-based).")
        chrom, start, end = match.group(1), match.group(2), match.group(3)
        if start is None:
            regions.append(Region(chrom))
            continue
        first = int(start)
        last = int(end) if end is not None else (None if item.endswith("-") else first)
        if first < 1 or (last is not None and last < first):
            raise InputError(f"--regions: '{item}' is empty or starts before 1 (1-based, inclusive: chr:start-end).")
        regions.append(Region(chrom, first - 1, last))
    if not regions:
        raise InputError("--regions names no region; expected chr:start-end[,...].")
    return tuple(regions)


def read_regions_file(path: str | Path) -> tuple[Region, ...]:
    """The regions of a BED file, plain or gzipped (0-based, half-open; ``#``, ``track`` and
    ``browser`` lines skipped)."""
    import gzip
    import zlib

    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        lines = (gzip.decompress(path.read_bytes()).decode() if gzipped else path.read_text()).splitlines()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise InputError(f"Cannot read the --regions-file {path}: {exc}.") from exc
    regions = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t")
        try:
            start, end = int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            hint = " (a header line must start with '#')" if number == 1 else ""
            raise InputError(
                f"{path} line {number}: a BED line needs chrom, start and end (tab-separated){hint}."
            ) from None
        if start < 0 or end <= start:
            raise InputError(f"{path} line {number}: the interval {start}-{end} is empty (BED: 0-based, half-open).")
        regions.append(Region(fields[0], start, end))
    if not regions:
        raise InputError(f"The --regions-file {path} holds no interval.")
    return tuple(regions)


def parse_shard(text: str) -> Shard:
    """``i/N`` with ``1 <= i <= N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise InputError(f"--shard: expected i/N (e.g. 2/8); got '{text}'.")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text}: the shard number i of i/N must be 1 to N, and N at least 1.")
    return Shard(index, count)


def parse_selection(
    regions: str | None = None,
    regions_file: str | Path | None = None,
    genes_only: str | Sequence[str] | None = None,
    shard: str | None = None,
) -> Selection:
    """A :class:`Selection` from the command-line spellings (each may be ``None``)."""
    chosen: tuple[Region, ...] = ()
    if regions is not None:  # an empty value (an unset shell variable) selects nothing, not everything
        chosen += parse_regions(regions)
    if regions_file is not None:
        if not str(regions_file).strip():
            raise InputError("--regions-file names no file; expected a BED file.")
        chosen += read_regions_file(regions_file)
    names: list[str] = []
    for item in [genes_only] if isinstance(genes_only, str) else list(genes_only or ()):
        names += [name.strip() for name in item.split(",") if name.strip()]
    if genes_only is not None and not names and (isinstance(genes_only, str) or genes_only):
        raise InputError("--genes-only names no gene; expected ID,... (gene IDs or names).")
    return Selection(chosen, tuple(dict.fromkeys(names)), parse_shard(shard) if shard is not None else None)


# --- applying a selection --------------------------------------------------------------------


def _region_filter(
    regions: Sequence[Region], contigs: Iterable[str], declared: Iterable[str] = ()
) -> dict[str, list[Region]]:
    """Regions by the VCF contig they name (``chr20`` and ``20`` match, as elsewhere). A region on
    a contig that neither the records (``contigs``) nor the header (``declared``) name selects
    nothing: when no region names a known contig that is an error (a typo or another naming, not
    an empty selection), otherwise a warning."""
    from varscore.genome.fasta import match_contigs

    names = list(dict.fromkeys(contigs))
    known = list(dict.fromkeys([*names, *declared]))
    by_contig: dict[str, list[Region]] = {}
    unknown: list[str] = []
    for region in regions:
        mapped = match_contigs([region.chrom], names).get(region.chrom, region.chrom)
        by_contig.setdefault(mapped, []).append(region)
        if known and region.chrom not in match_contigs([region.chrom], known):
            unknown.append(region.chrom)
    unknown = list(dict.fromkeys(unknown))
    if unknown:
        shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        if len(unknown) == len({r.chrom for r in regions}):
            raise InputError(
                f"--regions: the input has no contig {', '.join(unknown[:5])} (its contigs: {shown}); "
                "check the contig names."
            )
        logger.warning("--regions: the input has no contig %s; those regions select nothing.", ", ".join(unknown[:5]))
    return by_contig


def _merged(regions: Sequence[Region]) -> tuple[list[int], list[float]]:
    """The union of ``regions`` (one contig) as sorted, disjoint 0-based half-open intervals:
    ``(starts, ends)``, an open end as infinity. A record is then placed by bisection, so a BED of
    many intervals (an exome) costs log(intervals) per record, not a scan of them all."""
    starts: list[int] = []
    ends: list[float] = []
    for region in sorted(regions, key=lambda r: r.start):
        end = float("inf") if region.end is None else float(region.end)
        if starts and region.start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(region.start)
            ends.append(end)
    return starts, ends


def _inside(intervals: tuple[list[int], list[float]], pos: int) -> bool:
    """Whether the 1-based ``pos`` lies in one of the :func:`_merged` ``intervals``."""
    import bisect

    starts, ends = intervals
    place = bisect.bisect_right(starts, pos - 1) - 1
    return place >= 0 and pos - 1 < ends[place]


def _units(variants: Sequence[Variant], genes: Sequence[Gene], window_size: int | None) -> list[int]:
    """Per record (in order), the unit it belongs to: records sharing a gene window share a unit
    (a union over windows); records in no window are units of their own."""
    from varscore.genome.fasta import match_contigs
    from varscore.scoring.engine import WindowIndex

    parent: list[int] = []

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    index = WindowIndex(genes, window_size) if genes and window_size else None
    contig_map = match_contigs({v.chrom for v in variants}, index.contigs) if index else {}
    gene_node: dict[str, int] = {}
    record_node = []
    for variant in variants:
        chrom = contig_map.get(variant.chrom)
        hits = index.genes_at(chrom, variant.pos) if index is not None and chrom else []
        parent.append(len(parent))
        node = len(parent) - 1
        for gene in hits:
            other = gene_node.setdefault(gene.gene_id, node)
            parent[find(other)] = find(node)
        record_node.append(node)
    return [find(node) for node in record_node]


def shard_of_records(
    variants: Sequence[Variant], shard: Shard, genes: Sequence[Gene], window_size: int | None
) -> list[Variant]:
    """The records of ``shard``: consecutive blocks of about equal size, cut only between units
    (see :func:`_units`; a unit goes to the shard its middle record falls in); a unit whose records are not consecutive (an unsorted VCF) is an error."""
    units = _units(variants, genes, window_size)
    starts: dict[int, int] = {}
    for position, unit in enumerate(units):
        first = starts.setdefault(unit, position)
        if first != position and units[position - 1] != unit:
            variant = variants[position]
            raise InputError(
                f"--shard needs the records of each gene window together: {variant.chrom}:{variant.pos} lies "
                "apart from records of the same window. Sort the VCF first (bcftools sort)."
            )
    sizes = Counter(units)
    total = max(len(variants), 1)

    def shard_index(unit: int) -> int:  # by the unit's midpoint: big units land where most of them lie
        return min(shard.count - 1, (2 * starts[unit] + sizes[unit]) * shard.count // (2 * total))

    return [variant for position, variant in enumerate(variants) if shard_index(units[position]) == shard.index - 1]


def select_variants(
    variants: Iterable[Variant],
    selection: Selection,
    genes: Sequence[Gene],
    window_size: int | None,
    contigs: Iterable[str] = (),
) -> list[Variant]:
    """The records of ``variants`` that ``selection`` keeps, in order. ``genes`` (already
    restricted to ``selection.genes_only``) and ``window_size`` give the gene windows; without a
    window size ``--genes-only`` keeps every record and the shards cut between records.
    ``contigs``: the contigs the input's header declares (regions naming none of them nor of the
    records are an error, see :func:`_region_filter`)."""
    kept = list(variants)
    if selection.regions:
        by_contig = _region_filter(selection.regions, (v.chrom for v in kept), contigs)
        merged = {chrom: _merged(regions) for chrom, regions in by_contig.items()}
        kept = [v for v in kept if v.chrom in merged and _inside(merged[v.chrom], v.pos)]
    if selection.genes_only and window_size:
        from varscore.genome.fasta import match_contigs
        from varscore.scoring.engine import WindowIndex

        index = WindowIndex(genes, window_size)
        contig_map = match_contigs({v.chrom for v in kept}, index.contigs)
        kept = [v for v in kept if v.chrom in contig_map and index.genes_at(contig_map[v.chrom], v.pos)]
    if selection.shard is not None:
        kept = shard_of_records(kept, selection.shard, genes, window_size)
    return kept


def header_contigs(source: str | Path) -> list[str]:
    """The contigs the header of the VCF ``source`` declares (``##contig=<ID=...>``), in order."""
    from varscore.io.vcf import open_vcf

    reader = open_vcf(source)
    try:
        return [m.group(1) for m in re.finditer(r"^##contig=<ID=([^,>]+)", reader.raw_header, re.MULTILINE)]
    finally:
        reader.close()


def write_subset(source: str | Path, indices: Iterable[int], out: Path, extra_header_lines: Sequence[str] = ()) -> int:
    """Copy the records of ``source`` numbered ``indices`` (0-based, as
    :func:`varscore.io.vcf.iter_variants` numbers them) to the plain VCF ``out``; returns how many."""
    from varscore.io.vcf import open_vcf

    wanted = set(indices)
    reader = open_vcf(source)
    written = 0
    try:
        for line in extra_header_lines:
            reader.add_to_header(line)
        with open(out, "w") as handle:
            handle.write(reader.raw_header)
            for index, record in enumerate(reader):
                if index in wanted:
                    handle.write(str(record))
                    written += 1
    finally:
        reader.close()
    return written


def selected_input(
    prepared: PreparedVCF, selection: Selection, genes: Sequence[Gene], window_size: int | None
) -> tuple[PreparedVCF, list[Gene]]:
    """``prepared`` (a :class:`varscore.io.vcf_prepare.PreparedVCF`) holding only the records
    ``selection`` keeps, and ``genes`` restricted to ``--genes-only``. The subset is a plain VCF
    in a temporary folder removed when the returned object is dropped (or at exit); with nothing
    to select, ``prepared`` and ``genes`` come back as they are."""
    if not selection.active:
        return prepared, list(genes)
    from varscore.io.vcf import iter_variants

    chosen = selection.genes_of(genes)
    kept = select_variants(iter_variants(prepared.path), selection, chosen, window_size, header_contigs(prepared.path))
    folder = Path(tempfile.mkdtemp(prefix="varscore-selection-"))
    path = folder / "selected.vcf"
    extra = [f"{SHARD_HEADER}={selection.shard}"] if selection.shard else []
    written = write_subset(prepared.path, (v.index for v in kept), path, extra)
    subset = replace(prepared, path=path, records=written)
    weakref.finalize(subset, shutil.rmtree, folder, True)
    logger.info("%s: %d records selected (%s)", prepared.source, written, describe(selection))
    return subset, chosen


def describe(selection: Selection) -> str:
    """The selection in words, for logs."""
    parts = []
    if selection.regions:
        parts.append(f"{len(selection.regions)} regions")
    if selection.genes_only:
        parts.append(f"genes {', '.join(selection.genes_only[:5])}")
    if selection.shard:
        parts.append(f"shard {selection.shard}")
    return "; ".join(parts) or "everything"


__all__ = [
    "SHARD_HEADER",
    "Region",
    "Selection",
    "Shard",
    "header_contigs",
    "parse_regions",
    "parse_selection",
    "parse_shard",
    "read_regions_file",
    "select_variants",
    "selected_input",
    "shard_of_records",
    "write_subset",
]
