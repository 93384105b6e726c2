"""Fast (cached conv-tower) versus naive (full forward per variant) ISM of the Enformer backbone.

Both paths score the same random SNVs of one random window in the same run, alternating
repeats so that a busy machine slows both alike; the printed ratio is naive time / fast time,
and the largest difference between the two results is printed beside it.

CPU, a mid-size model (dim 384, 2 transformer layers, stem + 6 conv-tower layers, 32,768 bp):

    python benchmarks/bench_ism.py

GPU, the full-size architecture (dim 1536, 11 layers) at 49,152 and 196,608 bp in bfloat16,
with variant-scores/s and achieved TFLOP/s against the H100's 989 TFLOP/s dense bf16 peak:

    python benchmarks/bench_ism.py --full-size --device cuda --batch-size 32 --variants 256 [--compile]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from varscore.genome.sequence import BASES
from varscore_plugins.enformer import EnformerBackbone

BF16_PEAK_TFLOPS = 989.0  # H100 SXM dense bfloat16


def mid_size_params(window: int, dim: int, depth: int, downsamples: int) -> dict[str, Any]:
    return {
        "window_size": window,
        "dim": dim,
        "depth": depth,
        "heads": dim // 96,
        "attn_dim_key": 32,
        "num_downsamples": downsamples,
        "dim_divisible_by": 32,
        "output_heads": {"human": 8},
    }


def full_size_params(window: int) -> dict[str, Any]:
    return {"window_size": window}  # the defaults are the published architecture


def untie_initialisation_(model: Any, seed: int = 0) -> None:
    """Make a randomly initialised model respond to single bases as a trained one does: give the
    weights enformer-pytorch initialises to zero (attention output projections) and the batch-norm
    statistics trained-looking values (with zero attention outputs no position sees another), and
    double the convolution weights (at their default scale a base's signal fades about 5-fold
    per tower layer, leaving variant effects at float round-off)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d):
                module.weight.mul_(2.0)
        for param in model.parameters():
            if not param.any():  # the scale of nn.Linear's default initialisation
                fan_in = param.shape[-1] if param.ndim > 1 else 1
                param.copy_(torch.randn(param.shape, generator=gen) / (3 * fan_in) ** 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=gen))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=gen))


def random_substitutions(rng: np.random.Generator, reference: np.ndarray, n: int) -> list[tuple[int, str]]:
    offsets = rng.choice(len(reference), size=n, replace=False)
    current = reference.argmax(axis=1)
    return [(int(o), BASES[(int(current[o]) + int(rng.integers(1, 4))) % 4]) for o in offsets]


