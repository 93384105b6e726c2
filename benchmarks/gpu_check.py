"""The one-shot GPU check (run through ``benchmarks/gpu_check.sh``): full-size Enformer (dim 1536,
11 layers, at 49,152 and 196,608 bp, the 5,313-track human head) and full-size Borzoi (524,288 bp,
the 7,611-track head), random weights, each in float32 and in bfloat16 autocast:

- **gene mode**: ``backbone.ism`` of SNVs around one window's centre, read at the centre bin(s)
  (the exact fast ISM from one reference pass);
- **variant-centred mode**: ``VariantCentredScorer`` (``exact`` centring, SUM over every bin of 8
  tracks), each SNV in its own window (a reference pass plus the fast alternate).

For each: variant-scores per second (wall-clock, after one warm-up call, ``torch.cuda.synchronize``
around the timed call), the model FLOP utilisation (the FLOP model's count for the work done,
:mod:`varscore_plugins.flops`, over the time, over the device's dense peak for that dtype: ``--peak-fp32``
/ ``--peak-bf16`` TFLOP/s, H100 SXM figures by default), peak GPU memory, and for bf16 the largest
|bf16 - float32| score difference relative to the largest |float32 score|.

``--tiny`` (or ``VARSCORE_GPU_CHECK_TINY=1``): tiny models, 2,048-bp windows, on whatever device is
there (CPU in CI; bf16 autocast is CUDA-only and is skipped on CPU), to keep the script working.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

BASES = "ACGT"


def cases(tiny: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, backbone name, params)."""
    if tiny:
        from varscore_plugins.borzoi import tiny_params as borzoi_tiny
        from varscore_plugins.enformer import tiny_params

        return [
            ("Enformer tiny, 2,048 bp", "enformer", tiny_params(2048, head="pretrained")),
            ("Borzoi tiny, 2,048 bp", "borzoi", borzoi_tiny(2048, head="track", n_tracks=8)),
        ]
    return [
        ("Enformer, 49,152 bp", "enformer", {"window_size": 49_152, "head": "pretrained"}),
        ("Enformer, 196,608 bp", "enformer", {"window_size": 196_608, "head": "pretrained"}),
        ("Borzoi, 524,288 bp", "borzoi", {"window_size": 524_288, "head": "pretrained"}),
    ]


def flops_of(name: str, params: dict[str, Any], rows: int | None) -> Any:
    from varscore_plugins.flops import borzoi_ism_flops, enformer_ism_flops

    return (enformer_ism_flops if name == "enformer" else borzoi_ism_flops)(params, rows=rows)


def gene_scores(backbone: Any, window: np.ndarray, subs: list, reduce: Any, batch_size: int) -> np.ndarray:
    result = backbone.ism(window, subs, reduce, batch_size=batch_size)
    return np.asarray(result.alternates)[:, 0] - np.asarray(result.reference)[0]


def centred_scores(scorer: Any, vcf: Path) -> np.ndarray:
    from varscore.io.vcf import iter_variants

    return np.stack([r.alleles[0].window[:, 0, 2] for r in scorer.score(iter_variants(vcf))])


