"""Getting a VCF ready for htslib: stdin and named pipes spooled once to a temporary file, the
text checked line by line before htslib sees it, and what htslib cannot take normalised.

htslib (through cyvcf2) crashes the process on some malformed records (a record with spaces
instead of tabs, a blank line, a ``.`` POS) and refuses others that ``bcftools view`` reads (a
record without its INFO column). :func:`prepared_vcf` reads a text VCF (plain or gzipped) once
in Python and

* stops with a one-line error naming the line for a record htslib would misread or crash on
  (spaces for tabs, too few columns, a POS that is not a number, an empty CHROM/REF/ALT);
* writes a normalised copy when needed: blank lines dropped, a missing INFO column of a
  sites-only file (7 columns) added as ``.``, and header lines and values of INFO keys this run
  writes (``VARSCORE``...) removed so that the new definitions replace them;
* collects the ``##contig`` lengths (for the genome-build check) and the records' contig names
  (``chr20`` together with ``20`` is an error, not a silent merge).

BCF input is binary and goes to htslib as it is (a BCF holding one of this run's INFO keys is
first written out as text, so that the old definition can be replaced).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from varscore.errors import InputError

logger = logging.getLogger(__name__)

_INFO_LINE = re.compile(rb"^##INFO=<ID=([^,>]+)(.*)$")
_CONTIG_LINE = re.compile(rb"^##contig=<(.*)>\s*$")
_FIELD = re.compile(rb"(\w+)=(\"(?:[^\"\\]|\\.)*\"|[^,>]*)")
_MANDATORY = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")


@dataclass
class PreparedVCF:
    """A VCF ready for htslib: ``path`` is the file to read (the original, a spooled copy of
    stdin or a pipe, or a normalised copy); ``source`` names the user's input in messages."""

    path: Path
    source: str
    contig_lengths: dict[str, int] = field(default_factory=dict)
    record_contigs: list[str] = field(default_factory=list)  # in order of first appearance (text input)
    replaced_keys: list[str] = field(default_factory=list)
    normalised: list[str] = field(default_factory=list)  # what the normalised copy changed
    records: int | None = None  # counted for text input


def canonical_contig(name: str) -> str:
    """The spelling-independent name of a contig (``chr20`` and ``20`` -> ``20``; ``chrM``/``MT`` -> ``M``)."""
    base = name[3:] if name.lower().startswith("chr") else name
    return "M" if base in ("M", "MT") else base


