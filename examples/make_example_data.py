"""Regenerate the bundled example cohort in ``varscore/examples/data/`` (fixed seed: byte-identical files).

670 simulated people (the size of GTEx v8 whole blood) over the 5 protein-coding genes of a
1.1 Mb slice of real hg19 chr20 sequence. The FASTA and TSS table are copies of public data
(see ``varscore/examples/data/README.md``); pass ``--source DIR`` to copy them afresh from a folder
holding ``ucsc.hg19.chr20.unittest.fasta.gz`` (+ ``.fai``, ``.gzi``) and
``protein_coding_tss_hg19.tsv``.

    python examples/make_example_data.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGED = HERE.parent / "varscore" / "examples"  # shipped as package data
DATA = PACKAGED / "data"
FASTA = "ucsc.hg19.chr20.unittest.fasta.gz"
TSS_TABLE = "protein_coding_tss_hg19.tsv"
SOURCE_FILES = (FASTA, f"{FASTA}.fai", f"{FASTA}.gzi", TSS_TABLE)
REGION = "chr20:9,995,001-11,095,000"  # the part of the slice that holds real sequence
PEOPLE = 670
# Seed picked among 1-40 so that 4 of the 5 genes are heritable, leaving SLX4IP (which shares a
# bidirectional promoter with MKKS) at h2 = 0 as a built-in negative control.
SEED = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="copy the FASTA and TSS table from this folder first")
    parser.add_argument("--out", type=Path, default=DATA, help="output folder (default: varscore/examples/data)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
    from varscore.simulate import SimulationConfig, simulate_cohort

    args.out.mkdir(parents=True, exist_ok=True)
    if args.source is not None:
        for name in SOURCE_FILES:
            shutil.copyfile(args.source / name, args.out / name)
    missing = [name for name in SOURCE_FILES if not (args.out / name).exists()]
    if missing:
        parser.error(f"{args.out} lacks {', '.join(missing)}; pass --source DIR to copy them in.")

    config = SimulationConfig(
        people=PEOPLE,
        fasta=args.out / FASTA,
        region=REGION,
        gene_table=args.out / TSS_TABLE,
        seed=SEED,
    )
    result = simulate_cohort(config, args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(
        f"{result.people} people, {result.variants:,} variants, {result.genes} genes, "
        f"{result.causal_variants} causal variants; {args.out} holds {size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
