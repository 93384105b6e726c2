"""Frozen value types shared by the core and the plugins.

Coordinates: ``Variant.pos`` and ``Gene.tss`` are 1-based (as in VCF and GTF); every interval
(``Window``, BED) is 0-based half-open.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One VCF record.

    ``pos`` is 1-based; ``alts`` holds every ALT allele in VCF order; ``index`` is the record's
    0-based position in its file (the key that ties scores back to the record).
    """

    chrom: str
    pos: int
    ref: str
    alts: tuple[str, ...]
    id: str | None = None
    index: int = -1

    @property
    def key(self) -> str:
        """``chrom:pos:ref:alt1,alt2`` — stable across files."""
        return f"{self.chrom}:{self.pos}:{self.ref}:{','.join(self.alts)}"


@dataclass(frozen=True)
class Gene:
    """A gene and its transcription start site.

    ``tss`` is the 1-based position of the TSS base on the forward strand (for a minus-strand
    gene, the end of the annotated transcript).
    """

    gene_id: str
    chrom: str
    tss: int
    strand: str = "+"
    name: str = ""

    @property
    def label(self) -> str:
        """The name users know the gene by (its symbol when there is one)."""
        return self.name or self.gene_id


@dataclass(frozen=True)
class Window:
    """A genome interval ``[start, end)``, 0-based half-open, on ``chrom``."""

    chrom: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def contains(self, pos: int) -> bool:
        """Whether the 1-based position ``pos`` lies inside the window."""
        return self.start < pos <= self.end

    def offset(self, pos: int) -> int:
        """0-based index inside the window of the 1-based position ``pos``."""
        return pos - 1 - self.start


def tss_window(gene: Gene, length: int) -> Window:
    """The ``length``-bp window with the TSS base at index ``length // 2``.

    With Enformer's 128-bp bins and an even bin count the TSS then falls in the centre bin
    (bin 192 of 384 at 49,152 bp).
    """
    start = gene.tss - 1 - length // 2
    return Window(gene.chrom, start, start + length)
