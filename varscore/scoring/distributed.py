"""Scoring sharded by gene over several processes — GPUs of one machine, CPU workers, or the nodes
of a ``torchrun``/SLURM job — with torch.distributed; the merged result equals a single-process
:func:`varscore.scoring.engine.run_plan`.

Each process loads the model bundle itself and scores whole genes (no two processes need one
window); the per-gene rows are gathered with ``torch.distributed`` and merged in the plan's gene
order, so the output does not depend on how the genes were shared out.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from varscore.errors import InputError, VarscoreError
from varscore.scoring.engine import AlleleScore, ScoringPlan, ScoringResult, score_gene

if TYPE_CHECKING:
    from varscore.models.bundle import LoadSettings

logger = logging.getLogger(__name__)


class GeneRows(NamedTuple):
    """One scored gene: ``rows`` ``(record, score)`` in job order and how many bases of its
    window lay off the contig."""

    gene_id: str
    rows: list[tuple[int, AlleleScore]]
    padded: int


def shard_genes(plan: ScoringPlan, n_shards: int) -> list[list[str]]:
    """The plan's genes split into ``n_shards`` lists of about equal work (alleles to score):
    largest gene first onto the least-loaded shard; deterministic."""
    if n_shards < 1:
        raise InputError(f"The number of shards must be >= 1; got {n_shards}.")
    loads = [0] * n_shards
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    order = sorted(plan.jobs, key=lambda gene_id: (-len(plan.jobs[gene_id]), gene_id))
    for gene_id in order:
        target = min(range(n_shards), key=lambda i: (loads[i], i))
        shards[target].append(gene_id)
        loads[target] += len(plan.jobs[gene_id])
    return shards


def merge_gene_rows(plan: ScoringPlan, scored: Sequence[GeneRows]) -> ScoringResult:
    """Scores of every gene, merged in the plan's gene order (as :func:`run_plan` produces them)."""
    by_gene = {item.gene_id: item for item in scored}
    missing = [gene_id for gene_id in plan.jobs if gene_id not in by_gene]
    if missing:
        raise RuntimeError(f"{len(missing)} genes were not scored by any worker (e.g. {missing[0]}).")
    summary = plan.summary
    scores: dict[int, list[AlleleScore]] = defaultdict(list)
    for gene_id in plan.jobs:
        item = by_gene[gene_id]
        for record, score in item.rows:
            scores[record].append(score)
        summary.windows_padded += int(item.padded > 0)
        summary.genes_scored += 1
    return ScoringResult(dict(scores), summary)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (or a SLURM script that sets
    the same variables: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@dataclass(frozen=True)
class CheckpointSpec:
    """Where sharded workers keep finished genes (see :class:`varscore.scoring.engine.GeneCheckpoint`):
    rank 0 opens ``directory`` (validated when ``resume``, else cleared) before any rank reads it."""

    directory: str
    fingerprint: str
    resume: bool


@dataclass(frozen=True)
class ShardJob:
    """How :func:`run_plan_sharded` shares a plan out: ``devices`` local processes (a ``torchrun``
    job brings its own), ``batch_size`` alternate windows per forward pass on ``device``
    (``"cpu"``, ``"cuda"`` or ``"auto"``: CUDA when available) with ``bf16`` autocast; on a CPU each
    local process gets ``threads`` torch threads (default: ``$OMP_NUM_THREADS`` when set, else an
    equal share of the cores). ``progress`` shows rank 0's genes as a progress bar; with
    ``checkpoint`` every rank saves its finished genes there and, resuming, reads back those done."""

    devices: int = 2
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    threads: int | None = None
    progress: bool = False
    checkpoint: CheckpointSpec | None = None


def run_plan_sharded(
    plan: ScoringPlan, bundle_path: str | Path, fasta: str | Path, job: ShardJob = ShardJob()
) -> ScoringResult:
    """Score ``plan`` with the bundle at ``bundle_path`` on ``job.devices`` processes of this machine,
    sharded by gene; or, inside a ``torchrun`` job, as this process's share of the job.

    Local processes are started by PyTorch's elastic launcher (what ``torchrun`` uses), so they
    run the same worker as a ``torchrun``/SLURM job: rendezvous and ranks come from the
    environment; they load the bundle with this process's
    :class:`~varscore.models.bundle.LoadSettings`. On CUDA process ``i`` uses GPU ``i`` (local
    rank). Returns the merged result (identical to :func:`varscore.scoring.engine.run_plan`); under
    torchrun every rank gets it, so only rank 0 should write the output.
    """
    from varscore.models.bundle import loading_settings

    args = (plan, str(bundle_path), str(fasta), job, loading_settings())
    if launched_by_torchrun():
        return _score_shard(*args, False)
    if job.devices < 1:
        raise InputError(f"--devices must be >= 1; got {job.devices}.")
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="varscore-shards-") as tmp:
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=job.devices,
            run_id=f"varscore-{uuid.uuid4().hex[:12]}",
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
            max_restarts=0,
            monitor_interval=0.1,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=tmp),
        )
        try:
            results = elastic_launch(config, _score_shard)(*args, True)
        except ChildFailedError as err:
            raise VarscoreError(f"A scoring process failed: {_first_failure(err)}") from err
    return results[0]


