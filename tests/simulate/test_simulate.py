"""Tests for varscore.simulate: reproducibility, genotype realism, h2, file layouts, errors."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import missing_tool
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.simulate import SimulationConfig, SimulationResult, random_genome, simulate_cohort

EXAMPLES = data_dir()
HG19 = EXAMPLES / "ucsc.hg19.chr20.unittest.fasta.gz"
HG19_TSS = EXAMPLES / "protein_coding_tss_hg19.tsv"
HG19_REGION = "chr20:10,150,001-10,450,000"  # SNAP25, MKKS and SLX4IP


@dataclass
class Genotypes:
    """A cohort VCF read back: ``dosage`` is ``(n_variants, people)`` ALT counts."""

    samples: list[str]
    chrom: list[str]
    pos: np.ndarray
    ref: list[str]
    alt: list[str]
    dosage: np.ndarray
    phased: bool


def read_vcf(path: Path) -> Genotypes:
    from cyvcf2 import VCF

    vcf = VCF(str(path))
    chrom, pos, ref, alt, rows, phased = [], [], [], [], [], True
    code_to_dosage = np.array([0, 1, -1, 2])  # cyvcf2 gt_types: hom-ref, het, unknown, hom-alt
    for record in vcf:
        assert len(record.ALT) == 1
        chrom.append(record.CHROM)
        pos.append(record.POS)
        ref.append(record.REF)
        alt.append(record.ALT[0])
        rows.append(code_to_dosage[record.gt_types.copy()])  # copy: cyvcf2 reuses the buffer
        phased = phased and bool(np.all(record.gt_phases))
    samples = list(vcf.samples)
    vcf.close()
    return Genotypes(samples, chrom, np.array(pos), ref, alt, np.array(rows, dtype=float), phased)


def read_expression(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """300 people, 16 genes on a random genome: enough for the statistical checks, ~1 s."""
    config = SimulationConfig(people=300, genes=16, seed=11, h2_null_fraction=0.2, h2_mean=0.25)
    return simulate_cohort(config, tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def genotypes(cohort: SimulationResult) -> Genotypes:
    return read_vcf(cohort.vcf)


@pytest.fixture(scope="module")
def hg19_cohort(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """Real hg19 sequence (soft-masked, N outside the slice) with real TSSs."""
    config = SimulationConfig(
        people=80,
        fasta=HG19,
        region=HG19_REGION,
        gene_table=HG19_TSS,
        seed=3,
        h2_null_fraction=0.0,
        indels=True,
    )
    return simulate_cohort(config, tmp_path_factory.mktemp("hg19"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# 1. Reproducibility


@pytest.mark.parametrize("real", [False, True], ids=["random-genome", "hg19"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, real: bool) -> None:
    extra = dict(fasta=HG19, region=HG19_REGION, gene_table=HG19_TSS) if real else dict(genes=3)
    config = SimulationConfig(people=40, window=10_000, seed=5, phased=False, indels=True, **extra)
    first = simulate_cohort(config, tmp_path / "a")
    simulate_cohort(config, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == sorted(b)
    assert {"cohort.vcf.gz", "cohort.vcf.gz.tbi", "cohort.expression.bed.gz", "params.json"} <= set(a)
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"
    # params.json alone regenerates the cohort
    again = SimulationConfig.from_params(first.params)
    assert again == _with_absolute_paths(config)
    simulate_cohort(again, tmp_path / "c")
    assert _files(tmp_path / "c") == a
    other = simulate_cohort(_with_absolute_paths(config, seed=6), tmp_path / "d")
    assert other.vcf.read_bytes() != a["cohort.vcf.gz"]


def _with_absolute_paths(config: SimulationConfig, **changes: object) -> SimulationConfig:
    """``config`` with absolute paths (from_params resolves them) and ``changes``."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    for name in ("fasta", "gene_table"):
        if values[name] is not None:
            values[name] = Path(values[name]).resolve()
    values.update(changes)
    return dataclasses.replace(config, **values)


