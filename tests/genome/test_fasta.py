"""FASTA access, contig matching, gene tables and TSS windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_fasta
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.genome.fasta import Genome, load_genes, match_contigs
from varscore.genome.sequence import decode, one_hot
from varscore.types import Gene, tss_window

HG19 = data_dir()  # the real hg19 chr20 slice and its TSS table


def test_one_hot_round_trip_and_n_is_zero():
    encoded = one_hot("ACGTNacgtn")
    assert encoded.shape == (10, 4) and encoded.dtype == np.float32
    assert decode(encoded) == "ACGTNACGTN"
    assert encoded[4].sum() == 0 and encoded[9].sum() == 0


def test_match_contigs():
    assert match_contigs(["20", "chrM", "X", "7"], ["chr20", "MT", "chrX"]) == {
        "20": "chr20",
        "chrM": "MT",
        "X": "chrX",
    }
    assert match_contigs(["chr1"], ["chr1", "1"]) == {"chr1": "chr1"}
    # ambiguous: both spellings of the mitochondrion present
    assert match_contigs(["M"], ["chrM", "MT"]) == {}


def test_windows_pad_with_n_off_contig_ends(tmp_path: Path):
    fasta = write_fasta(tmp_path / "r.fa", {"chr1": "ACGTACGTAC"})
    genome = Genome(fasta)
    left = genome.window_sequence(tss_window(Gene("g", "chr1", 2), 8))
    assert genome.fetch(left.window) == "NNNACGTA" and left.padded == 3
    right = genome.window_sequence(tss_window(Gene("g", "1", 10), 8))
    assert genome.fetch(right.window) == "CGTACNNN" and right.padded == 3
    assert right.one_hot[-3:].sum() == 0


def test_tss_is_the_centre_bin():
    window = tss_window(Gene("g", "chr1", 100_000), 49_152)
    assert window.length == 49_152
    assert window.offset(100_000) // 128 == 192


def test_real_bgzipped_fasta_and_tss_table():
    genome = Genome(HG19 / "ucsc.hg19.chr20.unittest.fasta.gz")
    genes = load_genes(HG19 / "protein_coding_tss_hg19.tsv")
    assert [g.label for g in genes] == ["SNAP25", "MKKS", "SLX4IP", "JAG1", "C20orf187"]
    snap25 = genes[0]
    seq = genome.fetch(tss_window(snap25, 1000))
    assert len(seq) == 1000 and seq.count("N") == 0  # inside the real slice
    assert genome.resolve("20") == "chr20"
    # outside the real slice the file holds N
    assert set(genome.fetch(tss_window(Gene("x", "chr20", 1_000_000), 100))) == {"N"}


def test_gtf_gene_tss_is_strand_aware():
    import pyranges as pr

    gtf = Path(pr.__file__).parent / "example_data" / "gencode_human.gtf.gz"
    genes = load_genes(gtf)
    table = pr.read_gtf(str(gtf), as_df=True)
    row = table[(table.Feature == "gene") & (table.Strand == "-")].iloc[0]
    gene = next(g for g in genes if g.gene_id == row.gene_id)
    assert gene.tss == row.End and gene.strand == "-"
    row = table[(table.Feature == "gene") & (table.Strand == "+")].iloc[0]
    gene = next(g for g in genes if g.gene_id == row.gene_id)
    assert gene.tss == row.Start + 1


def test_bad_gene_table_and_fasta(tmp_path: Path):
    bad = tmp_path / "genes.tsv"
    bad.write_text("chrom\tposition\n1\t10\n")
    with pytest.raises(InputError, match="needs columns chrom, tss, strand"):
        load_genes(bad)
    with pytest.raises(InputError, match="not found"):
        Genome(tmp_path / "missing.fa")
    genome = Genome(write_fasta(tmp_path / "r.fa", {"chr1": "ACGT"}))
    with pytest.raises(InputError, match="Contig 'chr9' is not in FASTA"):
        genome.fetch(tss_window(Gene("g", "chr9", 2), 4))
