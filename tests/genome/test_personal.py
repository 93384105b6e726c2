"""Personal genomes from VCF genotypes, checked against bcftools consensus and a slow loop."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pysam
import pytest

from tests.conftest import BCFTOOLS, needs_bcftools
from varscore.errors import InputError
from varscore.genome.fasta import Genome
from varscore.genome.personal import (
    GenotypeReader,
    PersonalWindows,
    personal_one_hot,
    read_window_genotypes,
)
from varscore.genome.sequence import one_hot
from varscore.types import Window

REAL_VCF = Path(__file__).resolve().parents[1] / "data" / "1000g" / "1000g_phase3_300samples_chr20_1-4Mb_phased.vcf.gz"
BASES = np.array(list("ACGT"))


def random_sequence(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(BASES, size=length))


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    with open(path, "w") as handle:
        for name, seq in records.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i : i + 60] + "\n")
    return path


def write_vcf(
    path: Path,
    contig: str,
    length: int,
    samples: list[str],
    rows: list[tuple[int, str, str, list[str]]],
    index: bool = True,
) -> Path:
    """``rows`` are (pos, REF, ALT, genotypes); ``path`` ending ``.gz`` is bgzipped (+ .tbi if ``index``)."""
    lines = [
        "##fileformat=VCFv4.2",
        f"##contig=<ID={contig},length={length}>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    for pos, ref, alt, gts in rows:
        lines.append(f"{contig}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    text = "\n".join(lines) + "\n"
    if not path.name.endswith(".gz"):
        path.write_text(text)
        return path
    plain = path.with_name(path.name[:-3])
    plain.write_text(text)
    if index:
        return Path(pysam.tabix_index(str(plain), preset="vcf", force=True))
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    return path


def random_rows(
    rng: np.random.Generator,
    sequence: str,
    n_people: int,
    n_sites: int,
    phased: bool,
    multiallelic: float = 0.15,
    missing: float = 0.0,
) -> list[tuple[int, str, str, list[str]]]:
    """Random SNV records (some multi-allelic) with genotypes matching ``sequence`` (1-based POS)."""
    positions = np.sort(rng.choice(np.arange(1, len(sequence) + 1), size=n_sites, replace=False))
    sep = "|" if phased else "/"
    rows = []
    for pos in positions:
        ref = sequence[pos - 1]
        others = [b for b in "ACGT" if b != ref]
        n_alts = 2 if rng.random() < multiallelic else 1
        alts = list(rng.choice(others, size=n_alts, replace=False))
        freq = rng.uniform(0.05, 0.6)
        gts = []
        for _ in range(n_people):
            alleles = [str(int(rng.integers(1, n_alts + 1))) if rng.random() < freq else "0" for _ in range(2)]
            alleles = ["." if rng.random() < missing else a for a in alleles]
            gts.append(sep.join(alleles))
        rows.append((int(pos), ref, ",".join(alts), gts))
    return rows


def bcftools_consensus(fasta: Path, vcf: Path, sample: str, haplotype: int) -> dict[str, str]:
    """``bcftools consensus -s SAMPLE -H haplotype``, returned as {record name: sequence}."""
    out = subprocess.run(
        [BCFTOOLS, "consensus", "-s", sample, "-H", str(haplotype), "-f", str(fasta), str(vcf)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    records: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            records[name] = ""
        else:
            records[name] += line.strip()
    return records


@pytest.fixture(scope="module")
def phased_world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("phased")
    rng = np.random.default_rng(7)
    contig = random_sequence(rng, 4000)
    samples = [f"P{i}" for i in range(6)]
    rows = random_rows(rng, contig, len(samples), 150, phased=True)
    fasta = write_fasta(tmp / "ref.fa", {"chr20": contig})
    vcf = write_vcf(tmp / "cohort.vcf.gz", "chr20", len(contig), samples, rows)
    return {"contig": contig, "samples": samples, "rows": rows, "fasta": fasta, "vcf": vcf, "tmp": tmp}


WINDOWS = [
    Window("chr20", 0, 1000),
    Window("chr20", 1234, 2458),
    Window("chr20", 3000, 4000),
    Window("chr20", 500, 520),
]


@needs_bcftools
def test_dosage_equals_mean_of_bcftools_consensus_haplotypes(phased_world: dict) -> None:
    """Checks 6 people × 4 windows (both haplotypes each) against bcftools consensus."""
    world = phased_world
    consensus = {
        (s, h): bcftools_consensus(world["fasta"], world["vcf"], s, h)["chr20"]
        for s in world["samples"]
        for h in (1, 2)
    }
    genome = Genome(world["fasta"])
    for window in WINDOWS:
        reference = genome.window_sequence(window).one_hot
        genotypes = read_window_genotypes(world["vcf"], window, genome)
        assert genotypes.summary.skipped_ref_mismatch == 0
        assert genotypes.n_variants > 0
        dosage = personal_one_hot(reference, genotypes)
        haplotypes = personal_one_hot(reference, genotypes, mode="haplotypes")
        assert dosage.shape == (6, window.length, 4) and dosage.dtype == np.float32
        assert haplotypes.shape == (6, 2, window.length, 4)
        for p, sample in enumerate(world["samples"]):
            hap1 = one_hot(consensus[sample, 1][window.start : window.end])
            hap2 = one_hot(consensus[sample, 2][window.start : window.end])
            np.testing.assert_array_equal(dosage[p], (hap1 + hap2) / 2)
            np.testing.assert_array_equal(haplotypes[p, 0], hap1)
            np.testing.assert_array_equal(haplotypes[p, 1], hap2)
        assert genotypes.phased.all()


@needs_bcftools
def test_region_named_fasta_record_as_samtools_faidx_names_it(phased_world: dict, tmp_path: Path) -> None:
    """The window as its own FASTA record ``chr:start-end`` (1-based inclusive) gives the same."""
    world = phased_world
    window = Window("chr20", 1234, 2458)
    name = f"chr20:{window.start + 1}-{window.end}"
    fasta = write_fasta(tmp_path / "window.fa", {name: world["contig"][window.start : window.end]})
    reference = one_hot(world["contig"][window.start : window.end])
    genotypes = read_window_genotypes(world["vcf"], window, reference)
    dosage = personal_one_hot(reference, genotypes)
    for p, sample in enumerate(world["samples"][:3]):
        hap1 = one_hot(bcftools_consensus(fasta, world["vcf"], sample, 1)[name])
        hap2 = one_hot(bcftools_consensus(fasta, world["vcf"], sample, 2)[name])
        np.testing.assert_array_equal(dosage[p], (hap1 + hap2) / 2)


def parse_genotype(text: str) -> list[int]:
    """Allele indices of a GT string, -1 for missing; haploid calls doubled."""
    alleles = [-1 if a == "." else int(a) for a in text.replace("|", "/").split("/")]
    return alleles * 2 if len(alleles) == 1 else alleles


def slow_dosage(sequence: str, window: Window, rows: list, person: int) -> np.ndarray:
    """Explicit per-person, per-record loop over the VCF text: (L, 4) mean of two haplotypes."""
    haps = [list(sequence[window.start : window.end]), list(sequence[window.start : window.end])]
    for pos, ref, alt, gts in rows:
        if not window.start < pos <= window.end or len(ref) != 1:
            continue
        alts = alt.split(",")
        for h, allele in enumerate(parse_genotype(gts[person])):
            if allele > 0 and len(alts[allele - 1]) == 1:
                haps[h][pos - 1 - window.start] = alts[allele - 1]
    return (one_hot("".join(haps[0])) + one_hot("".join(haps[1]))) / 2


def test_unphased_dosage_equals_slow_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    contig = random_sequence(rng, 2500)
    samples = [f"U{i}" for i in range(8)]
    rows = random_rows(rng, contig, len(samples), 120, phased=False, missing=0.05)
    vcf = write_vcf(tmp_path / "unphased.vcf.gz", "chr20", len(contig), samples, rows)
    for window in (Window("chr20", 0, 2500), Window("chr20", 700, 1500)):
        reference = one_hot(contig[window.start : window.end])
        genotypes = read_window_genotypes(vcf, window, reference)
        dosage = personal_one_hot(reference, genotypes)
        for p in range(len(samples)):
            np.testing.assert_array_equal(dosage[p], slow_dosage(contig, window, rows, p))
        hets = [
            any(g[p][0] != g[p][2] and "." not in g[p] for (pos, _, _, g) in rows if window.start < pos <= window.end)
            for p in range(len(samples))
        ]
        np.testing.assert_array_equal(genotypes.phased, ~np.array(hets))
        assert genotypes.summary.missing_calls > 0


@needs_bcftools
def test_unphased_haplotypes_follow_vcf_order_as_bcftools_does(tmp_path: Path) -> None:
    """Unphased ``a/b``: ``a`` on haplotype 0 and ``b`` on haplotype 1, as ``bcftools consensus -H 1/2``."""
    rng = np.random.default_rng(5)
    contig = random_sequence(rng, 1500)
    samples = ["A", "B", "C"]
    rows = random_rows(rng, contig, len(samples), 60, phased=False)
    rows.append((1400, contig[1399], "ACGT".replace(contig[1399], "")[0], ["1/0", "0/1", "1/1"]))
    rows.sort()
    vcf = write_vcf(tmp_path / "u.vcf.gz", "chr20", len(contig), samples, rows)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr20": contig})
    window = Window("chr20", 0, 1500)
    reference = one_hot(contig)
    genotypes = read_window_genotypes(vcf, window, reference)
    haplotypes = personal_one_hot(reference, genotypes, mode="haplotypes")
    last = genotypes.haplotypes[:, :, genotypes.positions == 1400][:, :, 0]
    np.testing.assert_array_equal(last, [[1, 0], [0, 1], [1, 1]])
    for p, sample in enumerate(samples):
        for h in (0, 1):
            expected = one_hot(bcftools_consensus(fasta, vcf, sample, h + 1)["chr20"])
            np.testing.assert_array_equal(haplotypes[p, h], expected)


def small_vcf(tmp_path: Path, contig_name: str = "chr20", index: bool = True):
    contig = "ACGTACGTAC" * 10  # pos 1 = A, 2 = C, 3 = G, 4 = T, ...
    samples = ["S1", "S2", "S3"]
    rows = [
        (2, "C", "A", ["0|1", "1|1", "./."]),  # missing call in S3
        (3, "G", "T,C", ["1|2", "2|0", "0|."]),  # multi-allelic; half-missing in S3
        (5, "T", "G", ["1|1", "0|0", "1|0"]),  # REF mismatch: base 5 is A
        (7, "G", "GA", ["1|1", "1|1", "1|1"]),  # insertion: skipped
        (8, "T", "<DEL>", ["1|1", "1|1", "1|1"]),  # symbolic: skipped
        (9, "A", "C", ["1", "0", "1|1"]),  # haploid calls
    ]
    suffix = ".vcf.gz" if index else ".vcf"
    vcf = write_vcf(tmp_path / f"small{suffix}", contig_name, len(contig), samples, rows, index=index)
    return contig, samples, vcf


def test_missing_mismatch_and_skipped_alleles_are_counted(tmp_path: Path) -> None:
    contig, samples, vcf = small_vcf(tmp_path)
    window = Window("chr20", 0, 20)
    reference = one_hot(contig[:20])
    genotypes = read_window_genotypes(vcf, window, reference)
    summary = genotypes.summary
    assert summary.records == 6
    assert summary.snvs == 4  # 2:C>A, 3:G>T, 3:G>C, 9:A>C
    assert summary.skipped_non_snv == 2
    assert summary.skipped_ref_mismatch == 1 and summary.mismatch_examples == ("5:T>G (ref A)",)
    assert summary.missing_calls == 3 and summary.people_with_missing == 1
    np.testing.assert_array_equal(genotypes.positions, [2, 3, 3, 9])
    np.testing.assert_array_equal(genotypes.alts, ["A", "T", "C", "C"])
    np.testing.assert_array_equal(genotypes.haplotypes[2, :, 0], [-1, -1])
    np.testing.assert_array_equal(genotypes.haplotypes[2, :, 1], [0, -1])
    np.testing.assert_array_equal(genotypes.haplotypes[0, :, 3], [1, 1])  # haploid "1" on both
    np.testing.assert_array_equal(genotypes.dosage(), [[1, 1, 1, 2], [2, 0, 1, 0], [0, 0, 0, 2]])

    dosage = personal_one_hot(reference, genotypes)
    # Missing calls stay reference: S3 at pos 2 and 3.
    np.testing.assert_array_equal(dosage[2, 1:3], reference[1:3])
    np.testing.assert_array_equal(dosage[0, 1], [0.5, 0.5, 0, 0])  # 0|1 C>A
    np.testing.assert_array_equal(dosage[0, 2], [0, 0.5, 0, 0.5])  # 1|2: T and C
    np.testing.assert_array_equal(dosage[:, 4], np.repeat(reference[None, 4], 3, axis=0))  # mismatch: unchanged
    np.testing.assert_array_equal(dosage[:, 6:8], np.repeat(reference[None, 6:8], 3, axis=0))  # indels skipped


def test_contig_naming_20_vs_chr20(tmp_path: Path) -> None:
    contig, _, vcf_20 = small_vcf(tmp_path, contig_name="20")
    reference = one_hot(contig[:20])
    from_chr = read_window_genotypes(vcf_20, Window("chr20", 0, 20), reference)
    from_plain = read_window_genotypes(vcf_20, Window("20", 0, 20), reference)
    assert from_chr.n_variants == 4 and from_chr.window.chrom == "chr20"
    np.testing.assert_array_equal(from_chr.haplotypes, from_plain.haplotypes)
    # A FASTA named chr20 and a VCF named 20, through Genome.
    fasta = write_fasta(tmp_path / "ref.fa", {"chr20": contig})
    from_genome = read_window_genotypes(vcf_20, Window("chr20", 0, 20), Genome(fasta))
    np.testing.assert_array_equal(from_genome.haplotypes, from_chr.haplotypes)
    # A window running off the contig start (reference padded with N).
    padded = read_window_genotypes(vcf_20, Window("chr20", -5, 15), "N" * 5 + contig[:15])
    np.testing.assert_array_equal(padded.positions, [2, 3, 3, 9])
    np.testing.assert_array_equal(padded.offsets, [6, 7, 7, 13])
    # A contig the VCF lacks: no variants, not an error.
    assert read_window_genotypes(vcf_20, Window("chr21", 0, 20), reference).n_variants == 0


def test_unindexed_vcf_is_scanned_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    contig, _, indexed = small_vcf(tmp_path)
    (tmp_path / "plain").mkdir()
    _, _, plain = small_vcf(tmp_path / "plain", contig_name="20", index=False)
    reference = one_hot(contig[:20])
    window = Window("chr20", 1, 20)  # excludes pos 1, keeps the rest
    with caplog.at_level(logging.WARNING, logger="varscore.genome.personal"):
        scanned = read_window_genotypes(plain, window, reference[1:20])
    assert "no .tbi/.csi index" in caplog.text
    queried = read_window_genotypes(indexed, window, reference[1:20])
    np.testing.assert_array_equal(scanned.positions, queried.positions)
    np.testing.assert_array_equal(scanned.haplotypes, queried.haplotypes)
    assert scanned.summary == queried.summary


def test_samples_subset_order_and_unknown(tmp_path: Path) -> None:
    contig, samples, vcf = small_vcf(tmp_path)
    reference = one_hot(contig[:20])
    window = Window("chr20", 0, 20)
    full = read_window_genotypes(vcf, window, reference)
    subset = read_window_genotypes(vcf, window, reference, samples=["S3", "S1"])
    assert subset.samples == ["S3", "S1"]
    np.testing.assert_array_equal(subset.haplotypes, full.haplotypes[[2, 0]])
    with pytest.raises(InputError, match="GTEX-1117F"):
        read_window_genotypes(vcf, window, reference, samples=["S1", "GTEX-1117F"])
    with pytest.raises(InputError, match="has 19 bases"):
        read_window_genotypes(vcf, window, reference[:19])


def test_batches_persons_and_dtypes_match_the_full_build(phased_world: dict) -> None:
    world = phased_world
    window = Window("chr20", 1000, 3000)
    reference = one_hot(world["contig"][window.start : window.end])
    genotypes = read_window_genotypes(world["vcf"], window, reference)
    for mode in ("dosage", "haplotypes"):
        full = personal_one_hot(reference, genotypes, mode=mode)
        windows = PersonalWindows(reference, genotypes, mode=mode)
        assert len(windows) == 6
        np.testing.assert_array_equal(windows.batch([4, 1, 4]), full[[4, 1, 4]])
        np.testing.assert_array_equal(windows.person(3), full[3])
        np.testing.assert_array_equal(windows[5], full[5])
        buffer = np.full((2, *full.shape[1:]), 7, dtype=np.float32)
        assert windows.batch([2, 0], out=buffer) is buffer
        np.testing.assert_array_equal(buffer, full[[2, 0]])
        np.testing.assert_array_equal(personal_one_hot(reference, genotypes, mode=mode, dtype=np.float16), full)
        scale = 2 if mode == "dosage" else 1
        counts = personal_one_hot(reference, genotypes, mode=mode, dtype=np.uint8)
        assert counts.dtype == np.uint8
        np.testing.assert_array_equal(counts, full * scale)
    with pytest.raises(IndexError):
        PersonalWindows(reference, genotypes).person(6)
    with pytest.raises(InputError, match="Unknown personal-genome mode"):
        personal_one_hot(reference, genotypes, mode="diploid")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="L = 2000"):
        personal_one_hot(reference[:10], genotypes)
    with pytest.raises(InputError, match="out must have shape"):
        personal_one_hot(reference, genotypes, out=np.empty((6, 2000, 4), dtype=np.float16))


def test_duplicate_records_apply_first_alt_like_bcftools(tmp_path: Path) -> None:
    contig = "ACGTACGTAC"
    rows = [(3, "G", "A", ["1|0", "0|1"]), (3, "G", "T", ["1|1", "0|0"])]
    vcf = write_vcf(tmp_path / "dup.vcf.gz", "chr20", 10, ["X", "Y"], rows)
    reference = one_hot(contig)
    genotypes = read_window_genotypes(vcf, Window("chr20", 0, 10), reference)
    assert genotypes.summary.overlapping_calls == 1
    haplotypes = personal_one_hot(reference, genotypes, mode="haplotypes")
    np.testing.assert_array_equal(haplotypes[0, :, 2], [one_hot("A")[0], one_hot("T")[0]])
    if BCFTOOLS:
        fasta = write_fasta(tmp_path / "ref.fa", {"chr20": contig})
        for h in (0, 1):
            assert bcftools_consensus(fasta, vcf, "X", h + 1)["chr20"][2] == "AT"[h]


@pytest.fixture(scope="module")
def real_vcf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("real")
    vcf = tmp / "real.vcf.gz"
    shutil.copy(REAL_VCF, vcf)
    pysam.tabix_index(str(vcf), preset="vcf", force=True)
    return vcf


@needs_bcftools
def test_real_1000g_windows_match_bcftools(real_vcf: Path, tmp_path: Path) -> None:
    """1000 Genomes phase 3 (contig ``20``, b37) on a synthetic reference whose bases at the VCF
    positions equal REF: 4 people × 2 windows of 49,152 bp against bcftools consensus."""
    rng = np.random.default_rng(3)
    windows = [Window("20", 1_500_000, 1_549_152), Window("20", 3_200_000, 3_249_152)]
    people = ["HG00096", "HG00100", "HG00112", "HG00097"]
    records: dict[str, str] = {}
    for window in windows:
        bases = rng.choice(BASES, size=window.length)
        snv_only = []
        with pysam.VariantFile(str(real_vcf)) as vcf:
            for rec in vcf.fetch("20", window.start, window.end):
                for i, base in enumerate(rec.ref):
                    if window.start <= rec.pos - 1 + i < window.end:
                        bases[rec.pos - 1 + i - window.start] = base
                snv_only.append(len(rec.ref) == 1 and all(len(a) == 1 for a in rec.alts))
        records[f"20:{window.start + 1}-{window.end}"] = "".join(bases)
        assert 300 < sum(snv_only) < 700 and not all(snv_only)  # realistic, with indels to skip
    fasta = write_fasta(tmp_path / "windows.fa", records)
    # bcftools would apply the indels too: give it SNVs only, varscore the full file.
    snvs = tmp_path / "snvs.vcf.gz"
    subprocess.run(
        [BCFTOOLS, "view", "-v", "snps", "-s", ",".join(people), "-Oz", "-o", str(snvs), str(real_vcf)], check=True
    )
    pysam.tabix_index(str(snvs), preset="vcf", force=True)
    with GenotypeReader(real_vcf, people) as reader:
        for window in windows:
            name = f"20:{window.start + 1}-{window.end}"
            reference = one_hot(records[name])
            genotypes = reader.read(window, records[name])
            assert genotypes.summary.skipped_non_snv > 0 and genotypes.summary.skipped_ref_mismatch == 0
            assert genotypes.phased.all()
            dosage = personal_one_hot(reference, genotypes)
            for p, person in enumerate(people):
                hap1 = one_hot(bcftools_consensus(fasta, snvs, person, 1)[name])
                hap2 = one_hot(bcftools_consensus(fasta, snvs, person, 2)[name])
                assert not np.array_equal(hap1, reference)
                np.testing.assert_array_equal(dosage[p], (hap1 + hap2) / 2)


# --- indels -----------------------------------------------------------------------------------


def random_indel_rows(
    rng: np.random.Generator,
    sequence: str,
    n_people: int,
    phased: bool,
    start: int = 20,
    spacing: tuple[int, int] = (3, 25),
) -> list[tuple[int, str, str, list[str]]]:
    """Non-overlapping SNVs, insertions, deletions (some long) and MNPs with random genotypes."""
    sep = "|" if phased else "/"
    rows = []
    pos = start
    while pos < len(sequence) - 80:
        kind = rng.integers(0, 4)
        size = int(rng.integers(1, 40 if rng.random() < 0.2 else 5))
        base = sequence[pos - 1]
        if kind == 0:
            ref, alt = base, "ACGT".replace(base, "")[int(rng.integers(0, 3))]
        elif kind == 1:
            ref, alt = base, base + "".join(rng.choice(BASES, size=size))
        elif kind == 2:
            ref, alt = sequence[pos - 1 : pos + size], base
        else:
            ref = sequence[pos - 1 : pos + 1]
            alt = "".join("ACGT".replace(b, "")[int(rng.integers(0, 3))] for b in ref)
        freq = rng.uniform(0.1, 0.6)
        gts = [sep.join("1" if rng.random() < freq else "0" for _ in range(2)) for _ in range(n_people)]
        rows.append((pos, ref, alt, gts))
        pos += len(ref) + int(rng.integers(*spacing))
    return rows


def shifted_slice(haplotype_contig: str, window: Window, carried: list[tuple[int, str, str]]) -> str:
    """The window of a whole edited contig (e.g. from bcftools consensus) that keeps the TSS at
    index L // 2: its start moves by the carried variants' anchor shifts (README "Indels")."""
    from varscore.genome.edits import Edit

    anchor = window.start + window.length // 2
    start = window.start + sum(Edit.from_vcf(p, r, a).anchor_shift(anchor) for p, r, a in carried)
    padded = "N" * (4 * window.length) + haplotype_contig + "N" * (4 * window.length)
    begin = start + 4 * window.length
    return padded[begin : begin + window.length]


