"""Indel scoring: alternate windows built by the engine equal a slow construction on the whole
edited contig, and ``varscore annotate`` scores indels as a direct model forward on those."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import read_vcf_lines, write_vcf
from varscore.genome.edits import Edit, ReferenceSource, edit_margin, edited_window
from varscore.genome.fasta import Genome
from varscore.genome.sequence import one_hot
from varscore.io.vcf import SCORE_KEY
from varscore.scoring.gene_mode import ScoringJob, run_scoring
from varscore.types import Gene, Window, tss_window

L = 64


def slow_alternate(contig: str, window: Window, edits: list[tuple[int, str, str]]) -> str:
    """The alternate window by string manipulation on the whole contig.

    ``edits``: VCF-style ``(pos, REF, ALT)``, sorted and not overlapping. Every base of the edited
    contig remembers the reference index it came from (None when inserted); the TSS is then
    found in the edited contig by that origin. When an edit deleted or replaced the TSS base,
    the TSS is placed where that base was, moved by half the edit's length change (towards zero).
    """
    length = window.length
    pad = 4 * length + sum(abs(len(a) - len(r)) for _, r, a in edits)
    bases: list[tuple[str, int | None]] = [("N", None)] * pad
    cursor = 0
    tss = window.start + length // 2
    tss_edit = None
    for pos, ref, alt in edits:
        begin = pos - 1
        assert contig[begin : begin + len(ref)] == ref.upper()
        bases += [(contig[i], i) for i in range(cursor, begin)]
        # the padding base(s) REF and ALT share stay reference bases
        lead = 0
        while lead < min(len(ref), len(alt)) and ref[lead].upper() == alt[lead].upper():
            lead += 1
        tail = 0
        while tail < min(len(ref), len(alt)) - lead and ref[-1 - tail].upper() == alt[-1 - tail].upper():
            tail += 1
        bases += [(contig[begin + i], begin + i) for i in range(lead)]
        changed_from, changed_to = begin + lead, begin + len(ref) - tail
        if changed_from <= tss < changed_to:
            change = len(alt) - len(ref)
            tss_edit = (len(bases) + (tss - changed_from), int(change / 2))
        bases += [(base.upper(), None) for base in alt[lead : len(alt) - tail]]
        bases += [(contig[i], i) for i in range(changed_to, begin + len(ref))]
        cursor = begin + len(ref)
    bases += [(contig[i], i) for i in range(cursor, len(contig))]
    bases += [("N", None)] * pad
    if tss_edit is not None:
        centre = tss_edit[0] + tss_edit[1]
    else:
        origins = [origin for _, origin in bases]
        if 0 <= tss < len(contig):
            centre = origins.index(tss)
        else:  # a window running off the contig: count from the nearest contig base
            anchor = 0 if tss < 0 else len(contig) - 1
            centre = origins.index(anchor) + (tss - anchor)
    return "".join(base for base, _ in bases[centre - length // 2 : centre - length // 2 + length])


def fast_alternate(genome: Genome, chrom: str, window: Window, edits: list[tuple[int, str, str]]) -> np.ndarray:
    parsed = [Edit.from_vcf(pos, ref, alt) for pos, ref, alt in edits]
    margin = edit_margin(parsed)
    source = ReferenceSource(genome, chrom, window.start - margin, window.end + margin)
    return edited_window(window, parsed, source)


def random_allele(rng: np.random.Generator, contig: str, pos: int) -> tuple[str, str]:
    """A VCF-style (REF, ALT) at ``pos``: insertion, deletion, MNP or complex, long ones included."""
    kind = rng.integers(0, 5)
    long = rng.random() < 0.3
    size = int(rng.integers(1, 3 * L if long else 6))
    base = contig[pos - 1]
    random_bases = "".join(rng.choice(list("ACGTacgt"), size=size))
    if kind == 0:  # insertion with the padding base
        return base, base + random_bases
    if kind == 1:  # deletion with the padding base
        return contig[pos - 1 : pos + size], base
    if kind == 2:  # MNP
        ref = contig[pos - 1 : pos - 1 + size]
        return ref, "".join(rng.choice(list("ACGT"), size=len(ref)))
    if kind == 3:  # complex: REF and ALT of different lengths, no shared padding
        ref = contig[pos - 1 : pos - 1 + int(rng.integers(1, 8))]
        return ref, random_bases
    return base, "ACGT"[("ACGT".index(base) + 1) % 4]  # SNV


@pytest.fixture(scope="module")
def contig_world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(7)
    contig = "".join(rng.choice(list("ACGT"), size=400))
    path = tmp_path_factory.mktemp("indels") / "ref.fa"
    path.write_text(">c\n" + "\n".join(contig[i : i + 60] for i in range(0, len(contig), 60)) + "\n")
    return {"contig": contig, "genome": Genome(path)}


def test_single_edits_equal_the_slow_construction(contig_world: dict) -> None:
    """3,000 random edits near random TSSs: around, inside, across and beyond the window,
    overlapping the TSS, and near the contig ends."""
    contig, genome = contig_world["contig"], contig_world["genome"]
    rng = np.random.default_rng(11)
    overlapping_tss = 0
    for _ in range(3000):
        tss = int(rng.integers(1, len(contig) + 1))
        window = tss_window(Gene("g", "c", tss), L)
        pos = int(np.clip(tss + rng.integers(-L, L), 1, len(contig) - 1))
        ref, alt = random_allele(rng, contig, pos)
        if pos - 1 + len(ref) > len(contig):
            continue
        edit = Edit.from_vcf(pos, ref, alt)
        overlapping_tss += edit.start <= tss - 1 < edit.end
        expected = slow_alternate(contig, window, [(pos, ref, alt)])
        got = fast_alternate(genome, "c", window, [(pos, ref, alt)])
        assert np.array_equal(got, one_hot(expected)), (tss, pos, ref, alt)
    assert overlapping_tss > 50


def test_several_edits_equal_the_slow_construction(contig_world: dict) -> None:
    """One haplotype carrying several edits at once (the personal-genome case)."""
    contig, genome = contig_world["contig"], contig_world["genome"]
    rng = np.random.default_rng(12)
    for _ in range(500):
        tss = int(rng.integers(L, len(contig) - L))
        window = tss_window(Gene("g", "c", tss), L)
        edits = []
        cursor = int(rng.integers(max(1, tss - L), tss))
        while cursor < min(tss + L, len(contig) - 10):
            ref, alt = random_allele(rng, contig, cursor)
            if cursor - 1 + len(ref) > len(contig):
                break
            edits.append((cursor, ref, alt))
            cursor += len(ref) + int(rng.integers(0, 12))
        expected = slow_alternate(contig, window, edits)
        got = fast_alternate(genome, "c", window, edits)
        assert np.array_equal(got, one_hot(expected)), (tss, edits)


def test_convention_by_hand() -> None:
    """The documented examples: TSS at index 4 of an 8-bp window."""
    contig = "AAAACCCCGGGGTTTT"
    source = ReferenceSource.from_one_hot(one_hot(contig), 0)
    window = Window("c", 4, 12)  # CCCCGGGG, TSS = index 8 (G)

    def alt(pos: int, ref: str, alt_: str) -> str:
        from varscore.genome.sequence import decode

        return decode(edited_window(window, [Edit.from_vcf(pos, ref, alt_)], source))

    assert alt(10, "G", "GTT") == "CCCCGGTT"  # downstream insertion: trimmed at the right edge
    assert alt(6, "C", "CAA") == "AACCGGGG"  # upstream insertion: trimmed at the left edge
    assert alt(10, "GG", "G") == "CCCCGGGT"  # downstream deletion: filled from the right flank
    assert alt(5, "CC", "C") == "ACCCGGGG"  # upstream deletion: filled from the left flank
    assert alt(8, "C", "CTT") == "CCTTGGGG"  # insertion right before the TSS base: upstream of it
    assert alt(8, "CGG", "C") == "ACCCCGGT"  # TSS deleted with its neighbour: 1 base from each side
    assert alt(9, "G", "TTTT") == "CCCTTTTG"  # TSS replaced by 4 bases: 1 trimmed left, 2 right
    assert alt(9, "G", "T") == "CCCCTGGG"  # an SNV at the TSS


def test_edit_trims_padding_and_shared_suffix() -> None:
    assert Edit.from_vcf(10, "C", "CAG") == Edit(10, 0, "AG")
    assert Edit.from_vcf(10, "CAG", "C") == Edit(10, 2, "")
    assert Edit.from_vcf(10, "AT", "AC") == Edit(10, 1, "C")
    assert Edit.from_vcf(10, "TCA", "GA") == Edit(9, 2, "G")
    assert Edit.from_vcf(10, "acg", "ACG") == Edit(12, 0, "")


@pytest.fixture
def indel_vcf(toy_world) -> tuple:
    """Indels, MNPs and SNVs in G1/G2's windows (chr1, TSS 200 and 230), some across the TSSs."""
    chr1 = toy_world["seqs"]["chr1"]
    records = [
        ("chr1", 180, chr1[179], chr1[179] + "ACGTTG"),
        ("chr1", 195, chr1[194:203], chr1[194]),  # deletes G1's TSS base (200)
        ("chr1", 199, chr1[198], chr1[198] + "T" * 90),  # insertion longer than the window
        ("chr1", 200, chr1[199], "GGAT" + ("C" if chr1[199] != "C" else "A")),  # replaces G1's TSS base
        ("chr1", 228, chr1[227:229], chr1[227:229][::-1] if chr1[227] != chr1[228] else "TT"),  # MNP
        ("chr1", 240, chr1[239:245], f"{chr1[239]},{chr1[239]}GC"),  # multi-allelic deletion + insertion
        ("chr1", 205, chr1[204], "ACGT".replace(chr1[204], "")[0]),  # an SNV for comparison
        ("chr1", 226, chr1[225:265], chr1[225]),  # deletion running past G1's window end
    ]
    return records


