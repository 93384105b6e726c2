"""Cost of the line check that runs before htslib reads a VCF (varscore.io.vcf_prepare), side by side
with one htslib pass over the same file (cyvcf2 through ``iter_variants``). ``annotate`` reads the
input with htslib at least twice (plan and write), so the check adds less than the printed ratio
divided by two. Run:

    python benchmarks/bench_input_check.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from varscore.examples import data_dir
from varscore.io import vcf_prepare as vcfinput
from varscore.io.vcf import iter_variants

FILES = [
    Path(__file__).resolve().parents[1] / "tests/data/1000g/1000g_phase3_300samples_chr20_1-4Mb_phased.vcf.gz",
    data_dir() / "cohort.vcf.gz",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for path in FILES:
        check, read = [], []
        for _ in range(args.repeat):
            vcfinput._CHECKED.clear()
            start = time.perf_counter()
            with vcfinput.prepared_vcf(path):
                pass
            check.append(time.perf_counter() - start)
            start = time.perf_counter()  # the file is now known to be safe: htslib alone
            records = sum(1 for _ in iter_variants(path))
            read.append(time.perf_counter() - start)
        print(
            f"{path.name}: {records} records; line check {min(check):.2f} s, one htslib pass {min(read):.2f} s, "
            f"ratio {min(check) / min(read):.2f}"
        )


if __name__ == "__main__":
    main()