@pytest.fixture(scope="module")
def indel_world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("personal_indels")
    rng = np.random.default_rng(21)
    sequence = random_sequence(rng, 1500)
    fasta = write_fasta(tmp / "ref.fa", {"chr20": sequence})
    samples = [f"P{i}" for i in range(5)]
    phased_rows = random_indel_rows(rng, sequence, len(samples), phased=True)
    unphased_rows = random_indel_rows(rng, sequence, len(samples), phased=False)
    return {
        "tmp": tmp,
        "sequence": sequence,
        "fasta": fasta,
        "samples": samples,
        "phased": (write_vcf(tmp / "phased.vcf.gz", "chr20", len(sequence), samples, phased_rows), phased_rows),
        "unphased": (write_vcf(tmp / "unphased.vcf.gz", "chr20", len(sequence), samples, unphased_rows), unphased_rows),
        # windows at both contig ends and inside; 128 bp (short, so indels reach past the ends)
        "windows": [Window("chr20", tss - 1 - 64, tss - 1 + 64) for tss in (30, 300, 701, 1100, 1480)],
    }


def carried(rows: list, person: int, haplotype: int) -> list[tuple[int, str, str]]:
    return [(p, r, a) for p, r, a, gts in rows if gts[person].replace("/", "|").split("|")[haplotype] == "1"]