def test_annotate_scores_indels_as_a_forward_on_the_slow_window(toy_world, indel_vcf) -> None:
    tmp, seqs, backbone = toy_world["tmp"], toy_world["seqs"], toy_world["backbone"]
    genes = {g.label: g for g in toy_world["genes"]}
    vcf = write_vcf(tmp / "indels.vcf", indel_vcf)
    out = tmp / "indels.out.vcf"
    summary = run_scoring(ScoringJob(vcf, toy_world["bundle"], out))
    assert f"records scored: {len(indel_vcf)}" in summary.lines()
    body = [line for line in read_vcf_lines(out) if not line.startswith("#")]
    checked = 0
    for line, (chrom, pos, ref, alts) in zip(body, indel_vcf, strict=True):
        info = dict(kv.split("=", 1) for kv in line.split("\t")[7].split(";") if "=" in kv)
        entries = info[SCORE_KEY].split(",")
        for entry in entries:
            allele, gene, _, ref_pred, alt_pred, _, _ = entry.split("|")
            window = tss_window(genes[gene], backbone.window_size)
            ref_seq = slow_alternate(seqs[chrom], window, [])
            alt_seq = slow_alternate(seqs[chrom], window, [(pos, ref, allele)])
            ref_direct = backbone.predict(one_hot(ref_seq)[None])[0, backbone.window_size // 16, 1]
            alt_direct = backbone.predict(one_hot(alt_seq)[None])[0, backbone.window_size // 16, 1]
            assert float(ref_pred) == pytest.approx(ref_direct, rel=1e-5, abs=1e-5)
            assert float(alt_pred) == pytest.approx(alt_direct, rel=1e-5, abs=1e-5), (pos, allele, gene)
            checked += 1
        assert len(entries) == len(alts.split(",")) * sum(
            tss_window(g, L).contains(pos) for g in toy_world["genes"] if g.chrom == chrom
        )
    assert checked >= 12


def test_snv_written_as_mnp_scores_like_the_snv(toy_world) -> None:
    """``AT -> AC`` is the SNV ``T -> C`` one base on: both reach the same score (ISM path vs
    edited-window path agree)."""
    tmp, chr1 = toy_world["tmp"], toy_world["seqs"]["chr1"]
    alt = "ACGT".replace(chr1[200], "")[0]
    vcf = write_vcf(
        tmp / "mnp.vcf",
        [
            ("chr1", 200, chr1[199:201], chr1[199] + alt),
            ("chr1", 201, chr1[200], alt),
            ("chr1", 201, chr1[200:202], alt + chr1[201]),
        ],
    )
    out = tmp / "mnp.out.vcf"
    run_scoring(ScoringJob(vcf, toy_world["bundle"], out))
    values = [line.split("\t")[7] for line in read_vcf_lines(out) if not line.startswith("#")]
    scores = [v.split(f"{SCORE_KEY}=")[1].split(";")[0] for v in values]
    strip = [",".join(e.split("|", 1)[1] for e in s.split(",")) for s in scores]  # drop the ALLELE column
    assert strip[0] == strip[1] == strip[2]
