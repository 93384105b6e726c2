"""The analyses of one model with and without reusing its ISM, side by side in one run on the
bundled example: ``ism``, ``hsv``, ``drivers`` and ``report`` each computing the ISM themselves,
against ``ism`` once and its table given to ``hsv``, ``drivers`` and ``report`` (``--ism``). The
outputs of both ways are compared (they must be identical) and the times printed with their ratio.

    python benchmarks/bench_report_reuse.py                      # SNAP25 and MKKS (a few minutes)
    python benchmarks/bench_report_reuse.py --gene SNAP25        # smaller
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, work: Callable[[], Any], times: dict[str, float]) -> Any:
    start = time.perf_counter()
    result = work()
    times[label] = time.perf_counter() - start
    print(f"  {label:<8} {times[label]:8.1f} s", flush=True)
    return result


def analyses(folder: Path, genes: tuple[str, ...], reuse: bool, batch_size: int) -> dict[str, float]:
    """Run ism, hsv, drivers and report into ``folder``; with ``reuse`` the last three read the ISM table."""
    from varscore.analysis.drivers import DriversJob, run_drivers
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism
    from varscore.analysis.report import ReportConfig, build_report
    from varscore.examples import examples_dir

    data = examples_dir() / "data"
    inputs = AnalysisInputs("variformer-demo", data / "cohort.vcf.gz", gene_names=genes)
    table = folder / "ism.tsv"
    given = table if reuse else None
    times: dict[str, float] = {}
    timed("ism", lambda: run_ism(IsmJob(inputs, table, batch_size=batch_size)), times)
    timed("hsv", lambda: run_hsv(HsvJob(inputs, folder / "hsv.tsv", k=5, batch_size=batch_size, ism=given)), times)
    timed(
        "drivers",
        lambda: run_drivers(DriversJob(inputs, folder / "drivers.tsv", batch_size=batch_size, ism=given)),
        times,
    )
    config = ReportConfig(
        model="variformer-demo",
        vcf=data / "cohort.vcf.gz",
        expression=data / "cohort.expression.bed.gz",
        genes=data / "genes.tsv",
        fasta=None,
        out_dir=folder / "report",
        gene_names=list(genes),
        k=5,
        batch_size=batch_size,
        ism=[table] if reuse else [],
    )
    timed("report", lambda: build_report(config), times)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gene", action="append", help="Genes to analyse (repeat; default SNAP25 and MKKS).")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    genes = tuple(args.gene or ("SNAP25", "MKKS"))
    from varscore.analysis.ism import ModelScorer
    from varscore.models.bundle import load_bundle

    ModelScorer.from_bundle(load_bundle("variformer-demo"))  # warm-up: imports and the first model build
    with tempfile.TemporaryDirectory() as tmp:
        folders = {way: Path(tmp) / way for way in ("each", "reused")}
        results = {}
        for way, folder in folders.items():
            folder.mkdir()
            print(f"{way}: ISM computed {'once' if way == 'reused' else 'by every analysis'}", flush=True)
            results[way] = analyses(folder, genes, way == "reused", args.batch_size)
        for name in ("hsv.tsv", "drivers.tsv", "report/ism.tsv", "report/hsvs.tsv"):
            same = (folders["each"] / name).read_bytes() == (folders["reused"] / name).read_bytes()
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")
    each, reused = sum(results["each"].values()), sum(results["reused"].values())
    print(f"genes {', '.join(genes)}: each analysis computing its ISM {each:.1f} s, ISM reused {reused:.1f} s")
    print(f"ratio {each / reused:.2f}x (saved {each - reused:.1f} s)")


if __name__ == "__main__":
    main()