@needs_bcftools
def test_phased_indel_haplotypes_equal_bcftools_consensus(indel_world: dict) -> None:
    """Each haplotype window with SNVs, insertions, deletions and MNPs equals the TSS-aligned
    window of ``bcftools consensus -H 1/2`` of the whole contig."""
    world = indel_world
    vcf, rows = world["phased"]
    genome = Genome(world["fasta"])
    checked_with_indels = 0
    with GenotypeReader(vcf, indels=True) as reader:
        for window in world["windows"]:
            genotypes = reader.read(window, genome)
            haplotypes = personal_one_hot(one_hot(genome.fetch(window)), genotypes, mode="haplotypes")
            for person, sample in enumerate(world["samples"]):
                for h in (0, 1):
                    contig = bcftools_consensus(world["fasta"], vcf, sample, h + 1)["chr20"]
                    on_haplotype = carried(rows, person, h)
                    expected = shifted_slice(contig, window, on_haplotype)
                    assert np.array_equal(haplotypes[person, h], one_hot(expected)), (window, sample, h)
                    checked_with_indels += any(len(r) != len(a) for _, r, a in on_haplotype)
    assert checked_with_indels >= 20


def test_unphased_indel_dosage_is_the_mean_of_slow_haplotypes(indel_world: dict) -> None:
    """Unphased ``a/b``: haplotype 0 carries ``a``, haplotype 1 ``b``; the dosage window is the mean
    of the two windows, each built by string manipulation on the whole contig."""
    from tests.scoring.test_indels import slow_alternate

    world = indel_world
    vcf, rows = world["unphased"]
    genome = Genome(world["fasta"])
    sequence = world["sequence"]
    unphased_people = 0
    with GenotypeReader(vcf, indels=True) as reader:
        for window in world["windows"]:
            genotypes = reader.read(window, genome)
            reference = one_hot(genome.fetch(window))
            dosage = personal_one_hot(reference, genotypes, mode="dosage")
            counts = personal_one_hot(reference, genotypes, mode="dosage", dtype=np.uint8)
            unphased_people += int((~genotypes.phased).sum())
            for person in range(len(world["samples"])):
                haps = [one_hot(slow_alternate(sequence, window, carried(rows, person, h))) for h in (0, 1)]
                np.testing.assert_array_equal(dosage[person], (haps[0] + haps[1]) / 2)
                np.testing.assert_array_equal(counts[person], (haps[0] + haps[1]).astype(np.uint8))
    assert unphased_people > 10


