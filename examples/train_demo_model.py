"""Re-train ``examples/models/variformer-demo``: a small Enformer-architecture Variformer
fine-tuned from random weights on the bundled simulated cohort (examples/data), on CPU.

The paper's recipe (49,152-bp windows, pre-trained Enformer, lr 5e-6) needs a GPU; this demo
uses a tiny model, 4,096-bp windows (the main causal variants of SNAP25 and MKKS lie within 600 bp
of the TSS), a larger learning rate (3e-4) and batch norms kept fixed after re-estimating their
statistics over all genes (``--freeze-batchnorm``: every batch holds one gene's people, so train-mode
batch statistics are per-gene) so that it trains in minutes.

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
WINDOW = 4096


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
        "--lr", "3e-4", "--batch-size", "16", "--accumulate", "1", "--freeze-batchnorm",
        "--people-per-epoch", "256", "--max-epochs", "20", "--patience", "8", "--seed", "0",
        *[arg for key, value in params.items() if key != "window_size"
          for arg in ("--param", f"{key}={json.dumps(value)}")],
        *sys.argv[1:],
    ]
    cli.main(args, prog_name="varscore")


if __name__ == "__main__":
    main()
