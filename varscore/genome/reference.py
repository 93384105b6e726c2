"""A reference genome recorded by identity, not by path: its file name, genome build, contig names
and lengths, and each contig's MD5 (as ``samtools dict`` writes in ``M5``: the MD5 of the upper-case
sequence without line breaks). A bundle records this; the FASTA is found again on the user's machine
(``--fasta``, ``$VARSCORE_FASTA_DIR``, the bundle directory, the packaged example) and checked."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varscore.errors import BundleError, InputError
from varscore.genome.builds import infer_build

logger = logging.getLogger(__name__)
MAX_UP = 3  # a relative hint climbs at most this many folders from the bundle


def fasta_lengths(path: Path) -> dict[str, int]:
    """Contig lengths from the ``.fai`` index (made by pyfaidx when missing)."""
    fai = Path(f"{path}.fai")
    if not fai.exists():
        from varscore.genome.fasta import Genome

        return dict(Genome(path).lengths)
    lengths: dict[str, int] = {}
    with open(fai) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 2 and fields[1].isdigit():
                lengths[fields[0]] = int(fields[1])
    return lengths


def contig_md5s(path: Path) -> dict[str, str]:
    """Each contig's MD5 over its upper-case bases, streamed (plain or bgzip/gzip FASTA)."""
    opener: Any = gzip.open if path.name.endswith((".gz", ".bgz")) else open
    digests: dict[str, str] = {}
    name, digest = None, hashlib.md5(usedforsecurity=False)
    with opener(path, "rb") as handle:
        for line in handle:
            if line.startswith(b">"):
                if name is not None:
                    digests[name] = digest.hexdigest()
                name, digest = line[1:].split()[0].decode(), hashlib.md5(usedforsecurity=False)
            else:
                digest.update(line.strip().upper())
    if name is not None:
        digests[name] = digest.hexdigest()
    return digests


def _cached_md5s(path: Path) -> dict[str, str]:
    """:func:`contig_md5s`, remembered by the file's stat (hashing a genome takes a while)."""
    from varscore.io.integrity import cached_by_stat

    return dict(cached_by_stat("references.json", path, contig_md5s, lambda v: isinstance(v, dict)))


@dataclass(frozen=True)
class ReferenceRecord:
    """How a bundle names its reference: file name, build and per-contig length and MD5."""

    name: str
    build: str | None
    contigs: tuple[tuple[str, int, str], ...]  # (name, length, md5)
    #: where the FASTA lay relative to the bundle when that is near (e.g. ``../../data/ref.fa`` for a
    #: bundle shipped beside its data); only a hint, checked by identity like every candidate
    relative: str | None = None

    @classmethod
    def of(cls, fasta: Path, build: str | None = None, bundle_dir: Path | None = None) -> ReferenceRecord:
        lengths = fasta_lengths(fasta)
        md5 = _cached_md5s(fasta)
        inferred = infer_build(lengths)
        if build and inferred and build != inferred:
            raise InputError(f"--genome-build says {build} but the contig lengths of {fasta.name} are {inferred}'s.")
        relative = None
        if bundle_dir is not None:
            with contextlib.suppress(ValueError):
                candidate = Path(os.path.relpath(fasta.resolve(), bundle_dir.resolve()))
                relative = candidate.as_posix() if candidate.parts.count("..") <= MAX_UP else None
        contigs = tuple((n, length, md5.get(n, "")) for n, length in lengths.items())
        return cls(fasta.name, build or inferred, contigs, relative)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "build": self.build,
            "contigs": [{"name": n, "length": length, "md5": m} for n, length, m in self.contigs],
            "relative_path": self.relative,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ReferenceRecord:
        try:
            contigs = tuple((str(c["name"]), int(c["length"]), str(c.get("md5", ""))) for c in data["contigs"])
            relative = data.get("relative_path")
            return cls(str(data["name"]), data.get("build"), contigs, str(relative) if relative else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"{where}: 'reference' must hold name, build and contigs [{{name, length, md5}}]; {exc!r}."
            ) from exc

    def check(self, fasta: Path) -> None:
        """Raise :class:`InputError` when ``fasta`` is not this reference: a contig of the record is
        missing or has another length (another genome build). A differing MD5 with equal lengths
        (e.g. other soft/hard masking) is logged as a warning."""
        lengths = fasta_lengths(fasta)
        from varscore.genome.fasta import match_contigs

        mapping = match_contigs([n for n, _, _ in self.contigs], lengths)
        build = self.build or "build not recorded"
        missing = [n for n, _, _ in self.contigs if n not in mapping]
        if len(missing) == len(self.contigs):
            raise InputError(
                f"FASTA {fasta} lacks the contigs of the model's reference {self.name} ({build}: "
                f"{', '.join(n for n, _, _ in self.contigs[:5])}); it has {', '.join(list(lengths)[:5])}. "
                "Pass the model's reference with --fasta."
            )
        for name, length, _ in self.contigs:
            if name in mapping and lengths[mapping[name]] != length:
                other = infer_build(lengths)
                likely = f" It looks like {other}." if other and other != self.build else ""
                raise InputError(
                    f"FASTA {fasta} is not the model's reference {self.name} ({build}): contig {name} is "
                    f"{lengths[mapping[name]]:,} bp there and {length:,} bp in the model's reference.{likely} "
                    "Pass the model's reference with --fasta."
                )
        recorded = {n: m for n, _, m in self.contigs if m}
        if recorded:
            actual = _cached_md5s(fasta)
            differ = [n for n, m in recorded.items() if n in mapping and actual.get(mapping[n]) not in (None, m)]
            if differ:
                logger.warning(
                    "FASTA %s has the model reference's contig lengths but other bases on %s (MD5 differs; "
                    "masking or patches?): scores may differ from the model's own reference.",
                    fasta,
                    ", ".join(differ[:3]),
                )

    def find(self, directories: Iterable[Path], bundle_dir: Path | None = None) -> Path | None:
        """The first ``directory / name`` that exists, else the recorded relative path from
        ``bundle_dir`` when a file of the same name lies there."""
        for directory in directories:
            candidate = Path(directory) / self.name
            if candidate.is_file():
                return candidate
        if bundle_dir is not None and self.relative:
            hinted = Path(self.relative)
            if not hinted.is_absolute() and hinted.parts.count("..") <= MAX_UP and hinted.name == self.name:
                candidate = (bundle_dir / hinted).resolve()
                if candidate.is_file():
                    return candidate
        return None


def fasta_search_path(bundle_dir: Path) -> list[Path]:
    """Where a bundle's reference is looked for: ``$VARSCORE_FASTA_DIR`` (``os.pathsep``-separated),
    the bundle directory, then the packaged example data."""
    from varscore.examples import data_dir

    dirs = [Path(p) for p in os.environ.get("VARSCORE_FASTA_DIR", "").split(os.pathsep) if p]
    return [*dirs, bundle_dir, data_dir()]
