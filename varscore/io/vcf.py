"""VCF/BCF reading (cyvcf2, streamed) and writing the input records back with varscore's INFO
fields added; ``.gz`` outputs are bgzipped and tabix-indexed; outputs are written atomically."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from varscore.errors import InputError
from varscore.io.infotext import header_text, header_value
from varscore.io.outputguard import atomic_file, replace_file
from varscore.types import Variant

logger = logging.getLogger(__name__)

SCORE_KEY = "VARSCORE"
MAX_KEY = "VARSCORE_MAX"
SKIP_KEY = "VARSCORE_SKIP"
SCORE_FORMAT = "ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA|Consequence"

# The direction of DELTA as a Sequence Ontology term (children of level_of_transcript_variant,
# SO:0001540). The subfield is named ``Consequence`` as in VEP's CSQ, the one name
# ``bcftools +split-vep`` requires of every annotation it splits.
INCREASED = "increased_transcript_level_variant"
DECREASED = "decreased_transcript_level_variant"
UNDIRECTED = "level_of_transcript_variant"
UNCHANGED = "sequence_variant"
CONSEQUENCE_TEXT = (
    f"Consequence is the direction of DELTA as a Sequence Ontology term: {INCREASED} (DELTA > 0), "
    f"{DECREASED} (DELTA < 0), {UNCHANGED} (DELTA = 0)."
)


# the unit of REF_PRED / ALT_PRED / DELTA, stated in the VARSCORE header
PREDICTION_UNITS = (
    "REF_PRED and ALT_PRED are in the model's output units: the expression values it was trained on"
    " (per gene, e.g. inverse-normal transformed), or for a coverage track the predicted coverage summed"
    " over the bins read; DELTA = ALT_PRED - REF_PRED in the same units."
)


@dataclass(frozen=True)
class InfoHeader:
    """One ``##INFO`` header line."""

    key: str
    number: str
    type: str
    description: str


SCORE_HEADERS = (
    InfoHeader(
        SCORE_KEY,
        ".",
        "String",
        "Predicted effect of each ALT allele on each gene's expression (ALT minus REF prediction"
        " of the model on the reference window with the allele applied). "
        + PREDICTION_UNITS
        + " "
        + CONSEQUENCE_TEXT
        + " Format: "
        + SCORE_FORMAT,
    ),
    InfoHeader(MAX_KEY, "A", "Float", "Largest |DELTA| of the allele over all scored genes"),
    InfoHeader(
        SKIP_KEY,
        "1",
        "String",
        "Why a record inside a gene window was not scored: missing_alt, symbolic (symbolic alleles, *, "
        "breakends), ambiguous_ref (N or IUPAC codes in REF), ambiguous_alt (N or IUPAC codes in every ALT), "
        "ref_mismatch (REF differs from the reference FASTA)",
    ),
)


def quiet_htslib() -> None:
    """Keep htslib's own ``[W::...]``/``[E::...]`` lines off stderr (varscore's errors say what is
    wrong, in one line); with ``-v`` (INFO logging) they are shown."""
    import ctypes

    import cyvcf2.cyvcf2

    level = 3 if logging.getLogger("varscore").isEnabledFor(logging.INFO) else 0  # HTS_LOG_WARNING / OFF
    try:
        ctypes.CDLL(cyvcf2.cyvcf2.__file__).hts_set_log_level(level)
    except (OSError, AttributeError):  # a cyvcf2 build that does not export htslib's symbols
        logger.debug("cannot set htslib's log level")


def open_vcf(path: str | Path) -> Any:
    """Open a VCF, VCF.gz or BCF with cyvcf2; clear errors for missing or non-VCF files."""
    from cyvcf2 import VCF

    quiet_htslib()

    path = Path(path)
    if not path.exists():
        raise InputError(f"VCF file not found: {path}.")
    if path.is_dir():
        raise InputError(f"Expected a VCF file, got a directory: {path}.")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise InputError(f"{path} is empty: a VCF needs at least the '##fileformat' and '#CHROM' header lines.")
    from varscore.io.vcf_prepare import check_readable

    check_readable(path)  # text htslib would crash on (spaces for tabs, blank lines) is refused first
    try:
        reader = VCF(str(path), lazy=True, threads=1)
    except (OSError, Exception) as exc:  # cyvcf2 raises bare Exception for unreadable files
        raise InputError(f"{path} is not a readable VCF/BCF file ({exc}). Check the file format.") from exc
    if not reader.raw_header.startswith("##fileformat=VCF"):
        raise InputError(f"{path} is not a VCF: its header lacks '##fileformat=VCF'.")
    return reader


def iter_variants(path: str | Path) -> Iterator[Variant]:
    """Stream the file's records as :class:`Variant` (index = record number, 0-based)."""
    reader = open_vcf(path)
    index = -1
    try:
        for index, record in enumerate(reader):
            yield Variant(
                chrom=record.CHROM,
                pos=int(record.POS),
                ref=record.REF,
                alts=tuple(record.ALT),
                id=record.ID,
                index=index,
            )
    except Exception as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"Error reading {path}: htslib cannot parse record {index + 2} ({exc}); 'bcftools view {path}' "
            "names the line."
        ) from exc
    finally:
        reader.close()


def vcf_samples(path: str | Path) -> list[str]:
    reader = open_vcf(path)
    try:
        return list(reader.samples)
    finally:
        reader.close()


def _header_line(info: InfoHeader) -> dict[str, str]:
    return {
        "ID": header_value(info.key),
        "Number": header_value(info.number),
        "Type": header_value(info.type),
        "Description": header_text(info.description),
    }