def check_contig_spellings(names: Iterable[str], source: str) -> None:
    """Refuse a file naming one contig in two spellings (``chr20`` and ``20``)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(canonical_contig(name), name)
        if other != name:
            raise InputError(
                f"{source} names one contig two ways, '{other}' and '{name}': rename one (bcftools annotate "
                "--rename-chrs) so that every record uses the same name."
            )


@contextlib.contextmanager
def prepared_vcf(path: str | Path, replace_keys: Iterable[str] = ()) -> Iterator[PreparedVCF]:
    """The input made safe to read (see the module docstring); temporary copies are removed when
    the block ends. ``path`` ``-`` reads standard input."""
    replace = {k.encode() for k in replace_keys}
    with tempfile.TemporaryDirectory(prefix="varscore-input-") as tmp:
        source = "standard input" if str(path) == "-" else str(path)
        real = _spooled(path, Path(tmp))
        kind = _kind(real, source)
        if kind == "bcf":
            prepared = _prepare_bcf(real, source, replace, Path(tmp))
        else:
            prepared = _prepare_text(real, source, kind == "gz", replace, Path(tmp) / "normalised.vcf")
        if prepared.replaced_keys:
            logger.warning(
                "%s already defines INFO %s: the definitions and old values are replaced by this run's.",
                source,
                ", ".join(prepared.replaced_keys),
            )
        if prepared.normalised:
            logger.info("%s read through a normalised copy: %s", source, "; ".join(prepared.normalised))
        stamp = _stamp(prepared.path)
        _CHECKED.add(stamp)  # checked (or normalised) above: htslib may open it without another pass
        try:
            yield prepared
        finally:
            if prepared.path.parent == Path(tmp):
                _CHECKED.discard(stamp)  # the copy is removed with the folder


_CHECKED: set[tuple[str, int, int, int]] = set()  # (path, inode, size, mtime) of text VCFs found safe


def _stamp(path: Path) -> tuple[str, int, int, int]:
    info = path.stat()
    return str(path.resolve()), info.st_ino, info.st_size, info.st_mtime_ns


def check_readable(path: str | Path) -> None:
    """Refuse (one-line :class:`InputError`) a text VCF that htslib would crash on or misread,
    before htslib opens it: the checks of :func:`prepared_vcf`, without the normalised copy (a
    file that needs one is an error naming the fix). Files already checked are not read again."""
    path = Path(path)
    try:
        stamp = _stamp(path)
    except OSError:
        return  # missing files get their own message
    if stamp in _CHECKED or not stat.S_ISREG(path.stat().st_mode):
        return
    kind = _kind(path, str(path))
    if kind == "bcf":
        _CHECKED.add(stamp)
        return
    prepared = PreparedVCF(path=path, source=str(path))
    fixes = _scan(path, str(path), kind == "gz", set(), prepared, None)
    if fixes:
        raise InputError(
            f"{path} needs fixing before htslib can read it ({'; '.join(sorted(fixes)).replace(' dropped', '')}): "
            "'varscore annotate' reads it through a normalised copy; for other commands remove blank lines "
            "(grep -v '^$') and add the missing INFO column ('.')."
        )
    _CHECKED.add(stamp)


def _spooled(path: str | Path, tmp: Path) -> Path:
    """``path`` itself when it is a regular file; stdin, a named pipe or a device copied once into ``tmp``."""
    if str(path) == "-":
        return _copy_stream(sys.stdin.buffer, tmp / "stdin.vcf", "standard input")
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"VCF file not found: {path}.") from None
    except OSError as exc:
        raise InputError(f"Cannot read VCF {path}: {exc.strerror or exc}.") from exc
    if stat.S_ISDIR(mode):
        raise InputError(f"Expected a VCF file, got a directory: {path}.")
    if stat.S_ISREG(mode):
        if not os.access(path, os.R_OK):
            raise InputError(f"Cannot read VCF {path}: permission denied.")
        return path
    try:
        with open(path, "rb") as stream:
            return _copy_stream(stream, tmp / "spooled.vcf", str(path))
    except OSError as exc:
        raise InputError(f"Cannot read VCF {path}: {exc.strerror or exc}.") from exc


def _copy_stream(stream: IO[bytes], target: Path, source: str) -> Path:
    try:
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except OSError as exc:
        raise InputError(
            f"Cannot copy {source} to a temporary file ({exc.strerror or exc}); set TMPDIR to a folder with space."
        ) from exc
    return target


def _kind(path: Path, source: str) -> str:
    """``text``, ``gz`` (gzip/bgzip text) or ``bcf``."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if not head:
        raise InputError(f"{source} is empty: a VCF needs at least the '##fileformat' and '#CHROM' header lines.")
    if head[:3] == b"BCF":
        return "bcf"
    if head[:2] == b"\x1f\x8b":
        try:
            inner = zlib.decompressobj(31).decompress(head, 8)
        except zlib.error as exc:
            raise InputError(f"{source} is gzip-compressed but damaged ({exc}).") from exc
        return "bcf" if inner[:3] == b"BCF" else "gz"
    return "text"


def _header_fields(text: bytes) -> dict[bytes, bytes]:
    return {m.group(1): m.group(2).strip(b'"') for m in _FIELD.finditer(text)}


def _prepare_text(path: Path, source: str, compressed: bool, replace: set[bytes], copy: Path) -> PreparedVCF:
    """Check ``path`` in one pass; when it needs normalising, write the normalised text to ``copy``
    in a second pass."""
    prepared = PreparedVCF(path=path, source=source)
    fixes = _scan(path, source, compressed, replace, prepared, None)
    if fixes:
        with open(copy, "wb") as out:
            _scan(path, source, compressed, replace, PreparedVCF(path=path, source=source), out)
        prepared.path = copy
    prepared.normalised = sorted(fixes)
    check_contig_spellings(prepared.record_contigs, source)
    return prepared


