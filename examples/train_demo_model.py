"""Re-train ``varscore/examples/models/variformer-demo``: a small Enformer-architecture Variformer
fine-tuned from random weights on the bundled simulated cohort (varscore/examples/data), on CPU.

The paper's recipe (49,152-bp windows, pre-trained Enformer, lr 5e-6) needs a GPU; this demo
uses a tiny model, 16,384-bp windows (every common causal variant of the simulated genes lies within
6.4 kb of its TSS), a larger learning rate (3e-4), and batch norms that normalise each window by its
own statistics (``norm_stats="window"``): every training batch holds one gene's people, so Enformer's
batch norms learn per-gene statistics that its running statistics, mixed over genes, do not
reproduce when predicting; a model trained from random weights then predicts nearly constant values.

    python examples/train_demo_model.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from varscore.cli import cli
from varscore_plugins.enformer import tiny_params

HERE = Path(__file__).resolve().parent
PACKAGED = HERE.parent / "varscore" / "examples"  # shipped as package data
DATA = PACKAGED / "data"
WINDOW = 16384


def main() -> None:
    params = tiny_params(window_size=WINDOW, seed=0, output_heads={"human": 8}, norm_stats="window")
    args = [
        "finetune",
        str(DATA / "cohort.vcf.gz"),
        "--expression",
        str(DATA / "cohort.expression.bed.gz"),
        "--genes",
        str(DATA / "genes.tsv"),
        "--fasta",
        str(DATA / "ucsc.hg19.chr20.unittest.fasta.gz"),
        "-o",
        str(PACKAGED / "models" / "variformer-demo"),
        "--window",
        str(WINDOW),
        "--lr",
        "3e-4",
        "--batch-size",
        "16",
        "--accumulate",
        "1",
        "--people-per-epoch",
        "256",
        "--max-epochs",
        "60",
        "--patience",
        "20",
        "--seed",
        "0",
        *[
            arg
            for key, value in params.items()
            if key != "window_size"
            for arg in ("--param", f"{key}={json.dumps(value)}")
        ],
        *sys.argv[1:],
    ]
    cli.main(args, prog_name="varscore")


if __name__ == "__main__":
    main()