def write_annotated(
    source: str | Path,
    out: str | Path,
    info_by_record: Mapping[int, Mapping[str, str]],
    headers: Sequence[InfoHeader],
    extra_header_lines: Sequence[str] = (),
) -> int:
    """Copy every record of ``source`` to ``out`` in order, setting the INFO values in
    ``info_by_record`` (record index -> {key: formatted value}); returns the number of records
    written.

    ``out`` may be ``-`` (stdout), ``*.vcf`` or ``*.vcf.gz`` (bgzipped, with a ``.tbi`` index
    when the records are sorted). Files are written to a temporary name and renamed, so a failed
    or killed run leaves no output file behind.
    """
    reader = open_vcf(source)
    try:
        for info in headers:
            reader.add_info_to_header(_header_line(info))
        for line in extra_header_lines:
            reader.add_to_header(line)
        header = reader.raw_header
        if str(out) == "-":
            try:
                written = _write_records(reader, header, info_by_record, sys.stdout)
                sys.stdout.flush()
            except OSError as exc:
                raise InputError(f"Cannot write the VCF to standard output: {exc.strerror or exc}.") from exc
            return written
        out_path = Path(out)
        compressed = out_path.name.endswith((".gz", ".bgz"))
        try:
            with atomic_file(out_path) as tmp:
                if compressed:
                    from pysam import libcbgzf

                    with libcbgzf.BGZFile(str(tmp), "wb", None) as raw:
                        written = _write_records(reader, header, info_by_record, _Sink(raw, encode=True))
                else:
                    with open(tmp, "w") as handle:
                        written = _write_records(reader, header, info_by_record, _Sink(handle))
                if compressed and tmp != out_path:  # a device or pipe written in place has no index
                    _tabix_index(tmp, out_path)
        except OSError as exc:
            raise InputError(
                f"Cannot write {out_path}: {exc.strerror or exc}; nothing was written (the partial file was removed)."
            ) from exc
        return written
    finally:
        reader.close()


class _Sink:
    """Where output text goes: a text file, or a binary stream (BGZFile takes bytes)."""

    def __init__(self, raw: Any, encode: bool = False) -> None:
        self.raw, self.encode = raw, encode

    def write(self, text: str) -> None:
        self.raw.write(text.encode() if self.encode else text)


def _write_records(
    reader: Any, header: str, info_by_record: Mapping[int, Mapping[str, str]], handle: IO[str] | Any
) -> int:
    handle.write(header)
    written = 0
    try:
        for index, record in enumerate(reader):
            values = info_by_record.get(index)
            if values:
                for key, value in values.items():
                    record.INFO[key] = value
            handle.write(str(record))
            written += 1
    except Exception as exc:
        if isinstance(exc, (InputError, OSError)):
            raise
        raise InputError(f"Error re-reading the VCF near record {written + 1} while writing: {exc}") from exc
    return written


def _tabix_index(tmp: Path, final: Path) -> None:
    """Index ``tmp`` (a bgzipped VCF) and move the index beside ``final``.

    Unsorted records cannot be indexed: the output is kept without an index (an old index beside
    ``final`` is removed) and a warning says how to sort it.
    """
    import pysam

    index_tmp = Path(f"{tmp}.tbi")
    final_index = Path(f"{final}.tbi")
    try:
        pysam.tabix_index(str(tmp), preset="vcf", force=True, keep_original=True)
    except (OSError, ValueError) as exc:
        if index_tmp.exists():
            index_tmp.unlink()
        if final_index.exists():
            final_index.unlink()
        logger.warning(
            "%s is not indexed: tabix cannot index it (%s); the input is probably unsorted. "
            "Sort it with 'bcftools sort' to get an index.",
            final,
            str(exc).strip(),
        )
        return
    replace_file(index_tmp, final_index)


def header_models(path: str | Path) -> dict[str, dict[str, str]]:
    """The ``##varscore_model=<ID=..,Backbone=..,Build=..,SHA256=..>`` lines of a VCF header
    (written by ``varscore annotate``), keyed by model ID."""
    reader = open_vcf(path)
    try:
        raw = reader.raw_header
    finally:
        reader.close()
    models: dict[str, dict[str, str]] = {}
    for line in raw.splitlines():
        if not line.startswith("##varscore_model=<") or not line.endswith(">"):
            continue
        fields = dict(item.split("=", 1) for item in line[len("##varscore_model=<") : -1].split(",") if "=" in item)
        if fields.get("ID"):
            models[fields["ID"]] = fields
    return models


def consequence(delta: float, *, signed: bool = True) -> str:
    """The ``Consequence`` subfield of a ``VARSCORE`` entry: the Sequence Ontology term for the
    direction of ``delta`` (``signed=False`` for a distance, whose direction is not measured)."""
    if math.isnan(delta):
        return "."
    if delta == 0:
        return UNCHANGED
    if not signed:
        return UNDIRECTED
    return INCREASED if delta > 0 else DECREASED


def score_columns(description: str, source: str | Path, wanted: Sequence[str]) -> tuple[dict[str, int], int]:
    """Where each ``wanted`` subfield sits in a ``VARSCORE`` entry, and how many subfields an entry
    has, read from the header's ``Format: A|B|...`` (files written before a subfield was added keep
    working)."""
    fields = description.rsplit("Format:", 1)[-1].strip().strip('"').split("|") if "Format:" in description else []
    missing = [name for name in wanted if name not in fields]
    if missing:
        raise InputError(
            f"{source}: the {SCORE_KEY} header's 'Format:' lacks {', '.join(missing)} "
            f"(varscore writes 'Format: {SCORE_FORMAT}'); got '{description}'."
        )
    return {name: fields.index(name) for name in wanted}, len(fields)


def format_float(value: float) -> str:
    """VCF-friendly float: 6 significant digits, no spaces."""
    return f"{value:.6g}"
