"""Personal-window build time: 700 people × one 49,152-bp window with ~500 SNVs.

Measures, in one run, the vectorised build (`varscore.genome.personal.personal_one_hot`) beside a naive
per-person loop, for float32 / float16 / uint8 outputs, fresh arrays versus a reused buffer, and
the training-loop path (batches of 32 people of the same gene). Run:

    python benchmarks/bench_personal.py [--people 700] [--snvs 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from varscore.genome.personal import GenotypeSummary, PersonalWindows, WindowGenotypes, personal_one_hot
from varscore.genome.sequence import one_hot
from varscore.types import Window

REAL_VCF = Path(__file__).resolve().parents[1] / "tests/data/1000g/1000g_phase3_300samples_chr20_1-4Mb_phased.vcf.gz"


def simulated_genotypes(
    rng: np.random.Generator, window: Window, reference: str, people: int, snvs: int
) -> WindowGenotypes:
    """Phased genotypes with a neutral-like allele-frequency spectrum (many rare variants)."""
    offsets = np.sort(rng.choice(window.length, size=snvs, replace=False))
    refs = np.array([reference[o] for o in offsets])
    alts = np.array([rng.choice([b for b in "ACGT" if b != r]) for r in refs])
    freq = np.minimum(rng.beta(0.2, 1.5, size=snvs) + 1.0 / (2 * people), 0.99)
    haplotypes = (rng.random((people, 2, snvs)) < freq).astype(np.int8)
    return WindowGenotypes(
        window=window,
        samples=[f"P{i:04d}" for i in range(people)],
        positions=offsets + 1 + window.start,
        refs=refs,
        alts=alts,
        haplotypes=haplotypes,
        phased=np.ones(people, dtype=bool),
        summary=GenotypeSummary(snvs=snvs),
    )


def naive_per_person(reference: np.ndarray, genotypes: WindowGenotypes) -> np.ndarray:
    """The textbook loop: per person, per haplotype, per variant. ``(P, L, 4)`` float32."""
    out = np.empty((genotypes.n_people, *reference.shape), dtype=np.float32)
    eye = np.eye(4, dtype=np.float32)
    offsets, alt_codes = genotypes.offsets, genotypes.alt_codes
    for p in range(genotypes.n_people):
        haps = [reference.copy(), reference.copy()]
        for h in (0, 1):
            for v in range(genotypes.n_variants):
                if genotypes.haplotypes[p, h, v] == 1:
                    haps[h][offsets[v]] = eye[alt_codes[v]]
        out[p] = (haps[0] + haps[1]) / 2
    return out


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in ms over ``repeats`` calls."""
    return statistics.median(timings(fn, repeats))


