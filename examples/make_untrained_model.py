"""Build ``examples/models/untrained-demo``: a tiny Enformer-architecture model with RANDOM
weights over the bundled example's 5 genes.

It is NOT trained: its scores mean nothing biologically. It exists so that ``varscore annotate``
can be run end to end on the bundled example; ``varscore finetune`` produces trained models.

    python examples/make_untrained_model.py
"""

from __future__ import annotations

from pathlib import Path

from varscore.bundle import save_bundle
from varscore.genome import load_genes
from varscore_plugins.enformer import EnformerBackbone, tiny_params
from varscore_plugins.outputs import ScalarOutput

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def main() -> None:
    import torch

    backbone = EnformerBackbone(**tiny_params(window_size=49_152, seed=0)).build()
    # enformer-pytorch starts some projections at exactly zero, which would make every distal
    # variant score 0; give them small random values so the demo shows non-trivial deltas
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in backbone.model_.parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.normal_(0.0, 0.05, generator=generator)
    out = save_bundle(
        HERE / "models" / "untrained-demo",
        name="untrained-demo",
        backbone=backbone,
        output_mode=ScalarOutput(track=0, center_bins=1),
        genes=load_genes(DATA / "genes.tsv"),
        reference_fasta=DATA / "ucsc.hg19.chr20.unittest.fasta.gz",
        genome_build="hg19",
        extra={"note": "UNTRAINED: random weights, for demonstrating the pipeline only"},
    )
    print(f"wrote {out} (random weights: a pipeline demo, not a trained model)")


if __name__ == "__main__":
    main()