# ---------------------------------------------------------------------------------------------
# 2. Genotypes: REF, allele frequency spectrum, linkage disequilibrium


def _check_refs(genotypes: Genotypes, fasta: Path) -> None:
    import pyfaidx

    reference = pyfaidx.Fasta(str(fasta), sequence_always_upper=True)
    assert len(genotypes.pos) > 0
    for chrom, pos, ref, alt in zip(genotypes.chrom, genotypes.pos, genotypes.ref, genotypes.alt, strict=True):
        assert str(reference[chrom][pos - 1 : pos - 1 + len(ref)]) == ref, f"{chrom}:{pos} REF {ref}"
        assert set(ref) <= set("ACGT") and set(alt) <= set("ACGT") and ref != alt
        if len(ref) != len(alt):  # indels keep the padding base and are left-aligned
            longer = max(ref, alt, key=len)
            assert ref[0] == alt[0] and longer[0] != longer[-1], f"{chrom}:{pos} {ref}>{alt}"
    for chrom in set(genotypes.chrom):
        positions = genotypes.pos[np.asarray(genotypes.chrom) == chrom]
        assert np.all(np.diff(positions) > 0), "records must be sorted, one per position"


def test_vcf_ref_matches_fasta(cohort: SimulationResult, genotypes: Genotypes) -> None:
    _check_refs(genotypes, cohort.fasta)
    assert genotypes.phased
    assert genotypes.samples[:2] == ["SIM0001", "SIM0002"]
    assert np.all((genotypes.dosage >= 0) & (genotypes.dosage <= 2))


def test_vcf_ref_matches_real_fasta_with_indels(hg19_cohort: SimulationResult) -> None:
    genotypes = read_vcf(hg19_cohort.vcf)
    _check_refs(genotypes, HG19)
    assert set(genotypes.chrom) == {"chr20"}
    lengths = [len(r) != len(a) for r, a in zip(genotypes.ref, genotypes.alt, strict=True)]
    assert 0.03 < np.mean(lengths) < 0.25, "indels should be roughly 1 in 8 records"
    header = hg19_cohort.vcf.read_bytes()
    assert b"##contig=<ID=chr20,length=63025520>" in gzip.decompress(header)[:2000]