def timings(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall time in ms of each of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def cold_build_ms(dtype: str, args: argparse.Namespace) -> float:
    """The first build in a new Python process (cold pages), in ms."""
    command = [
        sys.executable,
        __file__,
        "--cold",
        dtype,
        "--people",
        str(args.people),
        "--snvs",
        str(args.snvs),
        "--length",
        str(args.length),
    ]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=700)
    parser.add_argument("--snvs", type=int, default=500)
    parser.add_argument("--length", type=int, default=49_152)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cold", metavar="DTYPE", help="only time one build of DTYPE in this process and print ms")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    window = Window("chr20", 2_000_000, 2_000_000 + args.length)
    reference_text = "".join(rng.choice(list("ACGT"), size=args.length))
    reference = one_hot(reference_text)
    genotypes = simulated_genotypes(rng, window, reference_text, args.people, args.snvs)
    if args.cold:
        start = time.perf_counter()
        personal_one_hot(reference, genotypes, dtype=args.cold)
        print((time.perf_counter() - start) * 1000)
        return
    carriers = int((genotypes.haplotypes == 1).sum())
    gb = args.people * args.length * 4 * 4 / 1e9
    print(
        f"{args.people} people × {args.length:,} bp, {args.snvs} SNVs, {carriers:,} ALT haplotype calls; "
        f"float32 (P, L, 4) = {gb:.2f} GB"
    )

    expected = personal_one_hot(reference, genotypes)
    naive_ms = timed(lambda: naive_per_person(reference, genotypes), 1)
    np.testing.assert_array_equal(naive_per_person(reference, genotypes), expected)

    rows = []
    for dtype in (np.float32, np.float16, np.uint8):
        # A fresh process's first build pays the kernel's first-touch page faults on the new
        # memory; later builds reuse pages the allocator kept. Both are shown.
        cold = [cold_build_ms(np.dtype(dtype).name, args) for _ in range(3)]
        first = max(cold)
        fresh = timed(lambda d=dtype: personal_one_hot(reference, genotypes, dtype=d), args.repeats)
        buffer = np.empty((args.people, args.length, 4), dtype=dtype)
        buffer.fill(0)
        reused = timed(lambda d=dtype, b=buffer: personal_one_hot(reference, genotypes, dtype=d, out=b), args.repeats)
        rows.append((np.dtype(dtype).name, first, fresh, reused))
        del buffer

    windows = PersonalWindows(reference, genotypes)
    order = rng.permutation(args.people)
    batches = [order[i : i + args.batch] for i in range(0, args.people, args.batch)]
    batch_buffer = np.empty((args.batch, args.length, 4), dtype=np.float32)

    def all_batches(out: np.ndarray | None) -> None:
        for b in batches:
            windows.batch(b, out=out if out is not None and len(b) == args.batch else None)

    batches_fresh = timed(lambda: all_batches(None), args.repeats)
    batches_reused = timed(lambda: all_batches(batch_buffer), args.repeats)
    per_person = timed(lambda: [windows.person(i) for i in range(args.people)], args.repeats)

    print(f"\n{'build of all people':<42}{'ms':>10}{'vs naive':>10}")
    print(f"{'naive per-person × per-variant loop':<42}{naive_ms:>10.1f}{1.0:>9.1f}x")
    for name, first, fresh, reused in rows:
        print(f"{'vectorised ' + name + ', new process, worst of 3':<42}{first:>10.1f}{naive_ms / first:>9.1f}x")
        print(f"{'vectorised ' + name + ', fresh array':<42}{fresh:>10.1f}{naive_ms / fresh:>9.1f}x")
        print(f"{'vectorised ' + name + ', reused buffer':<42}{reused:>10.1f}{naive_ms / reused:>9.1f}x")
    print(
        f"{f'batches of {args.batch} float32, fresh arrays':<42}{batches_fresh:>10.1f}{naive_ms / batches_fresh:>9.1f}x"
    )
    print(
        f"{f'batches of {args.batch} float32, reused buffer':<42}{batches_reused:>10.1f}{naive_ms / batches_reused:>9.1f}x"
    )
    print(f"{'PersonalWindows.person(i), one by one':<42}{per_person:>10.1f}{naive_ms / per_person:>9.1f}x")
    print(
        "\n('new process' pays first-touch page faults on fresh memory, which vary with the machine's "
        "state;\n a reused buffer or batches avoid them.)"
    )
    print(
        f"one batch of {args.batch}: {batches_reused / len(batches):.2f} ms (reused buffer), "
        f"{batches_fresh / len(batches):.2f} ms (fresh)"
    )

    if REAL_VCF.exists():
        import shutil
        import tempfile

        import pysam

        from varscore.genome.personal import GenotypeReader

        with tempfile.TemporaryDirectory() as tmp:
            vcf = Path(tmp) / "real.vcf.gz"
            shutil.copy(REAL_VCF, vcf)
            pysam.tabix_index(str(vcf), preset="vcf", force=True)
            real_window = Window("20", 2_000_000, 2_000_000 + args.length)
            bases = np.array(list(reference_text))
            with pysam.VariantFile(str(vcf)) as records:
                for rec in records.fetch("20", real_window.start, real_window.end):
                    if len(rec.ref) == 1:  # a reference that agrees with every SNV's REF
                        bases[rec.pos - 1 - real_window.start] = rec.ref
            real_reference = "".join(bases)
            with GenotypeReader(vcf) as reader:
                ms = timed(lambda: reader.read(real_window, real_reference), args.repeats)
                real = reader.read(real_window, real_reference)
            print(
                f"\nreading genotypes (1000G, {real.n_people} people, {real.summary.records} records, "
                f"{real.n_variants} SNVs kept, indexed VCF): {ms:.1f} ms"
            )


if __name__ == "__main__":
    main()