def test_indels_are_skipped_unless_asked_for(indel_world: dict) -> None:
    vcf, rows = indel_world["phased"]
    genome = Genome(indel_world["fasta"])
    window = indel_world["windows"][2]
    snv_only = read_window_genotypes(vcf, window, genome)
    assert snv_only.is_snv.all() and snv_only.summary.skipped_non_snv > 0
    with pytest.raises(InputError, match="Genome"):
        GenotypeReader(vcf, indels=True).read(window, genome.fetch(window))


@needs_bcftools
def test_overlapping_indel_and_snv_keep_the_first_like_bcftools(tmp_path: Path) -> None:
    """An SNV inside the bases a deletion removed is dropped on that haplotype (the first record
    wins), while an SNV on a deletion's padding base is not an overlap: both as bcftools consensus."""
    sequence = random_sequence(np.random.default_rng(4), 300)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr20": sequence})
    other = "ACGT".replace(sequence[150], "")[0]
    rows = [
        (148, sequence[147:154], sequence[147], ["1|1", "1|1"]),  # deletes 149-154
        (151, sequence[150], other, ["1|1", "0|1"]),  # inside the deletion
        (200, sequence[199], "ACGT".replace(sequence[199], "")[0], ["1|0", "0|0"]),
        (200, sequence[199:203], sequence[199], ["1|1", "0|0"]),  # deletes 201-203: after the SNV's base
    ]
    vcf = write_vcf(tmp_path / "overlap.vcf.gz", "chr20", len(sequence), ["A", "B"], rows)
    genome = Genome(fasta)
    window = Window("chr20", 110, 238)
    with GenotypeReader(vcf, indels=True) as reader:
        genotypes = reader.read(window, genome)
    assert genotypes.summary.overlapping_calls == 3  # the SNV at 151 on A|A and on B's second haplotype
    applied = {("A", 0): [0, 2, 3], ("A", 1): [0, 3], ("B", 0): [0], ("B", 1): [0]}
    haplotypes = personal_one_hot(one_hot(genome.fetch(window)), genotypes, mode="haplotypes")
    for person, sample in enumerate(["A", "B"]):
        for h in (0, 1):
            contig = bcftools_consensus(fasta, vcf, sample, h + 1)["chr20"]
            expected = shifted_slice(contig, window, [rows[i][:3] for i in applied[sample, h]])
            assert np.array_equal(haplotypes[person, h], one_hot(expected)), (sample, h)