def _first_failure(err: Any) -> str:
    """The last line of the error of the worker that failed first (its message; the others often
    only report losing it), else the launcher's."""
    failures = sorted(
        getattr(err, "failures", {}).items(), key=lambda item: (getattr(item[1], "timestamp", 0), item[0])
    )
    for _, failure in failures:
        message = failure.message
        if isinstance(message, dict):  # the error file's record: {"message": ..., "extraInfo": ...}
            message = message.get("message", message)
        lines = [line for line in str(message).strip().splitlines() if line.strip()]
        if lines:
            return lines[-1]
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _score_shard(
    plan: ScoringPlan, bundle_path: str, fasta: str, job: ShardJob, loading: LoadSettings, local: bool
) -> ScoringResult:
    """One process's share: rank and world size from the environment (torchrun or the elastic
    launcher); ``local``: started by :func:`run_plan_sharded` on this machine (threads are shared
    out, and ``loading`` is the parent's way of loading bundles)."""
    import torch
    import torch.distributed as dist

    from varscore.genome.fasta import Genome
    from varscore.io.progress import progress_iter
    from varscore.models.bundle import configure_loading, load_bundle
    from varscore.scoring.engine import GeneCheckpoint

    if local:
        configure_loading(loading)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # Objects are gathered over gloo whatever the device: the rows are small.
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world_size)
    try:
        use_cuda = job.device.startswith("cuda") or (job.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            local_rank = int(os.environ.get("LOCAL_RANK", rank)) % max(torch.cuda.device_count(), 1)
            worker_device = f"cuda:{local_rank}"
        else:
            worker_device = "cpu"
            if job.threads is not None:
                torch.set_num_threads(job.threads)
            elif local and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        saved = None
        checkpoint = job.checkpoint
        if checkpoint is not None:
            # rank 0 validates (resume) or clears the folder once, before anyone reads it, and tells
            # every rank the outcome: all raise its error, rather than the others dying at a barrier
            outcome: list[str | None] = [None]
            if rank == 0:
                try:
                    GeneCheckpoint(checkpoint.directory, checkpoint.fingerprint, resume=checkpoint.resume)
                except VarscoreError as err:
                    outcome = [str(err)]
            dist.broadcast_object_list(outcome, src=0)
            if outcome[0] is not None:
                raise InputError(outcome[0])
            saved = GeneCheckpoint.attach(checkpoint.directory, checkpoint.fingerprint)
        bundle = load_bundle(bundle_path)
        backbone = bundle.sequence_backbone(worker_device, job.bf16)
        genome = Genome(Path(fasta))
        output_mode = bundle.output_mode()
        mine = shard_genes(plan, world_size)[rank]
        logger.info("rank %d of %d: %d genes on %s", rank, world_size, len(mine), worker_device)
        scored = []
        for gene_id in progress_iter(mine, "annotate (rank 0)", "genes", job.progress and rank == 0):
            done = saved.load(gene_id) if saved is not None else None
            if done is None:
                gene = plan.genes[gene_id]
                rows, padded = score_gene(
                    gene, plan.jobs[gene_id], backbone, output_mode, genome, plan.window_size, job.batch_size
                )
                if saved is not None:
                    saved.save(gene_id, gene.label, rows, int(padded))
                done = rows, int(padded)
            scored.append(GeneRows(gene_id, done[0], int(done[1])))
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, scored)
        return merge_gene_rows(plan, [item for part in gathered for item in part])
    finally:
        dist.destroy_process_group()


__all__ = [
    "CheckpointSpec",
    "GeneRows",
    "ShardJob",
    "launched_by_torchrun",
    "merge_gene_rows",
    "run_plan_sharded",
    "shard_genes",
]
