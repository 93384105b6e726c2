"""Write ``varscore/examples/data/genes.exons.gtf``: the example's 5 genes with the exon structure
its simulation draws (synthetic, not real annotation), so gene-level scores over exons
(``annotate --mode variant --gtf``) and other GTF readers have exons to use on the example.

No public annotation of these hg19 genes is bundled, so the exons are those of the simulator's
coverage model (``varscore.simulate.coverage._gene_profile``: a first exon on the TSS, 2-7 more
downstream on the gene's strand), drawn from the same seed stream as
``varscore simulate ... --seed 7 --coverage`` draws them for the example (the command in
``params.json``). Overlapping drawn exons are merged. TSSs, strands and ids are the gene
table's (``genes.tsv``).

    python examples/make_example_gtf.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from varscore.examples import data_dir
from varscore.genome.fasta import load_genes
from varscore.simulate.coverage import COVERAGE_LEVELS, _gene_profile
from varscore.types import tss_window

COVERAGE_STREAM = 4  # run.py spawns 4 seed streams first; coverage draws from the 5th
WINDOW = 49_152  # the example's simulation window (params.json)


def exon_models(data: Path) -> list[tuple[object, int, list[tuple[int, int]]]]:
    """Per gene of ``genes.tsv``: the gene, the 0-based start of its drawn body and its exons
    (0-based half-open), as the example's ``simulate --coverage`` draws them."""
    params = json.loads((data / "params.json").read_text())
    seed, people = int(params["config"]["seed"]), int(params["config"]["people"])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COVERAGE_STREAM,)))
    rng.normal(0.0, 0.2, size=people)  # the library sizes, drawn first
    models = []
    for gene in load_genes(data / "genes.tsv"):
        start, profile = _gene_profile(gene, tss_window(gene, WINDOW), rng)
        exon = np.concatenate([[0], (profile == COVERAGE_LEVELS["exon"]).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(exon))
        spans = [(start + int(a), start + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        models.append((gene, start, spans))
    return models


def gtf_text(data: Path) -> str:
    lines = []
    for gene, start, exons in exon_models(data):
        body_end = max(end for _, end in exons)
        lo, hi = min(start, exons[0][0]), max(body_end, start)
        attributes = f'gene_id "{gene.gene_id}"; gene_name "{gene.name}";'
        transcript = f'{attributes} transcript_id "{gene.gene_id}.sim1";'
        common = (gene.chrom, "varscore_sim")
        lines.append("\t".join((*common, "gene", str(lo + 1), str(hi), ".", gene.strand, ".", attributes)))
        lines.append("\t".join((*common, "transcript", str(lo + 1), str(hi), ".", gene.strand, ".", transcript)))
        ordered = exons if gene.strand == "+" else exons[::-1]
        for number, (a, b) in enumerate(ordered, start=1):
            tags = f'{transcript} exon_number "{number}";'
            lines.append("\t".join((*common, "exon", str(a + 1), str(b), ".", gene.strand, ".", tags)))
    return "\n".join(lines) + "\n"


def main() -> None:
    data = data_dir()
    (data / "genes.exons.gtf").write_text(gtf_text(data))
    print(f"wrote {data / 'genes.exons.gtf'}")


if __name__ == "__main__":
    main()