def test_bcftools_finds_nothing_to_fix(hg19_cohort: SimulationResult) -> None:
    """REF matches and indels are normalised by bcftools' own standard (when it is installed)."""
    if shutil.which("bcftools") is None:
        missing_tool("bcftools", "apt-get install bcftools")
    run = subprocess.run(
        ["bcftools", "norm", "-c", "e", "-f", str(HG19), "-Ou", "-o", "/dev/null", str(hg19_cohort.vcf)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = re.search(r"total/split/realigned/skipped:\s+(\d+)/(\d+)/(\d+)/(\d+)", run.stderr)
    assert counts is not None, run.stderr
    total, split, realigned, skipped = map(int, counts.groups())
    assert total > 0 and (split, realigned, skipped) == (0, 0, 0)


def test_allele_frequency_spectrum_has_many_rare_variants(genotypes: Genotypes) -> None:
    haplotypes = 2 * genotypes.dosage.shape[1]
    count = genotypes.dosage.sum(axis=1)
    minor = np.minimum(count, haplotypes - count)
    maf = minor / haplotypes
    assert np.all(minor >= 1), "every site must segregate"
    assert np.mean(maf < 0.05) > 0.4
    # Neutral constant-size expectation: the number of sites with i minor alleles is
    # proportional to 1/i (for i << n), i.e. a fraction 1/a_n of the sites are singletons.
    spectrum = np.bincount(minor.astype(int), minlength=9)[1:9]
    assert spectrum[0] > spectrum[1] > spectrum[2] > spectrum[4] > spectrum[7], spectrum
    scaled = spectrum * np.arange(1, 9)
    assert np.all(np.abs(scaled / scaled.mean() - 1) < 0.35), f"i * count(i) should be flat: {scaled}"
    expected = 1 / sum(1 / i for i in range(1, haplotypes))
    assert 0.7 * expected < spectrum[0] / len(minor) < 1.4 * expected


def test_linkage_disequilibrium_decays_with_distance(genotypes: Genotypes) -> None:
    maf = genotypes.dosage.mean(axis=1) / 2
    common = (np.minimum(maf, 1 - maf) >= 0.1) & (np.asarray(genotypes.chrom) == genotypes.chrom[0])
    dosage, pos = genotypes.dosage[common], genotypes.pos[common]
    r2 = np.corrcoef(dosage) ** 2
    distance = np.abs(pos[:, None] - pos[None, :])
    upper = np.triu(np.ones_like(r2, dtype=bool), k=1)
    bins = [(0, 2_000), (10_000, 20_000), (100_000, 200_000), (500_000, 10**9)]
    means = [float(r2[upper & (distance >= lo) & (distance < hi)].mean()) for lo, hi in bins]
    assert means == sorted(means, reverse=True), f"mean r2 by distance bin: {means}"
    assert means[0] > 0.15 and means[-1] < 0.03, means


# ---------------------------------------------------------------------------------------------
# 3-4. Heritability


def _genetic_values(genotypes: Genotypes, truth: pd.DataFrame, gene_id: str) -> np.ndarray:
    """``(people,)`` genetic value of a gene from the VCF and the truth table's effects."""
    rows = truth[truth.gene_id == gene_id]
    index = {(c, p): i for i, (c, p) in enumerate(zip(genotypes.chrom, genotypes.pos, strict=True))}
    value = np.zeros(genotypes.dosage.shape[1])
    for row in rows.itertuples():
        i = index[(row.chrom, row.pos)]
        assert (genotypes.ref[i], genotypes.alt[i]) == (row.ref, row.alt)
        value += row.effect * genotypes.dosage[i]
    return value


def test_realised_h2_matches_target(cohort: SimulationResult, genotypes: Genotypes) -> None:
    genes = pd.read_csv(cohort.truth_genes, sep="\t")
    truth = pd.read_csv(cohort.truth_variants, sep="\t")
    expression = read_expression(cohort.expression).set_index("gene_id")[genotypes.samples]
    tpm = pd.read_csv(cohort.tpm, sep="\t", index_col="gene_id")[genotypes.samples]
    assert (genes.h2_target == 0).any() and (genes.h2_target > 0.1).sum() >= 5
    for gene in genes.itertuples():
        genetic = _genetic_values(genotypes, truth, gene.gene_id)
        if gene.h2_target == 0:
            assert gene.n_causal == 0 and np.all(genetic == 0)
            continue
        y = expression.loc[gene.gene_id].to_numpy()
        realised = np.corrcoef(genetic, y)[0, 1] ** 2  # = var(fitted) / var(total)
        assert abs(realised - gene.h2_target) <= 0.05, gene.gene_id
        assert realised == pytest.approx(gene.h2_realised, abs=1e-3)
        # On the latent (log TPM) scale the effects are exactly additive.
        log_tpm = np.log(tpm.loc[gene.gene_id].to_numpy())
        assert np.corrcoef(genetic, log_tpm)[0, 1] ** 2 == pytest.approx(gene.h2_latent, abs=2e-3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_elastic_net_r2_tracks_h2(cohort: SimulationResult, genotypes: Genotypes) -> None:
    from sklearn.linear_model import ElasticNetCV
    from sklearn.metrics import r2_score

    genes = pd.read_csv(cohort.truth_genes, sep="\t")
    expression = read_expression(cohort.expression).set_index("gene_id")[genotypes.samples]
    people = len(genotypes.samples)
    order = np.random.default_rng(0).permutation(people)
    train, test = order[: int(0.8 * people)], order[int(0.8 * people) :]
    half = 49_152 // 2
    scores = []
    for gene in genes.itertuples():
        in_window = (np.asarray(genotypes.chrom) == gene.chrom) & (np.abs(genotypes.pos - gene.tss) <= half)
        x = genotypes.dosage[in_window].T
        x = x[:, x[train].std(axis=0) > 0]
        y = expression.loc[gene.gene_id].to_numpy()
        model = ElasticNetCV(l1_ratio=0.5, cv=4, alphas=12, max_iter=2000).fit(x[train], y[train])
        scores.append(r2_score(y[test], model.predict(x[test])))
    correlation = np.corrcoef(genes.h2_target, scores)[0, 1]
    assert correlation > 0.7, f"held-out R2 {np.round(scores, 2)} vs h2 {genes.h2_target.tolist()}"


# ---------------------------------------------------------------------------------------------
# 5. Layouts


def test_expression_file_layout(cohort: SimulationResult, genotypes: Genotypes) -> None:
    from scipy.stats import norm

    table = read_expression(cohort.expression)
    assert list(table.columns[:4]) == ["#chr", "start", "end", "gene_id"]
    assert list(table.columns[4:]) == genotypes.samples
    genes = pd.read_csv(cohort.genes_tsv, sep="\t")
    assert list(genes.columns) == ["chrom", "tss", "strand", "gene_id", "gene_name"]
    merged = table.merge(genes, on="gene_id")
    assert len(merged) == len(genes) == 16
    assert np.all(merged.start == merged.tss - 1) and np.all(merged.end == merged.tss)
    values = table[genotypes.samples].to_numpy()
    people = len(genotypes.samples)
    ideal = norm.ppf(np.arange(1, people + 1) / (people + 1))
    np.testing.assert_allclose(np.sort(values, axis=1), np.tile(ideal, (len(table), 1)), atol=2e-6)
    for name in (cohort.tpm, cohort.reads):
        raw = pd.read_csv(name, sep="\t")
        assert list(raw.columns) == ["gene_id", *genotypes.samples]
        assert list(raw.gene_id) == list(table.gene_id)
    reads = pd.read_csv(cohort.reads, sep="\t", index_col=0)
    assert (reads.to_numpy() >= 0).all() and reads.to_numpy().dtype.kind == "i"
    import pysam

    with pysam.TabixFile(str(cohort.expression)) as tabix:  # the .tbi works
        assert len(list(tabix.fetch(genes.chrom[0], 0, int(genes.tss.max())))) == len(genes)


def test_bundled_example_is_consistent() -> None:
    """examples/data (made by examples/make_example_data.py): small, matching IDs, true h2."""
    size = sum(p.stat().st_size for p in EXAMPLES.iterdir() if p.is_file())
    assert size <= 10 * 2**20
    genotypes = read_vcf(EXAMPLES / "cohort.vcf.gz")
    expression = read_expression(EXAMPLES / "cohort.expression.bed.gz")
    assert len(genotypes.samples) == 670 and list(expression.columns[4:]) == genotypes.samples
    genes = pd.read_csv(EXAMPLES / "truth_genes.tsv", sep="\t")
    truth = pd.read_csv(EXAMPLES / "truth_variants.tsv", sep="\t")
    assert list(genes.gene_id) == ["SNAP25", "MKKS", "SLX4IP", "JAG1", "C20orf187"]
    values = expression.set_index("gene_id")[genotypes.samples]
    for gene in genes[genes.h2_target > 0].itertuples():
        genetic = _genetic_values(genotypes, truth, gene.gene_id)
        realised = np.corrcoef(genetic, values.loc[gene.gene_id].to_numpy())[0, 1] ** 2
        assert abs(realised - gene.h2_target) <= 0.05
    params = json.loads((EXAMPLES / "params.json").read_text())
    assert params["config"]["fasta"] == HG19.name and params["reference"]["contigs"] == {"chr20": 63_025_520}


def test_fasta_with_gene_table_and_no_region(tmp_path: Path) -> None:
    """Without --region each cluster of overlapping gene windows is simulated on its own."""
    config = SimulationConfig(people=30, fasta=HG19, gene_table=HG19_TSS, window=20_000, seed=2)
    result = simulate_cohort(config, tmp_path)
    chunks = json.loads(result.params.read_text())["reference"]["chunks"]
    assert len(chunks) == 4  # MKKS and SLX4IP share one
    genotypes = read_vcf(result.vcf)
    _check_refs(genotypes, HG19)
    tss = pd.read_csv(result.genes_tsv, sep="\t").tss.to_numpy()
    assert np.all(np.min(np.abs(genotypes.pos[:, None] - tss[None, :]), axis=1) <= 10_000)


def test_gene_tables_agree(cohort: SimulationResult) -> None:
    from varscore.genome.fasta import load_genes

    from_tsv = load_genes(cohort.genes_tsv)
    from_gtf = load_genes(cohort.genes_gtf)
    assert [(g.gene_id, g.chrom, g.tss, g.strand, g.name) for g in from_tsv] == [
        (g.gene_id, g.chrom, g.tss, g.strand, g.name) for g in from_gtf
    ]


def test_truth_tables(cohort: SimulationResult, hg19_cohort: SimulationResult) -> None:
    truth = pd.concat([pd.read_csv(r.truth_variants, sep="\t") for r in (cohort, hg19_cohort)])
    assert set(truth.kind) == {"motif", "direct"}
    assert set(truth.frequency) == {"common", "rare"}
    assert set(truth.site) == {"proximal", "distal"}
    assert (truth.distance_to_tss.abs() <= 0.4 * 49_152).all()
    motif = truth[truth.kind == "motif"]
    assert set(motif.motif_effect) <= {"creates", "disrupts"} and motif.motif_id.str.startswith("MA").all()
    creates = motif.motif_effect == "creates"
    assert (motif.motif_alt_score[creates] > motif.motif_ref_score[creates]).all()
    assert (motif.effect[creates] > 0).all() and (motif.effect[~creates] < 0).all()
    assert truth[truth.kind == "direct"].motif_id.isna().all()
    params = json.loads(cohort.params.read_text())
    assert params["seed"] == 11 and params["config"]["people"] == 300
    assert params["command"].startswith("varscore simulate -o .")


def test_motif_scores_match_a_direct_scan(cohort: SimulationResult, hg19_cohort: SimulationResult) -> None:
    """Recompute each motif variant's best REF/ALT PWM score with a plain loop over placements."""
    import pyfaidx
    from pyjaspar import jaspardb

    database = jaspardb(release="JASPAR2024")
    background = {"A": 0.295, "C": 0.205, "G": 0.205, "T": 0.295}
    complement = str.maketrans("ACGT", "TGCA")
    checked = 0
    for result in (cohort, hg19_cohort):
        fasta = pyfaidx.Fasta(str(result.fasta), sequence_always_upper=True)
        truth = pd.read_csv(result.truth_variants, sep="\t")
        for row in truth[truth.kind == "motif"].itertuples():
            counts = database.fetch_motif_by_id(row.motif_id).counts
            length = len(counts["A"])
            for allele, expected in ((row.ref, row.motif_ref_score), (row.alt, row.motif_alt_score)):
                # every placement of the motif that covers the variant, on both strands
                context = str(fasta[row.chrom][row.pos - length : row.pos - 1]) + allele
                context += str(fasta[row.chrom][row.pos : row.pos + length - 1])
                sites = [context[k : k + length] for k in range(length)]
                sites += [s.translate(complement)[::-1] for s in sites]
                best = max(_pwm_score(site, counts, background) for site in sites if set(site) <= set("ACGT"))
                assert best == pytest.approx(expected, abs=0.02), (row.variant_id, row.motif_id, allele)
            checked += 1
    assert checked >= 5


def _pwm_score(site: str, counts: dict, background: dict[str, float]) -> float:
    """log2-odds of ``site`` under a JASPAR count matrix (pseudocount 0.8), one base at a time."""
    total = 0.0
    for i, base in enumerate(site):
        column = sum(counts[b][i] for b in "ACGT")
        p = (counts[base][i] + 0.8 * background[base]) / (column + 0.8)
        total += round(math.log2(p / background[base]), 2)
    return total


def test_random_genome_composition() -> None:
    sequence = random_genome(np.random.default_rng(0), 200_000)
    gc = (sequence.count("G") + sequence.count("C")) / len(sequence)
    cpg_observed = sequence.count("CG") / (len(sequence) - 1)
    cpg_expected = (sequence.count("C") / len(sequence)) * (sequence.count("G") / len(sequence))
    assert 0.39 < gc < 0.43
    assert 0.15 < cpg_observed / cpg_expected < 0.35
    assert set(sequence) == set("ACGT")


# ---------------------------------------------------------------------------------------------
# 6. Errors


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (dict(h2=1.5), ["h2", "1.5", "[0, 1]"]),
        (dict(h2_mean=-0.1), ["h2_mean", "-0.1"]),
        (dict(people=0), ["people", "0"]),
        (dict(region="chr20:1-100"), ["needs a reference FASTA"]),
        (dict(fasta=HG19, region="chr20:10-5"), ["start", "end"]),
        (dict(fasta=HG19, region="chr20 10"), ["chr:start-end"]),
        (dict(window=10), ["window", "10"]),
    ],
)
def test_bad_options_raise_input_error(options: dict, words: list[str]) -> None:
    with pytest.raises(InputError) as error:
        SimulationConfig(**options)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("region", "words"),
    [
        ("chr20:63,000,000-64,000,000", ["runs past the end", "63,025,520"]),
        ("chr7:1-1000", ["chr7", "not in FASTA"]),
    ],
)
def test_region_outside_fasta(tmp_path: Path, region: str, words: list[str]) -> None:
    with pytest.raises(InputError) as error:
        simulate_cohort(SimulationConfig(people=10, fasta=HG19, region=region), tmp_path)
    for word in words:
        assert word in str(error.value)
    assert not list(tmp_path.iterdir()), "a failed run must leave no files"


