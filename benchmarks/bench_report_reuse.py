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
    print(f"  {label:<18} {times[label]:8.1f} s", flush=True)
    return result


def analyses(folders: dict[str, Path], genes: tuple[str, ...], batch_size: int) -> dict[str, dict[str, float]]:
    """``ism`` once, then each of ``hsv``, ``drivers`` and ``report`` both ways in turn (computing the
    ISM, into ``folders["each"]``; reading ``ism``'s table, into ``folders["reused"]``), so a machine
    whose load drifts weighs on both alike. Both ways count the one ``ism`` run."""
    from varscore.analysis.drivers import DriversJob, run_drivers
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism
    from varscore.analysis.report import ReportConfig, build_report
    from varscore.examples import examples_dir

    data = examples_dir() / "data"
    inputs = AnalysisInputs("variformer-demo", data / "cohort.vcf.gz", gene_names=genes)
    table = folders["reused"] / "ism.tsv"
    times: dict[str, dict[str, float]] = {"each": {}, "reused": {}}
    print("ism (written once)", flush=True)
    timed("ism", lambda: run_ism(IsmJob(inputs, table, batch_size=batch_size)), times["reused"])
    times["each"]["ism"] = times["reused"]["ism"]

    def steps(way: str) -> dict[str, Callable[[], Any]]:
        folder, given = folders[way], (table if way == "reused" else None)
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
            ism=[given] if given else [],
        )
        return {
            "hsv": lambda: run_hsv(HsvJob(inputs, folder / "hsv.tsv", k=5, batch_size=batch_size, ism=given)),
            "drivers": lambda: run_drivers(
                DriversJob(inputs, folder / "drivers.tsv", batch_size=batch_size, ism=given)
            ),
            "report": lambda: build_report(config),
        }

    work = {way: steps(way) for way in folders}
    for name in ("hsv", "drivers", "report"):
        for way in folders:
            timed(f"{name} ({way})", work[way][name], times[way])
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
        for folder in folders.values():
            folder.mkdir()
        results = analyses(folders, genes, args.batch_size)
        for name in ("hsv.tsv", "drivers.tsv", "report/ism.tsv", "report/hsvs.tsv"):
            same = (folders["each"] / name).read_bytes() == (folders["reused"] / name).read_bytes()
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")
    each, reused = sum(results["each"].values()), sum(results["reused"].values())
    print(f"genes {', '.join(genes)}: each analysis computing its ISM {each:.1f} s, ISM reused {reused:.1f} s")
    print(f"ratio {each / reused:.2f}x (saved {each - reused:.1f} s)")


if __name__ == "__main__":
    main()
