"""Re-train ``examples/models/variformer-demo``: a small Enformer-architecture Variformer
fine-tuned from random weights on the bundled simulated cohort (examples/data), on CPU.

The paper's recipe (49,152-bp windows, pre-trained Enformer, lr 5e-6) needs a GPU; this demo
uses a tiny model, 8,192-bp windows and a larger learning rate so that it trains in minutes.

    python examples/train_demo_model.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from varscore.cli import cli
from varscore_plugins.enformer import tiny_params

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
WINDOW = 8192


def main() -> None:
    params = tiny_params(window_size=WINDOW, seed=0, output_heads={"human": 8})
    args = [
        "finetune",
        "--vcf", str(DATA / "cohort.vcf.gz"),
        "--expression", str(DATA / "cohort.expression.bed.gz"),
        "--genes", str(DATA / "genes.tsv"),
        "--fasta", str(DATA / "ucsc.hg19.chr20.unittest.fasta.gz"),
        "-o", str(HERE / "models" / "variformer-demo"),
        "--window", str(WINDOW),
        "--lr", "1e-3", "--batch-size", "16", "--accumulate", "1",
        "--people-per-epoch", "256", "--max-epochs", "15", "--patience", "5", "--seed", "0",
        *[arg for key, value in params.items() if key != "window_size"
          for arg in ("--param", f"{key}={json.dumps(value)}")],
        *sys.argv[1:],
    ]
    cli.main(args, prog_name="varscore")


if __name__ == "__main__":
    main()
