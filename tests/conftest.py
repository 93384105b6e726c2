from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from varscore.types import Gene

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = Path(__file__).resolve().parent / "data"
BCFTOOLS = shutil.which("bcftools")
needs_bcftools = pytest.mark.skipif(BCFTOOLS is None, reason="bcftools is not installed (apt-get install bcftools)")


@pytest.fixture
def toy_plugin():
    """The toy backbone registered the way a third-party plugin is (no core change)."""
    from tests import toy_plugin as module
    from varscore.plugins import manager

    manager.register(module, name="toy-plugin")
    yield module
    manager.unregister("toy-plugin")


def write_fasta(path: Path, contigs: dict[str, str]) -> Path:
    with open(path, "w") as handle:
        for name, seq in contigs.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i : i + 60] + "\n")
    return path


def random_sequence(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


def write_vcf(path: Path, records: list[tuple[str, int, str, str]], samples: list[str] | None = None,
              contigs: dict[str, int] | None = None, genotypes: list[list[str]] | None = None) -> Path:
    """A small VCF; ``records`` are (chrom, pos, ref, alt). Written as .vcf or bgzipped .vcf.gz."""
    lines = ["##fileformat=VCFv4.2"]
    for name, length in (contigs or {}).items():
        lines.append(f"##contig=<ID={name},length={length}>")
    lines.append('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">')
    if samples:
        lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    if samples:
        header += "\tFORMAT\t" + "\t".join(samples)
    lines.append(header)
    for i, (chrom, pos, ref, alt) in enumerate(records):
        line = f"{chrom}\t{pos}\trs{i}\t{ref}\t{alt}\t50\tPASS\tDP={10 + i}"
        if samples:
            gts = genotypes[i] if genotypes else ["0/1"] * len(samples)
            line += "\tGT\t" + "\t".join(gts)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        import pysam

        plain = path.with_suffix("")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_text(text)
    return path


@pytest.fixture
def toy_world(tmp_path: Path, toy_plugin):
    """A FASTA with two contigs, two genes, a toy bundle and a mixed VCF."""
    from tests.toy_plugin import ToyBackbone
    from varscore.bundle import save_bundle
    from varscore_plugins.outputs import ScalarOutput

    rng = np.random.default_rng(1)
    seqs = {"chr1": random_sequence(rng, 1000), "chr2": random_sequence(rng, 500)}
    fasta = write_fasta(tmp_path / "ref.fa", seqs)
    genes = [
        Gene("G1", "chr1", 200, "+", "GENEA"),
        Gene("G2", "chr1", 230, "-", "GENEB"),  # overlaps G1's window
        Gene("G3", "chr2", 20, "+", "GENEC"),  # window runs off the contig start
    ]
    backbone = ToyBackbone().build()
    bundle = save_bundle(tmp_path / "models" / "toy-model", name="toy-model", backbone=backbone,
                         output_mode=ScalarOutput(track=1, center_bins=1), genes=genes, reference_fasta=fasta)
    return {"fasta": fasta, "seqs": seqs, "genes": genes, "bundle": bundle, "backbone": backbone, "tmp": tmp_path}


def read_vcf_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return handle.read().splitlines()