def centre_bin(prediction: np.ndarray) -> np.ndarray:
    """``(N, bins, tracks)`` -> ``(N, tracks)``: the Variformer score (centre bin)."""
    return prediction[:, prediction.shape[1] // 2, :]


def timed_ism(backbone: EnformerBackbone, method: str, reference: np.ndarray, subs: list, batch: int) -> tuple:
    """Wall-clock seconds, CPU seconds of this process (all threads) and the result."""
    import torch

    backbone.ism_method = method
    if backbone._device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = backbone.ism(reference, subs, centre_bin, batch_size=batch)
    if backbone._device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, result


def flops_per_variant(backbone: EnformerBackbone, method: str, reference: np.ndarray, subs: list, batch: int) -> float:
    """Floating-point operations per scored variant (matmuls and convolutions, counted by
    ``torch.utils.flop_counter``), excluding the one reference pass."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone.ism_method = method
    counts = []
    for chunk in (subs[:1], subs[:1] * batch):
        counter = FlopCounterMode(display=False)
        with counter:
            backbone.ism(reference, chunk, centre_bin, batch_size=batch)
        counts.append(counter.get_total_flops())
    # one call = reference pass + len(chunk) variants; the difference removes the reference pass
    return (counts[1] - counts[0]) / (batch - 1)


def run(params: dict[str, Any], args: argparse.Namespace, label: str) -> None:
    import torch

    torch.manual_seed(0)
    backbone = EnformerBackbone(**params, seed=0).build()
    untie_initialisation_(backbone.model_)
    backbone.configure(args.device, bf16=args.bf16, compile=args.compile)
    rng = np.random.default_rng(0)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, backbone.window_size)]
    subs = random_substitutions(rng, reference, args.variants)
    naive_subs = subs[: args.naive_variants]
    batch = args.batch_size

    geometry = backbone.tower_geometry()
    print(
        f"\n== {label}: window {backbone.window_size:,} bp, {backbone.n_bins} bins, dim {params.get('dim', 1536)}, "
        f"depth {params.get('depth', 11)}, {int(backbone.params['num_downsamples']) - 1} conv-tower layers; "
        f"device {args.device}, bf16 {args.bf16}, compile {args.compile}, batch {batch}"
    )
    print(
        f"   an SNV changes {geometry.affected_bins(geometry.length // 2, geometry.length // 2)} tower bins; "
        f"patch {geometry.snv_patch_width()} bins"
    )
    flops = {m: flops_per_variant(backbone, m, reference, subs, batch) for m in ("naive", "fast")}
    print(
        f"   GFLOP per variant: naive {flops['naive'] / 1e9:.2f}, fast {flops['fast'] / 1e9:.2f} "
        f"({flops['naive'] / flops['fast']:.1f}x less work)"
    )
    timed_ism(backbone, "naive", reference, naive_subs[:batch], batch)  # warm-up (and compilation)
    timed_ism(backbone, "fast", reference, subs[:batch], batch)

    naive_times, fast_times, naive_cpu, fast_cpu = [], [], [], []
    worst = effect = scale = 0.0
    for _ in range(args.repeats):
        t_naive, c_naive, naive = timed_ism(backbone, "naive", reference, naive_subs, batch)
        t_fast, c_fast, fast = timed_ism(backbone, "fast", reference, subs, batch)
        naive_times.append(t_naive / len(naive_subs))
        fast_times.append(t_fast / len(subs))
        naive_cpu.append(c_naive / len(naive_subs))
        fast_cpu.append(c_fast / len(subs))
        worst = max(worst, float(np.abs(fast.alternates[: len(naive_subs)] - naive.alternates).max()))
        effect = float(np.median(np.abs(naive.delta)))
        scale = float(np.abs(naive.reference).max())
    # Best of the repeats: other work on the machine only ever slows a run down. CPU time (all of
    # this process's threads) is less sensitive to other processes than wall-clock time.
    naive_rate, fast_rate = 1 / min(naive_times), 1 / min(fast_times)
    ratios = [n / f for f, n in zip(fast_times, naive_times, strict=True)]
    cpu_ratio = min(naive_cpu) / min(fast_cpu)
    print(f"   naive: {naive_rate:8.2f} variant-scores/s  (best of {args.repeats} runs of {len(naive_subs)} variants)")
    print(f"   fast:  {fast_rate:8.2f} variant-scores/s  (best of {args.repeats} runs of {len(subs)} variants)")
    print(
        f"   fast / naive throughput: {fast_rate / naive_rate:.2f}x wall-clock (best runs; repeat by repeat: "
        f"{', '.join(f'{r:.1f}' for r in ratios)}); {cpu_ratio:.2f}x in CPU time per variant "
        f"({1e3 * min(naive_cpu):.0f} vs {1e3 * min(fast_cpu):.0f} ms)\n"
        f"   largest |fast - naive| score difference {worst:.1e}; median |variant effect| {effect:.1e}; "
        f"scores of order {scale:.1e}"
    )
    for method, rate in (("naive", naive_rate), ("fast", fast_rate)):
        tflops = rate * flops[method] / 1e12
        peak = (
            f" = {100 * tflops / BF16_PEAK_TFLOPS:.1f}% of the {BF16_PEAK_TFLOPS:.0f} TFLOP/s bf16 peak"
            if args.bf16
            else ""
        )
        print(f"   {method}: {1e3 * tflops:.1f} GFLOP/s executed{peak}")
    print(
        f"   fast, naive-equivalent work: {fast_rate * flops['naive'] / 1e12:.3f} TFLOP/s; "
        f"1 M variant-gene pairs at this window would take {1e6 / fast_rate / 3600:.2f} h"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true", help="published architecture at 49,152 and 196,608 bp")
    parser.add_argument("--window", type=int, default=32_768)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--downsamples", type=int, default=7, help="stem + (downsamples - 1) conv-tower layers")
    parser.add_argument("--variants", type=int, default=32, help="SNVs scored by the fast path per repeat")
    parser.add_argument("--naive-variants", type=int, default=16, help="the first N of them also scored naively")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's pieces")
    args = parser.parse_args()

    import torch

    if args.device == "cpu":
        print(f"CPU threads: {torch.get_num_threads()}")
    else:
        print(f"GPU: {torch.cuda.get_device_name(args.device)}")
    if args.full_size:
        args.bf16 = args.bf16 or args.device.startswith("cuda")
        for window in (49_152, 196_608):
            run(full_size_params(window), args, "full-size Enformer")
    else:
        run(mid_size_params(args.window, args.dim, args.depth, args.downsamples), args, "mid-size Enformer")


if __name__ == "__main__":
    main()