def timed(device: str, run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()`` after a warm-up call: (result, seconds, peak GPU memory in GiB, 0 on CPU)."""
    import torch

    cuda = device.startswith("cuda")
    run()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", default=os.environ.get("VARSCORE_GPU_CHECK_TINY") == "1")
    parser.add_argument("--gene-variants", type=int, default=None, help="SNVs per gene window (64; tiny 8).")
    parser.add_argument("--centred-variants", type=int, default=None, help="SNVs in own windows (8; tiny 3).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--peak-fp32", type=float, default=67.0, help="Dense float32 TFLOP/s (H100 SXM: 67).")
    parser.add_argument("--peak-bf16", type=float, default=989.0, help="Dense bf16 TFLOP/s (H100 SXM: 989).")
    args = parser.parse_args()

    import torch

    from varscore.genome.fasta import Genome
    from varscore.plugin.manager import get_backbone, get_output_mode
    from varscore.scoring.centred import ScorerSettings, VariantCentredScorer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    n_gene = args.gene_variants or (8 if args.tiny else 64)
    n_centred = args.centred_variants or (3 if args.tiny else 8)
    dtypes = ["float32", "bf16"] if device == "cuda" else ["float32"]
    print(f"device: {name}; torch {torch.__version__}; {n_gene} gene-mode SNVs, {n_centred} variant-centred SNVs")
    print("| model | mode | dtype | variant-scores/s | TFLOP/s | MFU | peak GPU GiB | bf16 vs fp32 (rel.) |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for label, backbone_name, params in cases(args.tiny):
        start_build = time.perf_counter()
        backbone = get_backbone(backbone_name)(**params).build()
        built = time.perf_counter() - start_build
        length = backbone.window_size
        with tempfile.TemporaryDirectory() as tmp:
            seq = "".join(rng.choice(list(BASES), size=length * (n_centred + 2)))
            fasta = Path(tmp) / "ref.fa"
            fasta.write_text(">chr1\n" + "\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)) + "\n")
            positions = [length + i * length + rng.integers(0, length // 2) for i in range(n_centred)]
            vcf = Path(tmp) / "v.vcf"
            lines = ["##fileformat=VCFv4.2", f"##contig=<ID=chr1,length={len(seq)}>"]
            lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
            for p in positions:
                alt = "ACGT".replace(seq[p - 1], "")[int(rng.integers(0, 3))]
                lines.append(f"chr1\t{p}\t.\t{seq[p - 1]}\t{alt}\t.\tPASS\t.")
            vcf.write_text("\n".join(lines) + "\n")
            window = np.eye(4, dtype=np.float32)[[BASES.index(b) for b in seq[:length]]]
            offsets = length // 2 + rng.integers(-length // 8, length // 8, size=n_gene)
            subs = [(int(o), "ACGT".replace(seq[int(o)], "")[0]) for o in offsets]
            center_bins = 3 if backbone_name == "enformer" else 1
            reduce = get_output_mode("scalar")(track=0, center_bins=center_bins).reduce
            tracks = list(range(min(8, backbone.n_tracks)))
            scores: dict[tuple[str, str], np.ndarray] = {}
            for dtype in dtypes:
                backbone.configure(device, bf16=dtype == "bf16")
                peak = args.peak_bf16 if dtype == "bf16" else args.peak_fp32

                settings = ScorerSettings(tracks=tracks, stats=("SUM",), batch_size=args.batch_size)
                scorer = VariantCentredScorer(backbone, Genome(fasta), settings)
                gene = partial(gene_scores, backbone, window, subs, reduce, args.batch_size)
                centred = partial(centred_scores, scorer, vcf)
                gene_flops = flops_of(backbone_name, params, center_bins)
                centred_flops = flops_of(backbone_name, params, None)
                work = {
                    "gene": (gene, n_gene, gene_flops.naive + n_gene * gene_flops.fast),
                    "variant-centred": (centred, n_centred, n_centred * (centred_flops.naive + centred_flops.fast)),
                }
                for mode, (run, n, flop) in work.items():
                    values, seconds, memory = timed(device, run)
                    scores[(mode, dtype)] = np.asarray(values, dtype=np.float64)
                    tflops = flop / seconds / 1e12
                    diff = ""
                    if dtype == "bf16":
                        reference = scores[(mode, "float32")]
                        gap = np.abs(scores[(mode, dtype)] - reference).max() / max(np.abs(reference).max(), 1e-30)
                        diff = f"{gap:.2e}"
                    print(
                        f"| {label} | {mode} | {dtype} | {n / seconds:.2f} | {tflops:.3g} | {100 * tflops / peak:.3g}% "
                        f"| {memory:.1f} | {diff} |"
                    )
        print(f"({label}: built in {built:.1f} s)")
        del backbone
        if device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
