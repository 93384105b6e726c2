from __future__ import annotations

import gzip
import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import numpy as np
import pytest

from varscore.types import Gene

DATA = Path(__file__).resolve().parent / "data"  # real public files, see tests/data/README.md
BCFTOOLS = shutil.which("bcftools")
# On CI every optional tool must be present: a skip for a missing one becomes a failure there.
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_tool(tool: str, install: str, module_level: bool = False) -> NoReturn:
    """Skip (with the install command in the reason) where ``tool`` is absent; fail on CI."""
    message = f"{tool} is not installed ({install})"
    if ON_CI:
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def optional_import(module: str, install: str) -> ModuleType:
    """Import an optional package, or skip (fail on CI) naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing_tool(module, install, module_level=True)


needs_bcftools = pytest.mark.skipif(
    BCFTOOLS is None and not ON_CI, reason="bcftools is not installed (apt-get install bcftools)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "opt_in(env): runs only when the environment variable env is 1")
    if ON_CI and BCFTOOLS is None:
        raise pytest.UsageError("CI=true but bcftools is not installed (apt-get install bcftools tabix)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect opt-in tests (minutes of compilation on a CPU) unless their variable is set."""
    selected, deselected = [], []
    for item in items:
        marker = item.get_closest_marker("opt_in")
        (deselected if marker and os.environ.get(marker.args[0]) != "1" else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture
def toy_plugin():
    """The toy backbone registered the way a third-party plugin is (no core change)."""
    from tests import toy_plugin as module
    from varscore.plugin.manager import manager

    manager.register(module, name="toy-plugin")
    yield module
    manager.unregister("toy-plugin")


def write_fasta(path: Path, contigs: dict[str, str]) -> Path:
    with open(path, "w") as handle:
        for name, seq in contigs.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i : i + 60] + "\n")
    return path


