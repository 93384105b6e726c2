"""varscore against its peers on one model and one set of SNVs: CPU time per variant and the
largest |difference| of the values, in gene mode and in variant-centred mode.

One random Enformer (enformer-pytorch's ``Enformer``, ``head="pretrained"``) is built once; every
method scores the same SNVs with that same module:

- **gene mode** (the variants inside one TSS-centred window, read at its centre bin, track 0):
  varscore as a library (``backbone.ism``: the exact fast ISM from one cached reference pass),
  the varscore CLI (``varscore annotate`` with a gene bundle of the model), a plain
  enformer-pytorch loop (the reference window once, then each alternate window forward, in
  batches) and, when installed, tangermeme's ``substitution_effect`` (reference and alternate of
  each row).
- **variant-centred mode** (each SNV in its own window, its base at index ``L // 2`` of the 0-based
  window, statistic SUM of every track over every bin): varscore as a library
  (``VariantCentredScorer``, ``exact`` centring, and the same with ``ism_method="naive"``), the
  varscore CLI (``annotate --mode variant``), the plain loop (reference and alternate of each
  variant, one batch of two) and tangermeme.

Methods alternate within each repeat; the table gives each one's least CPU time (this process,
all threads, ``time.process_time``; a CLI run's from ``resource.getrusage(RUSAGE_CHILDREN)``, user
+ system, with its system share) per variant, the ratio to the plain loop and the FLOP-model
bound for varscore's fast path over it (:mod:`varscore_plugins.flops`). ``max |d|`` compares each
method's values with the plain loop's (the CLI's are read from the VCF, printed to 6 significant
digits), next to the largest |value|. Every weight is moved off its initial value by noise at twice its own
spread (0.02 where it starts constant: enformer-pytorch starts the attention output projections at
zero, which would hide attention), and the batch-norm statistics too, so that variants have effects
well above float32 round-off.

``--tiny`` is the size CI runs (seconds; no timing is asserted). The default is the mid size: dim
384, depth 2, 32,768 bp, 32 SNVs, 1 thread. tangermeme and enformer-pytorch install with the
``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 48, "depth": 2, "window": 2048, "variants": 4, "heads": 4, "key": 8, "divisible": 8, "tracks": 8},
    "mid": {
        "dim": 384,
        "depth": 2,
        "window": 32_768,
        "variants": 32,
        "heads": 8,
        "key": 64,
        "divisible": 128,
        "tracks": 64,
    },
}
BASES = "ACGT"


def enformer_params(size: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_size": size["window"],
        "head": "pretrained",
        "dim": size["dim"],
        "depth": size["depth"],
        "heads": size["heads"],
        "attn_dim_key": size["key"],
        "dim_divisible_by": size["divisible"],
        "output_heads": {"human": size["tracks"]},
        "seed": 0,
    }


# --- the shared data ---------------------------------------------------------------------------


class World:
    """A random contig (4 windows long), one gene with its TSS at the contig's middle, SNVs inside
    its window (gene mode) and SNVs spread over the contig's middle two windows (variant mode)."""

    def __init__(self, directory: Path, length: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.length = length
        self.seq = "".join(rng.choice(list(BASES), size=4 * length))
        self.tss = 2 * length  # 1-based
        self.fasta = directory / "ref.fa"
        self.fasta.write_text(">chr1\n" + "\n".join(self.seq[i : i + 80] for i in range(0, len(self.seq), 80)) + "\n")
        half = length // 2
        gene = np.sort(rng.choice(np.arange(self.tss - half + 64, self.tss + half - 64), size=n, replace=False))
        spread = np.sort(rng.choice(np.arange(length + half, 3 * length - half), size=n, replace=False))
        self.gene_snvs = [(int(p), self.alt(int(p), rng)) for p in gene]
        self.centred_snvs = [(int(p), self.alt(int(p), rng)) for p in spread]
        self.gene_vcf = self.write_vcf(directory / "gene.vcf", self.gene_snvs)
        self.centred_vcf = self.write_vcf(directory / "centred.vcf", self.centred_snvs)

    def alt(self, pos: int, rng: np.random.Generator) -> str:
        return str(rng.choice([b for b in BASES if b != self.seq[pos - 1]]))

    def write_vcf(self, path: Path, snvs: list[tuple[int, str]]) -> Path:
        lines = ["##fileformat=VCFv4.2", f"##contig=<ID=chr1,length={len(self.seq)}>"]
        lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
        lines += [f"chr1\t{p}\tv{p}\t{self.seq[p - 1]}\t{a}\t.\tPASS\t." for p, a in snvs]
        path.write_text("\n".join(lines) + "\n")
        return path

    def window(self, pos: int) -> tuple[np.ndarray, int]:
        """The one-hot window with base ``pos`` (1-based) at index ``L // 2``, and its 0-based start."""
        start = pos - 1 - self.length // 2
        text = self.seq[start : start + self.length]
        return np.eye(4, dtype=np.float32)[[BASES.index(b) for b in text]], start


# --- the methods -------------------------------------------------------------------------------


def plain_gene(model: Any, world: World, batch: int) -> np.ndarray:
    """enformer-pytorch alone: the gene window once, each alternate window forward (in batches);
    the centre bin of track 0."""
    import torch

    reference, start = world.window(world.tss)
    centre = world.length // 128 // 2
    with torch.inference_mode():
        ref = model(torch.from_numpy(reference)[None], head="human")[0, centre, 0]
        out = []
        for begin in range(0, len(world.gene_snvs), batch):
            chunk = world.gene_snvs[begin : begin + batch]
            x = torch.from_numpy(reference).repeat(len(chunk), 1, 1)
            for row, (pos, alt) in enumerate(chunk):
                x[row, pos - 1 - start] = 0
                x[row, pos - 1 - start, BASES.index(alt)] = 1
            out.append((model(x, head="human")[:, centre, 0] - ref).numpy())
    return np.concatenate(out)


def plain_centred(model: Any, world: World) -> np.ndarray:
    """enformer-pytorch alone: each variant's reference and alternate windows as one batch of
    two; the SUM of every track over every bin, alternate minus reference: ``(n, tracks)``."""
    import torch

    out = []
    with torch.inference_mode():
        for pos, alt in world.centred_snvs:
            reference, _ = world.window(pos)
            x = torch.from_numpy(reference).repeat(2, 1, 1)
            x[1, world.length // 2] = 0
            x[1, world.length // 2, BASES.index(alt)] = 1
            sums = model(x, head="human").double().sum(dim=1)
            out.append((sums[1] - sums[0]).numpy())
    return np.stack(out)


def varscore_gene(backbone: Any, world: World, batch: int) -> np.ndarray:
    from varscore.plugin.manager import get_output_mode

    reference, start = world.window(world.tss)
    reduce = get_output_mode("scalar")(track=0).reduce
    result = backbone.ism(reference, [(p - 1 - start, a) for p, a in world.gene_snvs], reduce, batch_size=batch)
    return np.asarray(result.alternates)[:, 0] - np.asarray(result.reference)[0]


def varscore_centred(backbone: Any, world: World, batch: int, method: str) -> np.ndarray:
    from varscore.genome.fasta import Genome
    from varscore.io.vcf import iter_variants
    from varscore.scoring.centred import ScorerSettings, VariantCentredScorer

    backbone.ism_method = method
    try:
        scorer = VariantCentredScorer(backbone, Genome(world.fasta), ScorerSettings(stats=("SUM",), batch_size=batch))
        records = list(scorer.score(iter_variants(world.centred_vcf)))
    finally:
        backbone.ism_method = None
    return np.stack([record.alleles[0].window[:, 0, 2] for record in records])


def tangermeme_gene(model: Any, world: World, batch: int) -> np.ndarray:
    import torch
    from tangermeme.variant_effect import substitution_effect

    reference, start = world.window(world.tss)
    wrapped = _ChannelsFirst(model, centre=world.length // 128 // 2)
    x = torch.from_numpy(reference.T.copy()).repeat(len(world.gene_snvs), 1, 1)
    subs = torch.tensor([[i, p - 1 - start, BASES.index(a)] for i, (p, a) in enumerate(world.gene_snvs)])
    before, after = substitution_effect(wrapped, x, subs, batch_size=batch, verbose=False)
    return (after - before).numpy()[:, 0]


def tangermeme_centred(model: Any, world: World, batch: int) -> np.ndarray:
    import torch
    from tangermeme.variant_effect import substitution_effect

    x = torch.from_numpy(np.stack([world.window(p)[0].T for p, _ in world.centred_snvs]))
    subs = torch.tensor([[i, world.length // 2, BASES.index(a)] for i, (_, a) in enumerate(world.centred_snvs)])
    before, after = substitution_effect(_ChannelsFirst(model, None), x, subs, batch_size=batch, verbose=False)
    return (after.double() - before.double()).numpy()


class _ChannelsFirst:
    """The Enformer for tangermeme's ``(N, 4, L)`` inputs: the centre bin of track 0 (``centre``),
    or every track's SUM over the bins (None)."""

    def __new__(cls, model: Any, centre: int | None) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = self.model(x.transpose(1, 2).float(), head="human")
                return y[:, centre, :1] if centre is not None else y.sum(dim=1)

        return Wrapped().eval()


def cli(arguments: list[str], threads: int) -> tuple[float, float]:
    """Run ``varscore ARGUMENTS``: (CPU seconds, system seconds) of the child."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "varscore", *arguments], env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"varscore {' '.join(arguments)} failed: {done.stderr.strip().splitlines()[-1:]}")
    system = after.ru_stime - before.ru_stime
    return after.ru_utime - before.ru_utime + system, system


def vcf_info(path: Path, key: str) -> list[str]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = [line.split("\t")[7] for line in handle if not line.startswith("#")]
    pattern = re.compile(rf"(?:^|;){key}=([^;]+)")
    return [m.group(1) if (m := pattern.search(info)) else "" for info in rows]


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="The size CI runs (seconds).")
    parser.add_argument("--repeats", type=int, default=None, help="Alternating repeats (default 2; --tiny 1).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-cli", action="store_true", help="Leave out the CLI rows.")
    args = parser.parse_args()
    size = SIZES["tiny" if args.tiny else "mid"]
    repeats = args.repeats or (1 if args.tiny else 2)

    import torch

    torch.set_num_threads(args.threads)
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore.plugin.manager import get_backbone, get_output_mode
    from varscore.types import Gene
    from varscore_plugins.flops import enformer_ism_flops

    try:
        import tangermeme.variant_effect  # noqa: F401

        have_tangermeme = True
    except ImportError:
        have_tangermeme = False

    params = enformer_params(size)
    backbone = get_backbone("enformer")(**params).build()
    model = backbone.model_.eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight and batch-norm statistic off its initial value, at its own scale
        for parameter in model.parameters():
            scale = float(parameter.std()) if parameter.numel() > 1 and parameter.any() else 0.02
            parameter.add_(2 * scale * torch.randn(parameter.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.3 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    n, batch = size["variants"], args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        world = World(work, size["window"], n)
        about = BundleMetadata(reference_fasta=world.fasta)
        gene_bundle = save_bundle(
            work / "gene-model",
            name="peer-gene",
            backbone=backbone,
            output_mode=get_output_mode("scalar")(track=0),
            genes=[Gene("GENE1", "chr1", world.tss, "+", "GENE1")],
            about=about,
        )
        track_bundle = save_bundle(
            work / "track-model",
            name="peer-track",
            backbone=backbone,
            output_mode=get_output_mode("track")(track=0),
            genes=[],
            about=about,
        )
        gene_out, centred_out = work / "gene-out.vcf", work / "centred-out.vcf"

        def cli_gene() -> tuple[np.ndarray, float, float]:
            cpu, system = cli(
                ["annotate", str(world.gene_vcf), "-m", str(gene_bundle), "-o", str(gene_out)], args.threads
            )
            deltas = [float(entry.split(",")[0].split("|")[5]) for entry in vcf_info(gene_out, "VARSCORE")]
            return np.asarray(deltas), cpu, system

        def cli_centred() -> tuple[np.ndarray, float, float]:
            arguments = ["annotate", str(world.centred_vcf), "-m", str(track_bundle), "-o", str(centred_out)]
            cpu, system = cli([*arguments, "--mode", "variant", "--stats", "SUM"], args.threads)
            return np.asarray([float(v) for v in vcf_info(centred_out, "VARSCORE_MAX")]), cpu, system

        methods: dict[str, list[tuple[str, Callable[[], Any]]]] = {
            "gene": [
                ("enformer-pytorch loop", lambda: plain_gene(model, world, batch)),
                ("varscore library (backbone.ism)", lambda: varscore_gene(backbone, world, batch)),
            ],
            "variant-centred": [
                ("enformer-pytorch loop", lambda: plain_centred(model, world)),
                ("varscore library, exact fast ISM", lambda: varscore_centred(backbone, world, batch, "fast")),
                ("varscore library, full forwards", lambda: varscore_centred(backbone, world, batch, "naive")),
            ],
        }
        if not args.no_cli:
            methods["gene"].append(("varscore CLI", cli_gene))
            methods["variant-centred"].append(("varscore CLI (--mode variant)", cli_centred))
        if have_tangermeme:
            methods["gene"].append(("tangermeme substitution_effect", lambda: tangermeme_gene(model, world, batch)))
            methods["variant-centred"].append(
                ("tangermeme substitution_effect", lambda: tangermeme_centred(model, world, batch))
            )

        best: dict[tuple[str, str], tuple[float, float]] = {}
        values: dict[tuple[str, str], np.ndarray] = {}
        for _ in range(repeats):
            for mode, entries in methods.items():
                for label, run in entries:
                    start = time.process_time()
                    result = run()
                    cpu, system = time.process_time() - start, float("nan")
                    if isinstance(result, tuple):
                        result, cpu, system = result
                    key = (mode, label)
                    if key not in best or cpu < best[key][0]:
                        best[key] = (cpu, system)
                    values[key] = np.asarray(result, dtype=np.float64)

    flops_gene = enformer_ism_flops(params, rows=1)
    flops_centred = enformer_ism_flops(params, rows=None)
    bounds = {
        "gene": (1 + n) * flops_gene.naive / (flops_gene.naive + n * flops_gene.fast),
        "variant-centred": flops_centred.centred_bound(1),
    }
    print(
        f"Enformer dim {size['dim']}, depth {size['depth']}, {size['window']:,} bp, {size['tracks']} tracks, "
        f"{n} SNVs, {args.threads} thread(s), batch {batch}, best of {repeats} alternating repeat(s); "
        f"torch {torch.__version__}; tangermeme {'installed' if have_tangermeme else 'not installed'}"
    )
    print(
        "| mode | method | CPU s / variant | variants / CPU s | x loop | FLOP bound | % of bound | system share "
        "| max abs d (largest abs value) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, entries in methods.items():
        loop_cpu = best[(mode, entries[0][0])][0]
        reference = values[(mode, entries[0][0])]
        for label, _ in entries:
            cpu, system = best[(mode, label)]
            got = values[(mode, label)]
            if "CLI" in label and mode == "variant-centred":
                reference_cmp = np.abs(reference).max(axis=1)  # VARSCORE_MAX: the largest |SUM| over tracks
                got = np.abs(got)
            else:
                reference_cmp = reference
            diff = float(np.abs(got.reshape(reference_cmp.shape) - reference_cmp).max())
            ratio = loop_cpu / cpu
            fast = "fast" in label or "backbone.ism" in label or label.startswith("varscore CLI")
            bound = f"{bounds[mode]:.2f}x" if fast else ""
            share = f"{100 * ratio / bounds[mode]:.0f}%" if fast else ""
            sys_share = f"{100 * system / cpu:.0f}%" if system == system else ""
            print(
                f"| {mode} | {label} | {cpu / n:.3f} | {n / cpu:.2f} | {ratio:.2f}x | {bound} | {share} | "
                f"{sys_share} | {diff:.2e} ({np.abs(reference_cmp).max():.2e}) |"
            )
    print(
        f"FLOP model (varscore_plugins.flops): a full forward {flops_gene.naive / 1e9:.2f} GFLOP; a fast alternate "
        f"{flops_gene.fast / 1e9:.3f} GFLOP read at the centre bin, {flops_centred.fast / 1e9:.3f} GFLOP when every "
        "bin is read (SUM); bounds over the loop: gene (1 + n) full / (1 full + n fast), "
        "variant-centred 2 full / (1 full + 1 fast) per variant."
    )


if __name__ == "__main__":
    main()
