"""Naive versus fast ISM at the published architectures, side by side in one run, with the FLOP
bound (varscore_plugins.flops) next to the measured ratio.

- Enformer: dim 1536, 11 layers, 8 heads, the Variformer window of 49,152 bp (384 bins), the
  Variformer head, the centre bin read (``ScalarOutput()``).
- Borzoi: the published widths (stem 512 ... 1280, dim 1536, 8 layers, final 1920), scalar head,
  the centre 32-bp bin read; its 524,288-bp forward (~4.8 TFLOP) takes many minutes on a small CPU,
  so by default it is measured at ``--borzoi-window`` and the full window is given by the FLOP
  model only (labelled as such).

Per-variant costs: naive = full forwards of the k alternate windows in one batch (what naive ISM
runs per variant); fast = the k alternates of one cached reference pass in one batch (the
reference pass, shared by all variants of a window, is timed and printed apart). Random weights (``untie_initialisation_`` of bench_ism), one
random window; the largest |fast - naive| score difference is printed. CPU threads as torch sets
them; both wall-clock and this process's CPU time are given (CPU time is less disturbed by other
work on a shared machine).

    python benchmarks/bench_ism_full.py --variants 3
    python benchmarks/bench_ism_full.py --models enformer --variants 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ism import random_substitutions, untie_initialisation_  # noqa: E402

from varscore_plugins.borzoi import BorzoiBackbone  # noqa: E402
from varscore_plugins.enformer import EnformerBackbone  # noqa: E402
from varscore_plugins.fast_ism import BorzoiISM, EnformerISM  # noqa: E402
from varscore_plugins.flops import IsmFlops, borzoi_ism_flops, enformer_ism_flops  # noqa: E402
from varscore_plugins.outputs import ScalarOutput  # noqa: E402

BF16_PEAK_TFLOPS = 989.0  # H100 SXM dense bfloat16, for the projection only


def _timed(function: Any) -> tuple[float, float, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    out = function()
    return time.perf_counter() - start, time.process_time() - cpu, out


def measure(backbone: Any, window_class: Any, flops: IsmFlops, label: str, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, backbone.window_size)]
    # interior SNVs in the centre half of the window (the FLOP model's interior variant)
    quarter = backbone.window_size // 4
    subs = [
        (offset + quarter, base)
        for offset, base in random_substitutions(rng, reference[quarter:-quarter], args.variants)
    ]
    reduce = ScalarOutput().reduce  # the centre bin
    windows = np.repeat(reference[None], args.variants, axis=0)
    for row, (offset, base) in enumerate(subs):
        windows[row, offset] = np.eye(4, dtype=np.float32)["ACGT".index(base)]

    k = args.variants
    t_naive, c_naive, full = _timed(lambda: backbone.predict(windows))  # what naive ISM runs per variant
    t_ref, c_ref, window = _timed(lambda: window_class(backbone, reference, reduce))  # once per window
    t_fast, c_fast, fast = _timed(lambda: window.alternates(subs))
    naive_wall, naive_cpu, fast_wall, fast_cpu = t_naive / k, c_naive / k, t_fast / k, c_fast / k
    expected = np.asarray(reduce(full))[:, 0]
    worst = float(np.abs(fast[:, 0] - expected).max())
    effect = float(np.median(np.abs(expected - window.reference_output[0])))
    print(f"\n== {label}")
    print(
        f"   FLOP per variant: naive {flops.naive / 1e9:,.1f} G, patch path {flops.patch / 1e9:,.1f} G "
        f"(bound {flops.patch_bound:.2f}x), fast {flops.fast / 1e9:,.1f} G (bound {flops.fast_bound:.2f}x)"
    )
    print(
        f"   naive: {naive_wall:7.2f} s/variant wall, {naive_cpu:7.2f} s CPU (full forwards of {k} alternate windows)"
    )
    print(f"   fast:  {fast_wall:7.2f} s/variant wall, {fast_cpu:7.2f} s CPU ({k} alternates, one batch)")
    print(f"   fast reference pass (once per window, shared by its variants): {t_ref:.2f} s wall, {c_ref:.2f} s CPU")
    print(
        f"   MEASURED ratio naive / fast per variant: {naive_wall / fast_wall:.2f}x wall-clock, {naive_cpu / fast_cpu:.2f}x "
        f"CPU time (FLOP bound {flops.fast_bound:.2f}x); variant-scores/s (wall) naive {1 / naive_wall:.4f}, "
        f"fast {1 / fast_wall:.4f}"
    )
    print(
        f"   achieved {flops.naive / naive_cpu / 1e9:.1f} GFLOP per CPU-second naive, {flops.fast / fast_cpu / 1e9:.1f} fast; "
        f"largest |fast - naive| score {worst:.1e} (median |effect| {effect:.1e})"
    )


def projection(flops: IsmFlops, label: str, variants: float, utilisation: float) -> None:
    throughput = BF16_PEAK_TFLOPS * 1e12 * utilisation
    print(
        f"   PROJECTION (not measured), {label}: {variants:,.0f} variants x FLOP per variant / "
        f"({BF16_PEAK_TFLOPS:.0f} TFLOP/s x {utilisation:.0%}) = naive {variants * flops.naive / throughput / 3600:.1f} h, "
        f"fast {variants * flops.fast / throughput / 3600:.1f} h on one H100 (variant passes only: add one reference "
        f"pass per shared window)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="enformer,borzoi")
    parser.add_argument("--variants", type=int, default=3, help="variants per timed call (k)")
    parser.add_argument("--enformer-window", type=int, default=49_152)
    parser.add_argument("--borzoi-window", type=int, default=65_536, help="measured Borzoi window (524288: full)")
    parser.add_argument("--genome-variants", type=float, default=4.5e6, help="for the whole-genome projection")
    parser.add_argument("--utilisation", type=float, default=0.5, help="for the whole-genome projection")
    args = parser.parse_args()

    import torch

    print(f"CPU threads: {torch.get_num_threads()}; no GPU used")
    torch.manual_seed(0)
    if "enformer" in args.models:
        params = {"window_size": args.enformer_window}
        backbone = EnformerBackbone(**params, seed=0).build()
        untie_initialisation_(backbone.model_)
        flops = enformer_ism_flops(backbone.params, rows=1)
        label = f"Enformer, published architecture, {args.enformer_window:,} bp, centre bin"
        measure(backbone, EnformerISM, flops, label, args)
        projection(flops, f"Enformer at {args.enformer_window:,} bp", args.genome_variants, args.utilisation)
        del backbone
    if "borzoi" in args.models:
        params = {"window_size": args.borzoi_window}
        backbone = BorzoiBackbone(**params, seed=0).build()
        untie_initialisation_(backbone.model_)
        flops = borzoi_ism_flops(backbone.params, rows=1)
        size = "full size" if args.borzoi_window == 524_288 else "REDUCED window (published widths and depth)"
        measure(backbone, BorzoiISM, flops, f"Borzoi, {args.borzoi_window:,} bp, {size}, centre bin", args)
        full = borzoi_ism_flops({"window_size": 524_288}, rows=1)
        if args.borzoi_window != 524_288:
            print(
                f"   FLOP MODEL (not measured) at 524,288 bp: naive {full.naive / 1e12:.2f} T, fast "
                f"{full.fast / 1e12:.2f} T per variant: bound {full.fast_bound:.2f}x"
            )
        projection(full, "Borzoi at 524,288 bp", args.genome_variants, args.utilisation)


if __name__ == "__main__":
    main()
