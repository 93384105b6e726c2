"""Coverage tracks: per-person RNA-seq-like read coverage over each gene's window (npz or bigWig)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from varscore.simulate.config import SimulationConfig
from varscore.simulate.expression import _GeneTruth
from varscore.simulate.writers import _sample_ids
from varscore.types import Gene, Window

COVERAGE_DEPTH = 20.0  # mean read depth over exons of a gene at its population-mean TPM


READ_LENGTH = 100  # bp; the Poisson noise is on read starts per bin


COVERAGE_LEVELS = {"intergenic": 0.02, "intron": 0.1, "exon": 1.0}


def _gene_profile(gene: Gene, window: Window, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A gene's relative per-base depth on the genome, ``(start, (length,))``: exons (the first on
    the TSS) and introns downstream of the TSS on the gene's strand, level 1 on exons, 0.1 on
    introns; 0 elsewhere."""
    half = window.length // 2
    body = int(rng.uniform(0.15, 0.45) * half)
    profile = np.full(body, COVERAGE_LEVELS["intron"])
    n_exons = int(rng.integers(3, 9))
    starts = np.concatenate([[0], np.sort(rng.integers(200, max(body - 400, 201), size=n_exons - 1))])
    for start in starts:
        profile[start : start + int(rng.integers(100, 400))] = COVERAGE_LEVELS["exon"]
    tss0 = gene.tss - 1
    if gene.strand == "-":
        return tss0 - body + 1, profile[::-1].copy()
    return tss0, profile


def _write_coverage(
    staging: Path,
    config: SimulationConfig,
    contigs: dict[str, int],
    truths: list[_GeneTruth],
    latent: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, str]:
    """Write ``coverage.npz`` (and with ``coverage_bigwig`` one bigWig per person); return roles.

    Each person's expected depth at a base is the sum over genes of ``profile × COVERAGE_DEPTH ×
    TPM / mean TPM × library size`` plus an intergenic floor, where TPM is the person's simulated
    TPM of the gene (``exp(log_tpm_mean + log_tpm_sd × latent)``, as in ``cohort.tpm.tsv``); the
    observed mean depth of a bin is ``READ_LENGTH / bin × Poisson(expected × bin / READ_LENGTH)``,
    drawn per gene window.
    """
    from varscore.types import tss_window

    step = config.coverage_bin
    samples = _sample_ids(config.people)
    library = np.exp(rng.normal(0.0, 0.2, size=config.people))
    profiles = [_gene_profile(t.gene, tss_window(t.gene, config.window), rng) for t in truths]
    scale = []
    for truth, values in zip(truths, latent, strict=True):
        tpm = np.exp(truth.log_tpm_mean + truth.log_tpm_sd * values)
        scale.append(COVERAGE_DEPTH * tpm / tpm.mean() * library)
    windows = [tss_window(t.gene, config.window) for t in truths]
    n_bins = config.window // step
    values = np.empty((len(truths), config.people, n_bins), dtype=np.float32)
    for g, window in enumerate(windows):
        expected = np.full((config.people, n_bins), COVERAGE_LEVELS["intergenic"] * COVERAGE_DEPTH)
        for other, (start, profile) in enumerate(profiles):
            if truths[other].gene.chrom != window.chrom:
                continue
            lo, hi = max(start, window.start), min(start + len(profile), window.end)
            if lo >= hi:
                continue
            base = np.zeros(window.length)
            base[lo - window.start : hi - window.start] = profile[lo - start : hi - start]
            expected += scale[other][:, None] * base.reshape(n_bins, step).mean(axis=1)[None, :]
        reads = rng.poisson(expected * step / READ_LENGTH)
        values[g] = (reads * READ_LENGTH / step).astype(np.float32)
    arrays = {
        "people": np.array(samples),
        "gene_id": np.array([t.gene.gene_id for t in truths]),
        "chrom": np.array([w.chrom for w in windows]),
        "start": np.array([w.start for w in windows], dtype=np.int64),
        "bin_size": np.array(step, dtype=np.int64),
        "values": values,
    }
    _write_npz(staging / "coverage.npz", arrays)
    roles = {"coverage": "coverage.npz"}
    if config.coverage_bigwig:
        folder = staging / "coverage"
        folder.mkdir()
        for person, name in enumerate(samples):
            _write_person_bigwig(folder / f"{name}.bw", contigs, windows, values[:, person], step)
        roles["coverage_bigwigs"] = "coverage"
    return roles


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so the file is byte-identical for a seed."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def _write_person_bigwig(
    path: Path, contigs: dict[str, int], windows: list[Window], values: np.ndarray, step: int
) -> None:
    """One person's binned depth (``values``: ``(genes, bins)``) as a bigWig; where gene windows
    overlap, the earlier window's bins are kept."""
    import pybigtools

    entries = []
    order = sorted(range(len(windows)), key=lambda i: (windows[i].chrom, windows[i].start))
    written_to: dict[str, int] = {}
    for g in order:
        window = windows[g]
        size = contigs[window.chrom]
        for b, value in enumerate(values[g].tolist()):
            start = max(window.start + b * step, written_to.get(window.chrom, 0), 0)
            end = min(window.start + (b + 1) * step, size)
            if start < end:
                entries.append((window.chrom, start, end, float(value)))
                written_to[window.chrom] = end
    writer = pybigtools.open(str(path), "w")
    writer.write(dict(contigs), iter(entries))
