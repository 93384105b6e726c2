"""Motif annotator: exact p-values against brute-force enumeration, scanning against a plain
loop, motifbreakR effects, motif file formats, and recall of the simulator's planted motif variants."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import DATA as TEST_DATA
from tests.conftest import random_sequence, write_fasta, write_vcf
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.genome.fasta import Genome
from varscore.plugin.contracts import AnnotationContext
from varscore.types import Variant
from varscore_plugins.motifs import (
    BACKGROUNDS,
    MOTIF_KEY,
    CompiledMotifs,
    Motif,
    MotifAnnotator,
    best_scores,
    encode,
    jaspar_motifs,
    locate,
    read_motif_file,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "motifs"
EXAMPLES = data_dir()
HOCOMOCO = TEST_DATA / "motifs" / "HOCOMOCOv11_HUMAN.pfm"


def brute_force_tail(matrix: np.ndarray, background: np.ndarray) -> dict[int, float]:
    """P(score >= s) for every reachable integer score s, by enumerating all 4^L sequences."""
    length = matrix.shape[0]
    codes = np.array(list(itertools.product(range(4), repeat=length)))  # (4^L, L)
    scores = matrix[np.arange(length), codes].sum(axis=1)
    probs = background[codes].prod(axis=1)
    order = np.argsort(-scores, kind="stable")
    cumulative = np.cumsum(probs[order])
    tail: dict[int, float] = {}
    for score, total in zip(scores[order], cumulative, strict=True):
        tail[int(score)] = float(total)  # the last (largest) cumulative sum of a score wins
    return tail


@pytest.fixture(scope="module")
def short_jaspar() -> list[Motif]:
    motifs = jaspar_motifs()
    by_length = {}
    for motif in sorted(motifs, key=lambda m: m.motif_id):
        by_length.setdefault(motif.length, motif)
    return [by_length[6], by_length[7], by_length[8]]


@pytest.mark.parametrize("background", ["genome", "uniform"])
def test_p_values_equal_brute_force_enumeration_on_real_jaspar_motifs(short_jaspar, background):
    bg = np.array(BACKGROUNDS[background])
    compiled = CompiledMotifs.build(short_jaspar, bg)
    for index, matrix in enumerate(compiled.scores):
        expected = brute_force_tail(matrix, bg)
        scores = np.array(sorted(expected))
        ours = compiled.p_values(np.full(len(scores), index), scores)
        np.testing.assert_allclose(ours, [expected[s] for s in scores], rtol=1e-9, atol=1e-15)
        assert ours[0] == pytest.approx(1.0)  # the minimum score is always reached


def test_scan_equals_an_explicit_loop_and_best_p_equals_brute_force(short_jaspar):
    bg = np.array(BACKGROUNDS["genome"])
    compiled = CompiledMotifs.build(short_jaspar, bg)
    flank = 7
    rng = np.random.default_rng(3)
    contexts = [random_sequence(rng, 2 * flank + 1) for _ in range(40)]
    contexts[0] = contexts[0][:3] + "N" + contexts[0][4:]
    codes = encode(contexts)
    best = best_scores(codes, flank, compiled)
    for m, matrix in enumerate(compiled.scores):
        length = matrix.shape[0]
        tail = brute_force_tail(matrix, bg)
        located = locate(codes, flank, compiled, np.full(len(contexts), m))
        for i, seq in enumerate(contexts):
            found = []
            for start in range(flank - length + 1, flank + 1):
                window = seq[start : start + length]
                if "N" in window:
                    continue
                idx = ["ACGT".index(b) for b in window]
                found.append((sum(matrix[j, b] for j, b in enumerate(idx)), 0, start))
                found.append((sum(matrix[::-1, ::-1][j, b] for j, b in enumerate(idx)), 1, start))
            top = max(s for s, _, _ in found)
            assert best[i, m] == top == located[0][i]
            assert (top, int(located[1][i]), int(located[2][i])) in found
            assert compiled.p_values(np.array([m]), np.array([top]))[0] == pytest.approx(tail[top], rel=1e-9)


# A 6-bp motif: positions 1, 2 and 6 near-certain (Δp 0.96), position 4 A=0.7 (A->C: Δp 0.6),
# position 5 A=0.4/C=0.3 (A->C: Δp 0.1).
TOY_JASPAR = """>TOY.1 TOYTF
A [ 97  1  1 70 40  1 ]
C [  1  1  1 10 30 97 ]
G [  1 97  1 10 20  1 ]
T [  1  1 97 10 10  1 ]
"""


def _toy_world(tmp_path: Path):
    rng = np.random.default_rng(5)
    site = "AGTAAC"
    reverse = site.translate(str.maketrans("ACGT", "TGCA"))[::-1]  # the site on the minus strand
    left = "".join(rng.choice(list("AT"), 100))  # an AT-rich background that matches the motif poorly
    sequence = left + reverse + "".join(rng.choice(list("AT"), 100))
    fasta = write_fasta(tmp_path / "toy.fa", {"chr1": sequence})
    motif_file = tmp_path / "toy.jaspar"
    motif_file.write_text(TOY_JASPAR)
    site_start = len(left)  # 0-based start of the reverse-complemented site
    # motif position k (1-based) of the minus-strand site sits at forward offset site_start + 6 - k
    return fasta, motif_file, sequence, lambda k: site_start + 6 - k + 1  # 1-based position


def test_effects_follow_motifbreakR_on_the_minus_strand(tmp_path):
    fasta, motif_file, sequence, position_of = _toy_world(tmp_path)
    comp = str.maketrans("ACGT", "TGCA")
    variants = []
    for k, alt_on_motif in ((1, "C"), (4, "C"), (5, "C")):
        pos = position_of(k)
        ref = sequence[pos - 1]
        variants.append(Variant("chr1", pos, ref, (alt_on_motif.translate(comp),), index=len(variants)))
    annotator = MotifAnnotator(motifs=str(motif_file), p_threshold=1e-3, background="uniform")
    frame = annotator.annotate(variants, AnnotationContext([], {}, fasta=Genome(fasta)))
    values = frame[MOTIF_KEY].to_dict()
    strong = values[variants[0].key].split("|")
    assert strong[1:4] == ["TOY.1", "TOYTF", "-"] and strong[6] == "strong"
    assert float(strong[4]) < 1e-3 < float(strong[5])  # the REF site matches, the ALT does not
    assert values[variants[1].key].split("|")[6] == "weak"
    assert variants[2].key not in values  # |Δp| = 0.1: neutral, not reported


def test_deletion_of_a_site_is_reported_and_distant_indels_are_not(tmp_path):
    fasta, motif_file, sequence, position_of = _toy_world(tmp_path)
    start = position_of(6)  # forward-strand first base of the site
    anchor = start - 1
    deletion = Variant("chr1", anchor, sequence[anchor - 1 : anchor + 3], (sequence[anchor - 1],), index=0)
    far = Variant("chr1", 20, sequence[19:21], (sequence[19],), index=1)
    annotator = MotifAnnotator(motifs=str(motif_file), p_threshold=1e-3, background="uniform")
    values = annotator.annotate([deletion, far], AnnotationContext([], {}, fasta=Genome(fasta)))[MOTIF_KEY].to_dict()
    entry = values[deletion.key].split("|")
    assert entry[1] == "TOY.1" and entry[6] == "strong" and float(entry[4]) < float(entry[5])
    assert far.key not in values


def test_motif_file_formats_agree(tmp_path):
    hocomoco = read_motif_file(DATA / "hocomoco_v11_subset.pfm")
    assert [m.motif_id for m in hocomoco] == ["AHR_HUMAN.H11MO.0.B", "AIRE_HUMAN.H11MO.0.C", "ALX1_HUMAN.H11MO.0.B"]
    assert [m.tf for m in hocomoco] == ["AHR", "AIRE", "ALX1"]
    ahr = hocomoco[0]
    rows = [" ".join(f"{v:.6f}" for v in ahr.counts[:, b]) for b in range(4)]
    (tmp_path / "a.jaspar").write_text(
        ">AHR AHR\n" + "".join(f"{b} [ {r} ]\n" for b, r in zip("ACGT", rows, strict=True))
    )
    (tmp_path / "a.pfm").write_text(">AHR AHR\n" + "\n".join(rows) + "\n")
    probs = ahr.counts / ahr.counts.sum(axis=1, keepdims=True)
    meme = [
        "MEME version 4",
        "",
        "ALPHABET= ACGT",
        "",
        "MOTIF AHR AHR",
        f"letter-probability matrix: alength= 4 w= {ahr.length} nsites= 20 E= 0",
    ]
    meme += [" ".join(f"{v:.8f}" for v in row) for row in probs]
    (tmp_path / "a.meme").write_text("\n".join(meme) + "\n")
    for name in ("a.jaspar", "a.pfm"):
        np.testing.assert_allclose(read_motif_file(tmp_path / name)[0].counts, ahr.counts, rtol=1e-6)
    from_meme = read_motif_file(tmp_path / "a.meme")[0]
    np.testing.assert_allclose(from_meme.counts / 20, probs, rtol=1e-6)


def test_reads_the_papers_hocomoco_database():
    motifs = read_motif_file(HOCOMOCO)
    assert len(motifs) == 401
    compiled = CompiledMotifs.build(motifs, BACKGROUNDS["genome"])
    assert len(compiled.tail_len) == 401


MALFORMED = {
    "no_header.pfm": "1 2 3 4\n5 6 7 8\n",
    "bad_number.pfm": ">M1\n1 2 x 4\n",
    "three_columns.pfm": ">M1\n1 2 3\n4 5 6\n7 8 9\n",
    "negative.pfm": ">M1\n1 2 -3 4\n",
    "letters.jaspar": ">M1 TF\nA [ 1 2 ]\nC [ 1 2 ]\nG [ 1 2 ]\nA [ 1 2 ]\n",
    "short_meme.meme": "MEME version 4\n\nMOTIF M1\nletter-probability matrix: alength= 4 w= 3\n0.25 0.25 0.25 0.25\n",
    "empty.pfm": "# nothing\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_motif_files_fail_with_one_line_via_cli(tmp_path, name):
    from varscore.cli import cli

    motif_file = tmp_path / name
    motif_file.write_text(MALFORMED[name])
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": "ACGT" * 50})
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, "T", "A")])
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--fasta",
            str(fasta),
            "--annotate",
            "motifs",
            "--annotator-opt",
            f"motifs.motifs={motif_file}",
            "-o",
            str(tmp_path / "out.vcf"),
        ],
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and name in lines[0], result.output
    assert not (tmp_path / "out.vcf").exists()


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("motifs.pvalue=1e-4", ["unknown option", "pvalue", "p_threshold"]),
        ("motifs.p_threshold=abc", ["p_threshold", "abc"]),
        ("motifs.background=0.5,0.5", ["background", "0.5,0.5"]),
        ("motifs.max_indel=0", ["max_indel"]),
        ("chromhmm.bed=x.bed", ["chromhmm", "--annotate"]),
        ("motifs-p=1", ["NAME.KEY=VALUE"]),
    ],
)
def test_bad_annotator_options_are_one_line_errors(tmp_path, option, words):
    from varscore.cli import cli

    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, "T", "A")])
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--annotate",
            "motifs",
            "--annotator-opt",
            option,
            "-o",
            str(tmp_path / "out.vcf"),
        ],
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output


def test_annotate_without_a_model_adds_motif_entries(tmp_path):
    from varscore.cli import cli

    fasta, motif_file, sequence, position_of = _toy_world(tmp_path)
    pos = position_of(1)
    vcf = write_vcf(
        tmp_path / "in.vcf",
        [("chr1", 30, sequence[29], "G"), ("chr1", pos, sequence[pos - 1], "C")],
        contigs={"chr1": len(sequence)},
    )
    out = tmp_path / "out.vcf.gz"
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--fasta",
            str(fasta),
            "--annotate",
            "motifs",
            "--annotator-opt",
            f"motifs.motifs={motif_file}",
            "--annotator-opt",
            "motifs.p_threshold=1e-3",
            "--annotator-opt",
            "motifs.background=uniform",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    import gzip

    lines = gzip.open(out, "rt").read().splitlines()
    assert any(
        line.startswith("##INFO=<ID=VARSCORE_MOTIF") and "Format: ALLELE|MOTIF|TF|STRAND|REF_P|ALT_P|EFFECT" in line
        for line in lines
    )
    records = [line for line in lines if not line.startswith("#")]
    assert "VARSCORE_MOTIF" not in records[0]
    assert "VARSCORE_MOTIF=C|TOY.1|TOYTF|-|" in records[1]
    assert out.with_name(out.name + ".tbi").exists()


def _recall(truth: pd.DataFrame, values: dict[str, str]) -> tuple[int, int]:
    """Planted motif variants whose planted motif is reported in the planted direction."""
    planted = truth[truth["kind"] == "motif"]
    found = 0
    for row in planted.itertuples(index=False):
        entry = values.get(f"{row.chrom}:{row.pos}:{row.ref}:{row.alt}", "")
        for item in filter(None, entry.split(",")):
            fields = item.split("|")
            creates = float(fields[5]) < float(fields[4])
            if fields[1] == row.motif_id and creates == (row.motif_effect == "creates"):
                found += 1
                break
    return found, len(planted)


def _annotate_truth(truth: pd.DataFrame, fasta: Path, p_threshold: float, correction: str = "none") -> dict[str, str]:
    variants = [Variant(r.chrom, int(r.pos), r.ref, (r.alt,), index=i) for i, r in enumerate(truth.itertuples())]
    annotator = MotifAnnotator(p_threshold=p_threshold, correction=correction)
    return annotator.annotate(variants, AnnotationContext([], {}, fasta=Genome(fasta)))[MOTIF_KEY].to_dict()


def test_planted_motif_variants_are_flagged(tmp_path, record_property):
    """Recall of the simulator's planted motif-creating/disrupting causal variants (it plants them
    with JASPAR2024 CORE matrices at FIMO's p < 1e-4 and a >= 2-bit change) among all JASPAR2024
    CORE vertebrate motifs: on the bundled cohort and on a freshly simulated one."""
    from varscore.simulate import SimulationConfig, simulate_cohort

    sim = simulate_cohort(
        SimulationConfig(
            people=20, genes=20, window=10_000, seed=3, h2_null_fraction=0.0, causal_per_gene=5, motif_fraction=1.0
        ),
        tmp_path / "sim",
    )
    cohorts = [
        (pd.read_csv(EXAMPLES / "truth_variants.tsv", sep="\t"), EXAMPLES / "ucsc.hg19.chr20.unittest.fasta.gz"),
        (pd.read_csv(sim.truth_variants, sep="\t"), sim.out_dir / "reference.fa"),
    ]
    recall = {}
    for threshold in (1e-4, 5e-5):
        found = total = 0
        for truth, fasta in cohorts:
            hits, planted = _recall(truth, _annotate_truth(truth, fasta, threshold))
            found, total = found + hits, total + planted
        recall[threshold] = found / total
        record_property(f"motif_recall_p{threshold:g}", f"{found}/{total}")
    assert total >= 20
    assert recall[1e-4] >= 0.8  # the simulator's own threshold (per match, no multiple-testing correction)
    assert recall[5e-5] >= 0.4  # the paper's stricter threshold finds the strongest ones
    # the default adds the per-variant BH correction over the 879 motifs: the planted sites are mostly as weak
    # as chance matches (p < 5e-5 alone flags half of random SNVs), so few survive it (measured 2/27)
    found = total = 0
    for truth, fasta in cohorts:
        hits, planted = _recall(truth, _annotate_truth(truth, fasta, 5e-5, correction="bh"))
        found, total = found + hits, total + planted
    record_property("motif_recall_default", f"{found}/{total}")
    assert 0 < found / total < recall[5e-5]


def test_unknown_jaspar_release_and_missing_fasta_are_clear_errors():
    with pytest.raises(InputError, match="JASPAR1999"):
        jaspar_motifs("JASPAR1999")
    annotator = MotifAnnotator(motif_ids="MA0004.1")
    with pytest.raises(InputError, match="--fasta"):
        annotator.annotate([Variant("chr1", 5, "A", ("C",))], AnnotationContext([], {}, fasta=None))
