"""examples/scale-out/Snakefile run by the real Snakemake: shards annotated and merged equal one
unsharded ``varscore annotate`` record for record."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from varscore.examples import data_dir

SNAKEFILE = Path(__file__).resolve().parents[2] / "examples" / "scale-out" / "Snakefile"
# SNAP25's window, records outside every window, the overlapping windows of MKKS and SLX4IP
REGIONS = "chr20:10195000-10200000,chr20:10300000-10302000,chr20:10405000-10425000"


def _body(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return [line for line in handle if not line.startswith("#")]


@pytest.mark.slow
def test_snakemake_shards_and_merges_the_example(tmp_path: Path) -> None:
    pytest.importorskip("snakemake")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    options = f"--device cpu --regions {REGIONS}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(tmp_path),
            "-c",
            "2",
            "--quiet",
            "--config",
            "shards=3",
            f"annotate_options={options}",
            "output=merged.vcf.gz",
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    whole = tmp_path / "whole.vcf.gz"
    subprocess.run(
        [
            "varscore",
            "annotate",
            str(data_dir() / "cohort.vcf.gz"),
            "-m",
            "variformer-demo",
            *options.split(),
            "-o",
            str(whole),
            "-q",
        ],
        check=True,
        env=dict(env, OMP_NUM_THREADS="1"),  # as many threads as each Snakemake job (threads: 1)
    )
    merged = _body(tmp_path / "merged.vcf.gz")
    assert merged == _body(whole)
    assert sum("VARSCORE=" in line for line in merged) > 10
    assert all(_body(tmp_path / "shards" / f"shard{i}-of-3.vcf.gz") for i in (1, 2, 3))