def random_sequence(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


def write_vcf(
    path: Path,
    records: list[tuple[str, int, str, str]],
    samples: list[str] | None = None,
    contigs: dict[str, int] | None = None,
    genotypes: list[list[str]] | None = None,
) -> Path:
    """A small VCF; ``records`` are (chrom, pos, ref, alt). Written as .vcf or bgzipped .vcf.gz."""
    lines = ["##fileformat=VCFv4.2"]
    for name, length in (contigs or {}).items():
        lines.append(f"##contig=<ID={name},length={length}>")
    lines.append('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">')
    if samples:
        lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    if samples:
        header += "\tFORMAT\t" + "\t".join(samples)
    lines.append(header)
    for i, (chrom, pos, ref, alt) in enumerate(records):
        line = f"{chrom}\t{pos}\trs{i}\t{ref}\t{alt}\t50\tPASS\tDP={10 + i}"
        if samples:
            gts = genotypes[i] if genotypes else ["0/1"] * len(samples)
            line += "\tGT\t" + "\t".join(gts)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        import pysam

        plain = path.with_suffix("")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_text(text)
    return path


@pytest.fixture
def toy_world(tmp_path: Path, toy_plugin):
    """A FASTA with two contigs, two genes, a toy bundle and a mixed VCF."""
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import ScalarOutput

    rng = np.random.default_rng(1)
    seqs = {"chr1": random_sequence(rng, 1000), "chr2": random_sequence(rng, 500)}
    fasta = write_fasta(tmp_path / "ref.fa", seqs)
    genes = [
        Gene("G1", "chr1", 200, "+", "GENEA"),
        Gene("G2", "chr1", 230, "-", "GENEB"),  # overlaps G1's window
        Gene("G3", "chr2", 20, "+", "GENEC"),  # window runs off the contig start
    ]
    backbone = ToyBackbone().build()
    bundle = save_bundle(
        tmp_path / "models" / "toy-model",
        name="toy-model",
        backbone=backbone,
        output_mode=ScalarOutput(track=1, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"fasta": fasta, "seqs": seqs, "genes": genes, "bundle": bundle, "backbone": backbone, "tmp": tmp_path}


def read_vcf_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return handle.read().splitlines()


def perturb_weights(module: Any, seed: int, mean_scale: float = 0.3) -> None:
    """Move every weight and batch-norm statistic of a torch ``module`` off its initial value, in
    place: enformer-pytorch and borzoi-pytorch start attention output projections at zero (which
    would hide errors in attention weights), and a batch norm left at its initial statistics maps
    zero padding to zero. 0.12 is large enough for single SNVs to move the outputs and small enough
    to keep them of order 1 (larger weights blow them up to float32 round-off territory)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.12 * torch.randn(param.shape, generator=gen))
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(mean_scale * torch.randn(buffer.shape, generator=gen))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=gen))


def score_entries(path: Path) -> list[tuple[list[str], list[str]]]:
    """Each ``VARSCORE`` entry of an annotated VCF, read from its text: the record's tab-separated
    fields and the entry's ``|``-separated subfields, in file order."""
    entries = []
    for line in read_vcf_lines(path):
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        info = dict(item.split("=", 1) for item in fields[7].split(";") if "=" in item)
        for entry in info["VARSCORE"].split(",") if "VARSCORE" in info else []:
            entries.append((fields, entry.split("|")))
    return entries


def cohort_args(cohort: Any) -> list[str]:
    """The ``--vcf --expression --genes --fasta`` options of a simulated cohort (its folder, or the
    :class:`~varscore.simulate.SimulationResult`), as ``finetune``/``evaluate`` take them."""
    if isinstance(cohort, (str, Path)):
        folder = Path(cohort)
        files = (
            folder / "cohort.vcf.gz",
            folder / "cohort.expression.bed.gz",
            folder / "genes.tsv",
            folder / "reference.fa",
        )
    else:
        files = (cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta)
    return [
        arg
        for option, path in zip(("--vcf", "--expression", "--genes", "--fasta"), files, strict=True)
        for arg in (option, str(path))
    ]


# Session-scoped artefacts: each is built once per test run and shared read-only by the tests named
# in its docstring. A test that changes one must copy it into its own ``tmp_path`` first.

LINEAR_WINDOW = 2048


@pytest.fixture(scope="session")
def linear_cohort(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A simulated cohort (300 people, 10 genes, 2,048 bp windows, seed 3, mean h² 0.3): the
    :class:`~varscore.simulate.SimulationResult` the linear-baseline tests fit, export, evaluate and
    annotate with (tests/varscore_plugins/test_linear.py)."""
    from varscore.simulate import SimulationConfig, simulate_cohort

    out = tmp_path_factory.mktemp("linear_sim")
    return simulate_cohort(SimulationConfig(people=300, genes=10, window=LINEAR_WINDOW, seed=3, h2_mean=0.3), out)


@pytest.fixture(scope="session")
def linear_bundle(linear_cohort: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An elastic-net bundle (``n_alphas=20``) fine-tuned on :func:`linear_cohort` with
    :func:`~varscore.training.finetune.run_finetune`, as ``varscore finetune --backbone elastic-net``
    writes it: the bundle the PredictDB export/import, evaluate and annotate tests of
    tests/varscore_plugins/test_linear.py read."""
    from varscore.training.cohort import CohortInputs
    from varscore.training.finetune import FinetuneJob, run_finetune

    cohort = linear_cohort
    out = tmp_path_factory.mktemp("linear_bundle") / "en"
    inputs = CohortInputs(cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta)
    job = FinetuneJob(
        inputs,
        out,
        backbone="elastic-net",
        backbone_params={"n_alphas": 20},
        settings={"window": LINEAR_WINDOW},
        quiet=True,
    )
    result = run_finetune(job)
    assert result.bundle == out, result.lines()
    return out


@dataclass(frozen=True)
class ScoredVcf:
    """An annotated VCF made once per test run: ``vcf`` (bgzipped), the run's summary ``lines``
    and, where the run wrote one, its Parquet ``detail`` table."""

    vcf: Path
    lines: tuple[str, ...]
    detail: Path | None = None


def _example_vcf() -> Path:
    from varscore.examples import data_dir

    return data_dir() / "cohort.vcf.gz"


@pytest.fixture(scope="session")
def demo_scored(tmp_path_factory: pytest.TempPathFactory) -> ScoredVcf:
    """The bundled example cohort (``varscore/examples/data/cohort.vcf.gz``) annotated in gene
    mode with the bundled ``variformer-demo`` named as the README's main command names it
    (``ScoringJob(vcf, "variformer-demo", out, device="cpu")``), in one process with one torch
    thread, so that its sums add up in the order of one-thread worker processes (about 20 s on
    one core). Read by tests/scoring/test_gene_mode.py (the README command's output) and
    tests/scoring/test_distributed.py (the one-process run a two-process run must equal)."""
    import torch

    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    out = tmp_path_factory.mktemp("demo_scored") / "out.vcf.gz"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_scoring(ScoringJob(_example_vcf(), "variformer-demo", out, device="cpu"))
    finally:
        torch.set_num_threads(threads)
    return ScoredVcf(out, tuple(summary.lines()))


@pytest.fixture(scope="session")
def elastic_net_scored(tmp_path_factory: pytest.TempPathFactory) -> ScoredVcf:
    """The bundled example cohort annotated in gene mode with the bundled ``elastic-net-demo``,
    with its Parquet detail table, as ``varscore annotate in.vcf.gz --detail DETAIL`` (the
    ``argv`` recorded in both) writes them. Read by tests/scoring/test_detail.py (the table
    against the VCF's entries and provenance) and tests/scoring/test_tracks.py (tracks made from
    the VCF's scores)."""
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    folder = tmp_path_factory.mktemp("elastic_net_scored")
    out, detail = folder / "out.vcf.gz", folder / "detail.parquet"
    argv = ["varscore", "annotate", "in.vcf.gz", "--detail", str(detail)]
    summary = run_scoring(ScoringJob(_example_vcf(), "elastic-net-demo", out, detail=detail, argv=argv))
    return ScoredVcf(out, tuple(summary.lines()), detail)


@dataclass(frozen=True)
class DemoIsm:
    """The bundled ``variformer-demo`` loaded once (``bundle``, its ``ModelScorer``, the
    ``genome`` of its reference), the example cohort's variants in the windows of every gene of
    the bundle (``variants``: gene id -> ``GeneVariants``) and their ISM table (``ism``)."""

    bundle: Any
    scorer: Any
    genome: Any
    variants: dict[str, Any]
    ism: Any


@pytest.fixture(scope="session")
def demo_ism() -> DemoIsm:
    """``score_genes`` of the bundled ``variformer-demo`` over the variants of the bundled example
    cohort in the windows of all the bundle's genes (every gene's table is the one scoring that
    gene alone gives; about 13 s on one core). Read by tests/analysis/test_hsv.py (the HSVs'
    causal enrichment) and tests/analysis/test_drivers.py (the drivers of SNAP25 and MKKS)."""
    from varscore.analysis.ism import ModelScorer, read_gene_variants, score_genes
    from varscore.genome.fasta import Genome
    from varscore.models.bundle import load_bundle

    bundle = load_bundle("variformer-demo")
    scorer = ModelScorer.from_bundle(bundle)
    genome = Genome(bundle.reference_fasta)
    variants = read_gene_variants(_example_vcf(), bundle.genes, genome, scorer.window_size)
    return DemoIsm(bundle, scorer, genome, variants, score_genes(scorer, variants, genome))
