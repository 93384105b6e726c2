"""Full-size Borzoi (the published architecture: dim 1536, 8 layers, 7,611 human tracks; random
weights) scoring variants by ISM, with and without test-time augmentation (--rc doubles the
work), as ``varscore annotate`` runs it: variant-scores/s and the achieved FLOP rate against the
device's peak (FLOPs counted with ``torch.utils.flop_counter`` on one forward pass).

An ensemble of R replicates costs R times one model (members score in turn), so its rate is the
single-model rate divided by R; the line "4-replicate ensemble" prints that.

CPU smoke run (a short window, 2 variants; a couple of minutes on a small machine):

    python benchmarks/bench_borzoi_full.py --window 16384 --variants 2 --batch-size 2

On a GPU, the published 524,288-bp window in bfloat16 (H100 dense bf16 peak 989 TFLOP/s; give
--peak-tflops for another device):

    python benchmarks/bench_borzoi_full.py --device cuda --bf16 --window 524288 --variants 32 --batch-size 4
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from varscore_plugins.borzoi import BorzoiBackbone
from varscore_plugins.outputs import ScalarOutput


def forward_flops(backbone: BorzoiBackbone, batch: np.ndarray) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.from_numpy(batch).to(backbone._device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode(), backbone._autocast():
        backbone._forward(x)
    return float(counter.get_total_flops()) / len(batch)


def time_ism(scorer: Any, reference: np.ndarray, subs: list[tuple[int, str]], reduce: Any, batch: int) -> float:
    import torch

    scorer.ism(reference, subs[: min(len(subs), batch)], reduce, batch_size=batch)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    scorer.ism(reference, subs, reduce, batch_size=batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    import torch

    from varscore.scoring.ensemble import AugmentedBackbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=16384, help="Input length in bp (524288 = Borzoi's).")
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="Device peak for the utilisation figure [989 with --bf16 on CUDA, else none].",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    backbone = BorzoiBackbone(head="pretrained", window_size=args.window, trained_positions=4096, seed=0)
    started = time.perf_counter()
    backbone.build()
    backbone.configure(device=args.device, bf16=args.bf16)
    n_params = sum(p.numel() for p in backbone.model_.parameters())
    print(
        f"Borzoi full size: {n_params / 1e6:.0f} M weights, {args.window:,} bp, {backbone.n_bins} bins x "
        f"{backbone.n_tracks} tracks, built in {time.perf_counter() - started:.1f} s on {args.device}"
        f"{' (bf16)' if args.bf16 else ''}"
    )
    rng = np.random.default_rng(0)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, args.window)]
    offsets = rng.choice(np.arange(args.window // 4, 3 * args.window // 4), size=args.variants, replace=False)
    subs = [(int(o), "ACGT"[(int(np.argmax(reference[o])) + 1) % 4]) for o in offsets]
    reduce = ScalarOutput(track=7531, stat="SUM").features
    flops = forward_flops(backbone, reference[None])
    peak = args.peak_tflops or (989.0 if args.bf16 and args.device.startswith("cuda") else None)
    print(f"   {flops / 1e9:.1f} GFLOP per forward pass (one variant = one forward; the reference once per window)")
    rates = {}
    for label, scorer, passes in (("plain", backbone, 1), ("--rc", AugmentedBackbone(backbone, rc=True), 2)):
        seconds = time_ism(scorer, reference, subs, reduce, args.batch_size)
        rate = args.variants / seconds
        executed = rate * passes * flops * (1 + 1 / args.variants)  # alternates plus the reference pass
        util = f" = {100 * executed / 1e12 / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else ""
        print(
            f"   {label}: {rate:.3f} variant-scores/s ({seconds:.1f} s for {args.variants}); "
            f"{executed / 1e9:.1f} GFLOP/s executed{util}"
        )
        rates[label] = rate
    print(
        f"   --rc costs {rates['plain'] / rates['--rc']:.2f}x plain; a 4-replicate ensemble scores "
        f"{rates['plain'] / 4:.3f} variant-scores/s (members in turn)"
    )


if __name__ == "__main__":
    main()