def test_all_n_region_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no A/C/G/T"):
        simulate_cohort(SimulationConfig(people=10, fasta=HG19, region="chr20:1,000,001-1,010,000"), tmp_path)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--people", "0"], ["people"]),
        (["--h2", "1.5"], ["h2", "1.5"]),
        (["--fasta", str(HG19), "--region", "chr20:63,000,000-64,000,000"], ["runs past the end"]),
    ],
)
def test_cli_bad_options_give_one_line_errors(tmp_path: Path, args: list[str], words: list[str]) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli

    result = CliRunner().invoke(cli, ["simulate", "-o", str(tmp_path / "out"), *args])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1 and error_lines[0].startswith("Error:")
    for word in words:
        assert word in result.output


def test_cli_simulates(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli

    out = tmp_path / "sim"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "-o",
            str(out),
            "--people",
            "30",
            "--genes",
            "2",
            "--window",
            "8000",
            "--unphased",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "30 people" in result.output
    assert (out / "cohort.vcf.gz.tbi").exists() and (out / "truth_genes.tsv").exists()
    again = simulate_cohort(SimulationConfig(people=30, genes=2, window=8000, phased=False, seed=4), tmp_path / "api")
    assert result.output == "".join(line.replace(str(again.out_dir), str(out)) + "\n" for line in again.lines())
    params = json.loads((out / "params.json").read_text())
    assert params["config"]["phased"] is False and params["seed"] == 4
    assert "--unphased" in params["command"] and "--seed 4" in params["command"]


def test_cli_defaults_match_config() -> None:
    from varscore.cli import cli

    command = cli.commands["simulate"]
    names = {
        "people": "people",
        "n_genes": "genes",
        "seed": "seed",
        "phased": "phased",
        "window": "window",
        "h2_mean": "h2_mean",
        "null_fraction": "h2_null_fraction",
        "causal_per_gene": "causal_per_gene",
        "motif_fraction": "motif_fraction",
        "rare_fraction": "rare_fraction",
    }
    defaults = SimulationConfig()
    for param in command.params:
        if param.name in names:
            assert param.default == getattr(defaults, names[param.name]), param.name
