"""Text that goes into a VCF's INFO column or header, made safe by the VCF 4.3 rules.

One place decides what may appear in written VCF text, so that a newline in a gene id, a bundle
name or an annotator's value can never split a record or a header line:

* :func:`info_atom` - one item of an INFO value (a gene id, a model name, a motif id): every
  character with a meaning in the INFO column (``;`` ``=`` ``,`` ``|`` ``%``), white space
  and control characters become ``_``; an empty text becomes ``.`` (VCF's missing value).
* :func:`info_value` - a whole INFO value whose ``,`` (list) and ``|`` (sub-field) separators are
  meant: the other characters are replaced as in :func:`info_atom`.
* :func:`header_text` - a quoted header string (``Description="..."``, ``##varscore_command``):
  control characters and line breaks become spaces, ``\\`` and ``"`` are escaped with ``\\``.
* :func:`header_value` - an unquoted header field value (``ID=``, ``Build=``): as
  :func:`info_atom`, and ``<`` ``>`` too.
"""

from __future__ import annotations

import re

# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: never written.
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029\u0085"
_ATOM_UNSAFE = re.compile(rf"[{_CONTROL};=,|%\s]")
_VALUE_UNSAFE = re.compile(rf"[{_CONTROL};=%\s]")
_HEADER_UNSAFE = re.compile(rf"[{_CONTROL}]")
_HEADER_VALUE_UNSAFE = re.compile(rf"[{_CONTROL};=,|%:<>\"\s]")


def info_atom(text: object) -> str:
    """One item of an INFO value, with no separator, white space or control character in it."""
    cleaned = _ATOM_UNSAFE.sub("_", str(text))
    return cleaned or "."


def info_value(text: object) -> str:
    """A whole INFO value: its ``,`` and ``|`` separators kept, every other unsafe character ``_``."""
    cleaned = _VALUE_UNSAFE.sub("_", str(text))
    return cleaned or "."


def header_text(text: object) -> str:
    """Text for a double-quoted header string: one line, ``\\`` and ``"`` escaped."""
    cleaned = _HEADER_UNSAFE.sub(" ", str(text))
    return cleaned.replace("\\", "\\\\").replace('"', '\\"')


def header_value(text: object) -> str:
    """An unquoted value inside a structured header line (``<ID=...,Build=...>``)."""
    cleaned = _HEADER_VALUE_UNSAFE.sub("_", str(text))
    return cleaned or "."


def one_line(text: object) -> str:
    """``text`` with control characters and line breaks replaced by spaces."""
    return _HEADER_UNSAFE.sub(" ", str(text))


_SPACE_UNSAFE = re.compile(rf"[{_CONTROL}\s]")


def no_space(text: object) -> str:
    """``text`` with white space and control characters replaced by ``_`` (one column of a table)."""
    return _SPACE_UNSAFE.sub("_", str(text)) or "."
