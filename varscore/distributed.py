"""Scoring sharded by gene over several processes — GPUs of one machine, CPU workers, or the nodes
of a ``torchrun``/SLURM job — with torch.distributed; the merged result equals a single-process
:func:`varscore.engine.run_plan`.

Each process loads the model bundle itself and scores whole genes (no two processes need one
window); the per-gene rows are gathered with ``torch.distributed`` and merged in the plan's gene
order, so the output does not depend on how the genes were shared out.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from varscore.engine import AlleleScore, ScoringPlan, ScoringResult, score_gene
from varscore.errors import InputError, VarscoreError

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


def run_plan_sharded(
    plan: ScoringPlan,
    bundle_path: str | Path,
    fasta: str | Path,
    devices: int = 2,
    batch_size: int = 8,
    device: str = "auto",
    bf16: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> ScoringResult:
    """Score ``plan`` with the bundle at ``bundle_path`` on ``devices`` processes of this machine,
    sharded by gene; or, inside a ``torchrun`` job, as this process's share of the job.

    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available); on CUDA process ``i``
    uses GPU ``i`` (local rank under torchrun), on a CPU each process gets ``threads`` torch
    threads (default: ``$OMP_NUM_THREADS`` when set, else an equal share of the cores).
    ``progress`` shows rank 0's genes as a progress bar. Returns the merged result (identical to
    :func:`varscore.engine.run_plan`); under torchrun every rank gets it, so only rank 0 should
    write the output.
    """
    if launched_by_torchrun():
        return _score_shard(
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            plan,
            str(bundle_path),
            str(fasta),
            batch_size,
            device,
            bf16,
            threads,
            progress,
            "env://",
            None,
        )
    if devices < 1:
        raise InputError(f"--devices must be >= 1; got {devices}.")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="varscore-shards-") as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        result_path = Path(tmp) / "result.json"
        worker_args = (devices, plan, str(bundle_path), str(fasta), batch_size, device, bf16, threads, progress)
        try:
            mp.start_processes(
                _spawned_worker,
                args=(*worker_args, init, str(result_path)),
                nprocs=devices,
                join=True,
                start_method="spawn",
            )
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
            last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise VarscoreError(f"A scoring process failed: {last}") from err
        return merge_gene_rows(plan, _read_rows(result_path))


def _spawned_worker(rank: int, world_size: int, *args: Any) -> None:
    _score_shard(rank, world_size, *args)


def _score_shard(
    rank: int,
    world_size: int,
    plan: ScoringPlan,
    bundle_path: str,
    fasta: str,
    batch_size: int,
    device: str,
    bf16: bool,
    threads: int | None,
    progress: bool,
    init_method: str,
    result_path: str | None,
) -> ScoringResult:
    import torch
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from varscore.bundle import load_bundle
    from varscore.genome import Genome

    # Objects are gathered over gloo whatever the device: the rows are small.
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", rank)) % max(torch.cuda.device_count(), 1)
            worker_device = f"cuda:{local}"
        else:
            worker_device = "cpu"
            if threads is not None:
                torch.set_num_threads(threads)
            elif init_method != "env://" and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        bundle = load_bundle(bundle_path)
        backbone = bundle.sequence_backbone(worker_device, bf16)
        genome = Genome(Path(fasta))
        output_mode = bundle.output_mode()
        mine = shard_genes(plan, world_size)[rank]
        logger.info("rank %d of %d: %d genes on %s", rank, world_size, len(mine), worker_device)
        scored = []
        for gene_id in tqdm(mine, desc="genes (rank 0)", unit="gene", disable=not (progress and rank == 0)):
            rows, padded = score_gene(
                plan.genes[gene_id], plan.jobs[gene_id], backbone, output_mode, genome, plan.window_size, batch_size
            )
            scored.append(GeneRows(gene_id, rows, int(padded)))
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, scored)
        everything = [item for part in gathered for item in part]
        if result_path is not None and rank == 0:
            _write_rows(Path(result_path), everything)
        return merge_gene_rows(plan, everything)
    finally:
        dist.destroy_process_group()


def _write_rows(path: Path, scored: Sequence[GeneRows]) -> None:
    import json

    data = [
        [item.gene_id, item.padded, [[r, s.allele, s.gene, s.ref_pred, s.alt_pred] for r, s in item.rows]]
        for item in scored
    ]
    path.write_text(json.dumps(data))  # JSON floats round-trip exactly


def _read_rows(path: Path) -> list[GeneRows]:
    import json

    return [
        GeneRows(gene_id, [(int(r), AlleleScore(a, g, float(ref), float(alt))) for r, a, g, ref, alt in rows], padded)
        for gene_id, padded, rows in json.loads(path.read_text())
    ]


__all__ = ["GeneRows", "launched_by_torchrun", "merge_gene_rows", "run_plan_sharded", "shard_genes"]
