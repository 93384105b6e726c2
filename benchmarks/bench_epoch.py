"""Fine-tuning epoch throughput: today's per-person loader beside the batched one, in one run.

For a tiny and a mid-size Enformer-architecture model, runs ``finetune_sequence_backbone`` for a
few epochs with ``batched_loader=False`` (one ``PersonalWindows.batch`` call per person, then
``np.stack``) and ``batched_loader=True`` (one call per single-gene batch, ``__getitems__``), and
prints people per second (train + tune windows per epoch over the epoch's wall time, median over
epochs after the first) and, for the loaders alone, windows built per second. Simulated genotypes
(~1 SNV / 40 bp), so no files are read. Run:

    python benchmarks/bench_epoch.py [--window 16384] [--people 96] [--genes 2] [--epochs 3] [--threads 1]
        [--precision bf16-mixed]

``--precision P`` also times the batched loader's epochs under Lightning precision ``P`` beside full
precision.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from varscore.genome.personal import GenotypeSummary, PersonalWindows, WindowGenotypes
from varscore.genome.sequence import one_hot
from varscore.training.lightning import (
    BatchedPersonGeneDataset,
    FinetuneData,
    GeneData,
    PersonGeneDataset,
    SameGeneBatchSampler,
    TrainingConfig,
    _collate,
)
from varscore.training.trainer import finetune_sequence_backbone
from varscore.types import Gene, Window

SIZES = {
    "tiny": {"dim": 48, "depth": 2, "heads": 4, "attn_dim_key": 8, "dim_divisible_by": 8},
    "mid": {"dim": 192, "depth": 4, "heads": 8, "attn_dim_key": 32, "dim_divisible_by": 16},
}


def simulated_data(rng: np.random.Generator, window_size: int, people: int, genes: int) -> FinetuneData:
    out = []
    for g in range(genes):
        window = Window("chr1", 1_000_000 * (g + 1), 1_000_000 * (g + 1) + window_size)
        reference = "".join(rng.choice(list("ACGT"), size=window_size))
        snvs = window_size // 40
        offsets = np.sort(rng.choice(window_size, size=snvs, replace=False))
        refs = np.array([reference[o] for o in offsets])
        alts = np.array([rng.choice([b for b in "ACGT" if b != r]) for r in refs])
        freq = np.minimum(rng.beta(0.2, 1.5, size=snvs) + 1.0 / (2 * people), 0.99)
        genotypes = WindowGenotypes(
            window=window,
            samples=[f"P{i:04d}" for i in range(people)],
            positions=offsets + 1 + window.start,
            refs=refs,
            alts=alts,
            haplotypes=(rng.random((people, 2, snvs)) < freq).astype(np.int8),
            phased=np.ones(people, dtype=bool),
            summary=GenotypeSummary(snvs=snvs),
        )
        gene = Gene(f"G{g}", "chr1", window.start + window_size // 2 + 1, "+", f"GENE{g}")
        out.append(
            GeneData(gene, PersonalWindows(one_hot(reference), genotypes), rng.normal(size=people).astype(np.float32))
        )
    order = rng.permutation(people)
    n_tune = max(2, people // 6)
    return FinetuneData(
        genes=out,
        people=[f"P{i:04d}" for i in range(people)],
        train=np.sort(order[n_tune:]),
        tune=np.sort(order[:n_tune]),
    )


class _EpochTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seconds.append(float(record.args[-1]))  # type: ignore[index]


def epoch_rate(
    data: FinetuneData,
    size: str,
    window: int,
    batched: bool,
    epochs: int,
    batch: int,
    per_gene: int,
    precision: str = "32-true",
) -> float:
    from varscore_plugins.enformer import EnformerBackbone, tiny_params

    params = tiny_params(window_size=window, output_heads={"human": 4}, **SIZES[size])
    backbone = EnformerBackbone(**params).build()
    times = _EpochTimes()
    progress = logging.getLogger("varscore.progress")
    progress.addHandler(times)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    try:
        with tempfile.TemporaryDirectory() as out:
            config = TrainingConfig(
                lr=1e-4,
                batch_size=batch,
                accumulate=1,
                max_epochs=epochs,
                patience=epochs,
                people_per_epoch=per_gene,
                output_dir=out,
                progress=False,
                accelerator="cpu",
                batched_loader=batched,
                precision=precision,
            )
            finetune_sequence_backbone(backbone, data, config)
    finally:
        progress.removeHandler(times)
    people = len(data.genes) * (
        SameGeneBatchSampler(len(data.genes), len(data.people), data.train, batch, 1, per_gene).people_per_gene()
        + len(data.tune)
    )
    return people / statistics.median(times.seconds[1:] or times.seconds)


def loader_rate(data: FinetuneData, batched: bool, batch: int, repeats: int = 3) -> float:
    dataset: Any = BatchedPersonGeneDataset(data) if batched else PersonGeneDataset(data)
    n = len(data.people)
    batches = [
        [g * n + int(p) for p in data.train[i : i + batch]]
        for g in range(len(data.genes))
        for i in range(0, len(data.train) - batch + 1, batch)
    ]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            _collate(dataset.__getitems__(b) if batched else [dataset[i] for i in b])
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in batches) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=16384)
    parser.add_argument("--people", type=int, default=96)
    parser.add_argument("--genes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--people-per-epoch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--sizes", default="tiny,mid")
    parser.add_argument(
        "--precision",
        default=None,
        help="Also time the batched loader under this Lightning precision (e.g. bf16-mixed) beside 32-true.",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = simulated_data(np.random.default_rng(0), args.window, args.people, args.genes)
    print(
        f"{args.genes} genes x {args.window:,} bp, {len(data.train)} train / {len(data.tune)} tune people, "
        f"batch {args.batch_size}, {args.people_per_epoch} people per gene per epoch, {args.threads} thread(s)"
    )
    per_item, batched = loader_rate(data, False, args.batch_size), loader_rate(data, True, args.batch_size)
    print(
        f"loader only      per-person {per_item:10.1f} windows/s   batched {batched:10.1f} windows/s   "
        f"speed-up {batched / per_item:5.2f}x"
    )
    for size in args.sizes.split(","):
        old = epoch_rate(data, size, args.window, False, args.epochs, args.batch_size, args.people_per_epoch)
        new = epoch_rate(data, size, args.window, True, args.epochs, args.batch_size, args.people_per_epoch)
        print(
            f"epoch, {size:5s}    per-person {old:10.1f} people/s    batched {new:10.1f} people/s    "
            f"speed-up {new / old:5.2f}x"
        )
        if args.precision:
            rate = epoch_rate(
                data, size, args.window, True, args.epochs, args.batch_size, args.people_per_epoch, args.precision
            )
            print(
                f"epoch, {size:5s}    batched 32-true {new:10.1f} people/s    {args.precision} {rate:10.1f} people/s"
                f"    ratio {rate / new:5.2f}x"
            )


if __name__ == "__main__":
    main()
