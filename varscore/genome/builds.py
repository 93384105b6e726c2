"""Genome builds: telling hg19 from hg38 by contig lengths, so that a VCF of one build is never
scored silently against a model (and FASTA) of the other."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from varscore.errors import InputError

logger = logging.getLogger(__name__)

# Primary-assembly contig lengths (UCSC hg19 = GRCh37 but for chrM; hg38 = GRCh38).
_HG19 = (
    249250621,
    243199373,
    198022430,
    191154276,
    180915260,
    171115067,
    159138663,
    146364022,
    141213431,
    135534747,
    135006516,
    133851895,
    115169878,
    107349540,
    102531392,
    90354753,
    81195210,
    78077248,
    59128983,
    63025520,
    48129895,
    51304566,
)
_HG38 = (
    248956422,
    242193529,
    198295559,
    190214555,
    181538259,
    170805979,
    159345973,
    145138636,
    138394717,
    133797422,
    135086622,
    133275309,
    114364328,
    107043718,
    101991189,
    90338345,
    83257441,
    80373285,
    58617616,
    64444167,
    46709983,
    50818468,
)
KNOWN_LENGTHS: dict[str, dict[str, int]] = {
    "hg19": {**{str(i + 1): n for i, n in enumerate(_HG19)}, "X": 155270560, "Y": 59373566},
    "hg38": {**{str(i + 1): n for i, n in enumerate(_HG38)}, "X": 156040895, "Y": 57227415},
}
ALIASES = {
    "hg19": "hg19",
    "grch37": "hg19",
    "b37": "hg19",
    "hs37d5": "hg19",
    "hg38": "hg38",
    "grch38": "hg38",
    "b38": "hg38",
}
REF_MISMATCH_MIN_CHECKED = 20  # the share of REF mismatches is judged from this many checked alleles on


def _base(name: str) -> str:
    return name[3:] if name.lower().startswith("chr") else name


def normalise_build(name: str | None) -> str | None:
    """``GRCh37`` -> ``hg19``, ``GRCh38`` -> ``hg38``; other names unchanged; None stays None."""
    if not name:
        return None
    return ALIASES.get(str(name).strip().lower(), str(name).strip())


def build_of_contig(name: str, length: int) -> str | None:
    """The known build whose contig ``name`` has ``length`` bp, or None."""
    for build, lengths in KNOWN_LENGTHS.items():
        if lengths.get(_base(name)) == length:
            return build
    return None


def infer_build(lengths: Mapping[str, int]) -> str | None:
    """The known build all of whose listed contigs have these lengths (None if unknown or mixed)."""
    builds = {build_of_contig(name, length) for name, length in lengths.items() if _base(name) in KNOWN_LENGTHS["hg19"]}
    return builds.pop() if len(builds) == 1 and None not in builds else None


def model_build(recorded: str | None, fasta_lengths: Mapping[str, int] | None = None) -> str | None:
    """The model's build: the one its bundle records, else the one its FASTA's lengths show."""
    return normalise_build(recorded) or (infer_build(fasta_lengths) if fasta_lengths else None)


def check_contig_lengths(
    vcf_lengths: Mapping[str, int],
    fasta_lengths: Mapping[str, int],
    source: str,
    fasta: str,
    recorded_build: str | None = None,
) -> None:
    """Stop when a ``##contig`` length of the VCF differs from the same contig in the FASTA (or,
    without a FASTA, from the length in the model's recorded build).

    A FASTA contig whose length is no known build's (a test or partial reference, another
    species) cannot tell builds apart: a differing length is then a warning, and the REF check
    of the scored records (``--max-ref-mismatch``) still stops a VCF of another build.
    """
    from varscore.genome.fasta import match_contigs

    build = model_build(recorded_build, fasta_lengths)
    reference = dict(fasta_lengths) or {name: n for name, n in KNOWN_LENGTHS.get(build or "", {}).items()}
    mapping = match_contigs(vcf_lengths, reference)
    unplaced: list[str] = []
    for name, length in vcf_lengths.items():
        other = mapping.get(name)
        if other is None or reference[other] == length:
            continue
        vcf_build = build_of_contig(name, length)
        if fasta_lengths and build_of_contig(other, reference[other]) is None:
            unplaced.append(f"{name} {length:,} vs {reference[other]:,} bp")
            continue
        likely = f" ({vcf_build}'s length)" if vcf_build else ""
        model = f" the model's {build}" if build else " the model's reference"
        where = f"the FASTA {fasta}" if fasta_lengths else f"{build}"
        raise InputError(
            f"Contig {name} is {length:,} bp in {source}{likely} but {reference[other]:,} bp in {where}: the VCF "
            f"looks like a different genome build than{model}. Lift it over (e.g. bcftools +liftover or "
            "CrossMap), or use a model built on the VCF's build."
        )
    if unplaced:
        more = f" and {len(unplaced) - 3} more" if len(unplaced) > 3 else ""
        logger.warning(
            "Contig lengths of %s differ from the FASTA %s (%s%s), whose lengths are no known build's (a partial "
            "or non-human reference?): REF alleles are still checked against it.",
            source,
            fasta,
            "; ".join(unplaced[:3]),
            more,
        )


def ref_mismatch_error(mismatched: int, checked: int, limit: float, source: str, build: str | None) -> InputError:
    """The error for a share of REF alleles that differ from the FASTA above ``limit``."""
    model = f"the model's {build}" if build else "the model's reference"
    return InputError(
        f"{mismatched} of {checked} checked REF alleles ({mismatched / checked:.0%}) in {source} differ from the "
        f"reference FASTA (more than --max-ref-mismatch {limit:g}): the VCF looks like a different genome build "
        f"than {model}. Lift it over, pass the right --fasta, or raise --max-ref-mismatch."
    )
