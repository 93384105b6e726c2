"""Scoring sharded by gene over 2 CPU processes equals single-process scoring."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch  # noqa: E402

from tests.conftest import ScoredVcf
from varscore.examples import examples_dir
from varscore.genome.fasta import Genome  # noqa: E402
from varscore.io.vcf import iter_variants  # noqa: E402
from varscore.models.bundle import load_bundle  # noqa: E402
from varscore.scoring.distributed import (  # noqa: E402
    GeneRows,
    ShardJob,
    merge_gene_rows,
    run_plan_sharded,
    shard_genes,
)
from varscore.scoring.engine import AlleleScore, plan_scoring, run_plan  # noqa: E402

EXAMPLES = examples_dir()
FASTA = EXAMPLES / "data" / "ucsc.hg19.chr20.unittest.fasta.gz"


def _plan():  # type: ignore[no-untyped-def]
    bundle = load_bundle(EXAMPLES / "models" / "variformer-demo")
    genome = Genome(FASTA)
    window = int(bundle.manifest["window_size"])
    return (
        bundle,
        genome,
        plan_scoring(iter_variants(EXAMPLES / "data" / "cohort.vcf.gz"), bundle.genes, genome, window),
    )


def test_shards_cover_every_gene_once_and_balance_work() -> None:
    _, _, plan = _plan()
    shards = shard_genes(plan, 3)
    flat = [gene for shard in shards for gene in shard]
    assert sorted(flat) == sorted(plan.jobs) and len(flat) == len(set(flat))
    loads = [sum(len(plan.jobs[g]) for g in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(len(jobs) for jobs in plan.jobs.values())


def test_merge_follows_plan_order_whatever_the_shard_order() -> None:
    _, _, plan = _plan()
    genes = list(plan.jobs)[:3]
    plan.jobs = {g: plan.jobs[g] for g in genes}
    rows = [GeneRows(g, [(i, AlleleScore("A", g, 0.0, float(i)))], 0) for i, g in enumerate(genes)]
    merged = merge_gene_rows(copy.deepcopy(plan), rows[::-1])
    assert [s.gene for scores in merged.scores.values() for s in scores] == genes
    with pytest.raises(RuntimeError, match="not scored"):
        merge_gene_rows(copy.deepcopy(plan), rows[:2])


@pytest.mark.slow
def test_two_processes_equal_one() -> None:
    bundle, genome, plan = _plan()
    assert len(plan.jobs) >= 4 and sum(len(j) for j in plan.jobs.values()) >= 50
    backbone = bundle.backbone()
    backbone.configure("cpu")
    # one torch thread everywhere, so that every sum is added up in the same order
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_plan(copy.deepcopy(plan), backbone, bundle.output_mode(), genome, batch_size=8)
    finally:
        torch.set_num_threads(threads)
    sharded = run_plan_sharded(
        copy.deepcopy(plan), bundle.path, FASTA, ShardJob(devices=2, batch_size=8, device="cpu", threads=1)
    )
    assert sharded.scores == single.scores  # same records, alleles, genes, order and floats
    assert sharded.summary == single.summary


@pytest.mark.slow
def test_annotate_with_two_devices_writes_the_same_vcf(
    demo_scored: ScoredVcf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-process run (``demo_scored``, tests/conftest.py: one torch thread) and the same
    job with ``devices=2`` write the same VCF."""
    import gzip

    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' thread count: sums in the same order
    outputs = {}
    with gzip.open(demo_scored.vcf, "rt") as handle:
        outputs[1] = handle.read()
    out = tmp_path / "out2.vcf.gz"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_scoring(ScoringJob(EXAMPLES / "data" / "cohort.vcf.gz", "variformer-demo", out, device="cpu", devices=2))
    finally:
        torch.set_num_threads(threads)
    with gzip.open(out, "rt") as handle:
        outputs[2] = handle.read()
    assert outputs[1] == outputs[2]
    assert outputs[1].count("VARSCORE=") >= 50


@pytest.mark.slow
def test_a_failing_worker_is_one_error(tmp_path: Path) -> None:
    from varscore.errors import VarscoreError

    _, _, plan = _plan()
    with pytest.raises(VarscoreError, match="A scoring process failed"):
        run_plan_sharded(
            plan, EXAMPLES / "models" / "variformer-demo", tmp_path / "missing.fa", ShardJob(devices=2, device="cpu")
        )


@pytest.mark.slow
def test_sharded_runs_keep_and_reuse_gene_checkpoints(tmp_path: Path) -> None:
    """Every rank saves its finished genes; a resumed sharded run reads them back instead of scoring
    them again (a planted value in one gene's checkpoint comes back unchanged)."""
    import json

    from varscore.scoring.distributed import CheckpointSpec
    from varscore.scoring.engine import GeneCheckpoint

    bundle, _, plan = _plan()
    spec = CheckpointSpec(str(tmp_path / "partial"), "fingerprint-1", resume=False)
    first = run_plan_sharded(
        copy.deepcopy(plan), bundle.path, FASTA, ShardJob(devices=2, device="cpu", threads=1, checkpoint=spec)
    )
    saved = GeneCheckpoint.attach(spec.directory, spec.fingerprint)
    assert len(saved.finished()) == len(plan.jobs)
    gene_id = next(iter(plan.jobs))
    path = saved._path(gene_id)
    data = json.loads(path.read_text())
    data["rows"][0][3] = 123.25  # ALT_PRED of the gene's first allele
    path.write_text(json.dumps(data))
    resumed = run_plan_sharded(
        copy.deepcopy(plan),
        bundle.path,
        FASTA,
        ShardJob(
            devices=2, device="cpu", threads=1, checkpoint=CheckpointSpec(spec.directory, spec.fingerprint, resume=True)
        ),
    )
    record = data["rows"][0][0]
    label = plan.genes[gene_id].label
    assert [s.alt_pred for s in resumed.scores[record] if s.gene == label] == [123.25]
    assert {r: v for r, v in resumed.scores.items() if r != record} == {
        r: v for r, v in first.scores.items() if r != record
    }
    with pytest.raises(Exception, match="other inputs"):
        run_plan_sharded(
            copy.deepcopy(plan),
            bundle.path,
            FASTA,
            ShardJob(
                devices=2,
                device="cpu",
                threads=1,
                checkpoint=CheckpointSpec(spec.directory, "fingerprint-2", resume=True),
            ),
        )