def _scan(
    path: Path, source: str, compressed: bool, replace: set[bytes], prepared: PreparedVCF, out: IO[bytes] | None
) -> set[str]:
    """One pass over the text: checks every line, fills ``prepared`` and returns the fixes a
    normalised copy needs; with ``out``, writes that copy."""
    opener = gzip.open if compressed else open
    fixes: set[str] = set()
    replaced: set[bytes] = set()
    columns = 0
    records = 0
    contigs: dict[str, None] = {}
    keys = b"|".join(re.escape(k) for k in sorted(replace))
    strip_info = re.compile(rb"(?:^|;)(?:" + keys + rb")(?:=[^;]*)?(?=;|$)") if replace else None
    write = out.write if out is not None else None
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"##"):
                    info = _INFO_LINE.match(line)
                    if info and info.group(1) in replace:
                        replaced.add(info.group(1))
                        fixes.add("old INFO definitions removed")
                        continue
                    contig = _CONTIG_LINE.match(line)
                    if contig:
                        attrs = _header_fields(contig.group(1))
                        name, length = attrs.get(b"ID"), attrs.get(b"length")
                        if name and length and length.isdigit():
                            prepared.contig_lengths[name.decode(errors="replace")] = int(length)
                    if write:
                        write(line + b"\n")
                    continue
                if line.startswith(b"#"):
                    names = line[1:].split(b"\t")
                    if len(names) < 8 or [n.strip().decode(errors="replace") for n in names[:8]] != list(_MANDATORY):
                        raise InputError(
                            f"{source} line {number}: the '#CHROM' header line must name the 8 columns CHROM POS ID "
                            "REF ALT QUAL FILTER INFO separated by tabs (spaces instead of tabs?)."
                        )
                    columns = len(names)
                    if write:
                        write(line + b"\n")
                    continue
                if not line.strip():
                    fixes.add("blank lines dropped")
                    continue
                if not columns:
                    raise InputError(f"{source} line {number}: a record comes before the '#CHROM' header line.")
                fields = line.split(b"\t", 8)
                where = f"{source} line {number}"
                if len(fields) < 8:
                    if len(fields) == 7 and columns == 8 and b" " not in line:
                        fixes.add("INFO column '.' added to 7-column records")
                        fields.append(b".")
                    else:
                        spaces = " (spaces instead of tabs?)" if b" " in line else ""
                        raise InputError(
                            f"{where} has {len(fields)} tab-separated columns; a record needs at least 8 "
                            f"(CHROM POS ID REF ALT QUAL FILTER INFO){spaces}."
                        )
                found = 8 + (fields[8].count(b"\t") + 1 if len(fields) == 9 else 0)
                if 9 < found < columns:
                    spaces = " (spaces instead of tabs?)" if b" " in line else ""
                    raise InputError(
                        f"{where} has {found} columns; the '#CHROM' line names {columns} (one per sample){spaces}."
                    )
                _check_record(fields, where)
                if strip_info is not None and any(k in fields[7] for k in replace):
                    cleaned = strip_info.sub(b"", fields[7]).lstrip(b";") or b"."
                    if cleaned != fields[7]:
                        fixes.add("old INFO values removed")
                        fields[7] = cleaned
                contigs.setdefault(fields[0].decode(errors="replace"))
                records += 1
                if write:
                    write(b"\t".join(fields) + b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        damaged = isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile))
        what = "truncated or damaged" if damaged else "unreadable"
        raise InputError(f"{source} is {what} ({exc}); check the file (bgzip -t FILE for .gz).") from exc
    if not columns:
        raise InputError(f"{source} has no '#CHROM' header line: it is not a VCF.")
    prepared.records = records
    prepared.record_contigs = list(contigs)
    prepared.replaced_keys = sorted(k.decode() for k in replaced)
    return fixes


def _check_record(fields: list[bytes], where: str) -> None:
    """The columns htslib must be able to read without crashing."""
    chrom, pos, ref, alt = fields[0], fields[1], fields[3], fields[4]
    for name, value in (("CHROM", chrom), ("POS", pos), ("REF", ref), ("ALT", alt)):
        if not value:
            raise InputError(f"{where}: the {name} column is empty.")
        if any(c in value for c in b" \x00\x0b\x0c"):
            raise InputError(
                f"{where}: the {name} column '{value.decode(errors='replace')[:40]}' contains a space "
                "or a control character (spaces instead of tabs?)."
            )
    if not pos.isdigit():
        raise InputError(f"{where}: POS '{pos.decode(errors='replace')[:40]}' is not a non-negative whole number.")


def _prepare_bcf(path: Path, source: str, replace: set[bytes], tmp: Path) -> PreparedVCF:
    """BCF goes to htslib as it is; one holding this run's INFO keys is first written out as text."""
    from cyvcf2 import VCF

    try:
        reader = VCF(str(path), lazy=True, threads=1)
    except Exception as exc:  # cyvcf2 raises bare Exception for unreadable files
        raise InputError(f"{source} is not a readable BCF file ({exc}).") from exc
    try:
        header = reader.raw_header
        lengths = dict(zip(reader.seqnames, reader.seqlens, strict=False)) if _has_lengths(reader) else {}
        defined = {m.group(1) for m in re.finditer(rb"^##INFO=<ID=([^,>]+)", header.encode(), re.M)}
        if not defined & replace:
            return PreparedVCF(path=path, source=source, contig_lengths={k: int(v) for k, v in lengths.items() if v})
        text = tmp / "from-bcf.vcf"
        try:
            with open(text, "w") as out:
                out.write(header)
                for record in reader:
                    out.write(str(record))
        except Exception as exc:
            raise InputError(
                f"{source}: htslib cannot read a record ({exc}); 'bcftools view {source}' names it."
            ) from exc
    finally:
        reader.close()
    return _prepare_text(text, source, False, replace, tmp / "normalised.vcf")


def _has_lengths(reader: object) -> bool:
    try:
        return bool(reader.seqlens)  # type: ignore[attr-defined]
    except Exception:  # cyvcf2 raises when the header has no lengths
        return False
