"""Genome-browser tracks of variant scores: bedGraph / bigWig of ISM per position (one per gene
and one merged), predicted ref/alt/delta coverage of ``track`` models, a BED9 of the top variants
coloured by sign, an IGV session and a UCSC track hub that load them all.

Coordinates: ``VariantEffect.pos`` is 1-based (VCF); every interval written is 0-based half-open.
One value per position: of several alleles (a multi-allelic site, or records repeating a
position) the one with the largest |delta| is kept; the merged track keeps, across genes, the
value with the largest |delta| (ties go to the larger signed value, so the choice never depends
on input order).
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varscore.errors import InputError
from varscore.io.outputguard import atomic_file, replace_file
from varscore.io.vcf import SCORE_KEY, header_models, open_vcf, score_columns
from varscore.scoring.selection import Selection

if TYPE_CHECKING:
    from varscore.plugin.contracts import OutputMode, SequenceBackbone

logger = logging.getLogger(__name__)

FORMATS = ("bigwig", "bedgraph", "bed")
IGV_JS_DEFAULT = "https://cdn.jsdelivr.net/npm/igv@3/dist/igv.min.js"
SHORT_LABEL_MAX = 17  # UCSC trackDb / hub.txt limits
LONG_LABEL_MAX = 76
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz", ".fa.bgz", ".fasta.bgz")
INCREASE_RGB = "215,48,39"  # red: the ALT allele raises the prediction
DECREASE_RGB = "69,117,180"  # blue: it lowers it
# IGV genome ids / UCSC database names of the builds a bundle may record
BROWSER_GENOMES = {
    "grch37": "hg19",
    "hg19": "hg19",
    "grch38": "hg38",
    "hg38": "hg38",
    "grcm38": "mm10",
    "mm10": "mm10",
    "grcm39": "mm39",
    "mm39": "mm39",
}
# autoSql of BED9, so bigBed readers know the extra columns (UCSC's standard field names)
BED9_AUTOSQL = """table bed9
"Browser extensible data, 9 columns"
(
    string chrom;      "Reference sequence chromosome or scaffold"
    uint   chromStart; "Start position in chromosome"
    uint   chromEnd;   "End position in chromosome"
    string name;       "Name of item"
    uint   score;      "Score from 0-1000"
    char[1] strand;    "+ or - or ."
    uint   thickStart; "Start of where display should be thick"
    uint   thickEnd;   "End of where display should be thick"
    uint   reserved;   "Used as itemRgb"
)
"""


@dataclass(frozen=True)
class VariantEffect:
    """One ALT allele's score for one gene: ``delta`` = ALT minus REF prediction.

    ``chrom`` is named as in the track files (the FASTA's name when a FASTA is known); ``pos`` is
    1-based; ``name`` is the VCF ID, or ``chrom:pos`` when the record has none.
    """

    chrom: str
    pos: int
    ref: str
    allele: str
    gene: str
    delta: float
    name: str

    @property
    def label(self) -> str:
        """A BED item name: ``ID:REF>ALT:GENE``."""
        from varscore.io.infotext import no_space

        return no_space(f"{self.name}:{self.ref}>{self.allele}:{self.gene}")


@dataclass(frozen=True)
class Interval:
    """One bedGraph / bigWig row: ``[start, end)`` 0-based half-open."""

    chrom: str
    start: int
    end: int
    value: float


@dataclass(frozen=True)
class BedItem:
    """One BED9 row: a variant coloured by the sign of its effect, score 0-1000 by |delta|."""

    chrom: str
    start: int
    end: int
    name: str
    score: int
    rgb: str

    def line(self) -> str:
        return "\t".join(
            map(str, (self.chrom, self.start, self.end, self.name, self.score, ".", self.start, self.end, self.rgb))
        )


@dataclass(frozen=True)
class TrackFile:
    """A file written to the output directory and how browsers should show it.

    ``kind``: ``bigwig``, ``bedgraph``, ``bed`` or ``bigbed``; ``path`` is relative to the directory.
    """

    path: str
    kind: str
    label: str
    description: str
    color: str = "0,0,0"
    alt_color: str | None = None


@dataclass(frozen=True)
class TrackJob:
    """One ``varscore track`` run: score ``vcf`` with ``model`` (or, with ``from_vcf`` or no model,
    read its ``VARSCORE`` entries) and write browser tracks to ``out_dir``::

        result = run_tracks(TrackJob("in.vcf.gz", "tracks/", model="variformer-demo"))

    ``formats``: ``bigwig`` (ISM and coverage as bigWig, top variants as bigBed), ``bedgraph``,
    ``bed`` (the BED9 of the top variants). ``fasta``: contig names and lengths (default: the
    bundle's); ``genes``: a gene/TSS table instead of the bundle's genes; ``genome``: IGV genome id /
    UCSC database or FASTA path for the session. ``top``: variants per gene in the BED9 (0 = all).
    ``coverage_top``: for ``track`` models, the strongest variants per gene whose ALT and delta
    coverage are drawn. ``hub_email``: contact for hub.txt. ``igv_js``: where ``igv.html`` loads
    igv.js from (URL, or a path relative to the directory). ``batch_size``, ``device``, ``bf16``,
    ``check_ref``, ``progress``: as for ``varscore annotate``."""

    vcf: str | Path
    out_dir: str | Path
    model: str | Path | None = None
    formats: str | Sequence[str] = ("bigwig", "bed")
    from_vcf: bool = False
    fasta: str | Path | None = None
    genes: str | Path | None = None
    genome: str | None = None
    top: int = 20
    coverage_top: int = 3
    hub_email: str | None = None
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    check_ref: str = "flag"
    progress: bool = False
    selection: Selection = field(default_factory=Selection)  # --regions, --genes-only (scored runs)
    igv_js: str = IGV_JS_DEFAULT
    cache: str | Path | None = None  # SNV effects kept between runs (varscore.scoring.effect_cache)


@dataclass
class TrackResult:
    """What :func:`run_tracks` wrote; ``summary`` tells the user what was scored and drawn."""

    out_dir: Path
    files: list[TrackFile]
    session: Path
    trackdb: Path | None
    summary: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary lines (``varscore track`` prints them to stderr)."""
        return list(self.summary)

    def closing_line(self) -> str:
        """Where the tracks are and how to open them (``varscore track`` prints it to stdout)."""
        hub = (
            f", or load {self.trackdb.parent / 'hub.txt'} in UCSC"
            if (self.out_dir / "hub.txt").exists() and self.trackdb
            else ""
        )
        page = self.session.parent / "igv.html"
        return (
            f"wrote {len(self.files)} track files to {self.out_dir}; open {self.session} in IGV{hub}, "
            f"or serve the folder over HTTP and open {page.name} (igv.js)"
        )


# --- from scores to tracks ---


def _strength(effect: VariantEffect) -> tuple[float, float]:
    return (abs(effect.delta), effect.delta)


def strongest_per_position(effects: Iterable[VariantEffect]) -> list[VariantEffect]:
    """One effect per ``(chrom, pos)``: the largest |delta| (ties: the larger value), sorted."""
    best: dict[tuple[str, int], VariantEffect] = {}
    for effect in effects:
        if math.isnan(effect.delta):
            continue
        key = (effect.chrom, effect.pos)
        if key not in best or _strength(effect) > _strength(best[key]):
            best[key] = effect
    return [best[k] for k in sorted(best)]


def position_intervals(effects: Iterable[VariantEffect]) -> list[Interval]:
    """The bedGraph of ``effects``: one 1-bp interval per position holding its strongest delta."""
    return [Interval(e.chrom, e.pos - 1, e.pos, e.delta) for e in strongest_per_position(effects)]


def effects_by_gene(effects: Iterable[VariantEffect]) -> dict[str, list[VariantEffect]]:
    by_gene: dict[str, list[VariantEffect]] = defaultdict(list)
    for effect in effects:
        by_gene[effect.gene].append(effect)
    return dict(sorted(by_gene.items()))


def top_variants(effects: Iterable[VariantEffect], per_gene: int) -> list[BedItem]:
    """The ``per_gene`` positions with the largest |delta| of each gene (0 = all), as BED9 items
    sorted by position; score = 1000 × |delta| / the largest |delta| listed. Zero effects (e.g. a
    linear model's dropped variants) are never listed."""
    chosen: list[VariantEffect] = []
    for gene_effects in effects_by_gene(effects).values():
        ranked = sorted((e for e in strongest_per_position(gene_effects) if e.delta != 0), key=_strength, reverse=True)
        chosen.extend(ranked[:per_gene] if per_gene > 0 else ranked)
    scale = max((abs(e.delta) for e in chosen), default=0.0)
    items = []
    for effect in chosen:
        score = round(1000 * abs(effect.delta) / scale) if scale > 0 else 0
        rgb = INCREASE_RGB if effect.delta > 0 else DECREASE_RGB
        items.append(
            BedItem(effect.chrom, effect.pos - 1, effect.pos - 1 + max(len(effect.ref), 1), effect.label, score, rgb)
        )
    return sorted(items, key=lambda i: (i.chrom, i.start, i.end, i.name))


def check_intervals(intervals: Sequence[Interval], chrom_sizes: Mapping[str, int], what: str) -> None:
    """Sorted by (chrom, start), non-overlapping, inside the contigs: what bedGraph/bigWig need."""
    previous: Interval | None = None
    for interval in intervals:
        size = chrom_sizes.get(interval.chrom)
        if size is None:
            raise InputError(
                f"{what}: contig '{interval.chrom}' has no known length (known: "
                f"{', '.join(list(chrom_sizes)[:5]) or 'none'}). Pass the reference with --fasta."
            )
        if not 0 <= interval.start < interval.end <= size:
            raise InputError(
                f"{what}: interval {interval.chrom}:{interval.start}-{interval.end} lies outside the contig "
                f"(length {size}). Does the VCF use another genome build than the FASTA?"
            )
        if previous is not None and previous.chrom == interval.chrom and interval.start < previous.end:
            raise InputError(f"{what}: intervals overlap or are unsorted at {interval.chrom}:{interval.start}.")
        previous = interval


def sorted_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    return sorted(intervals, key=lambda i: (i.chrom, i.start, i.end))


# --- writers ---


def _track_line(kind: str | None, name: str, description: str, extra: str = "") -> str:
    from varscore.io.infotext import one_line

    clean = [one_line(text).replace('"', "'") for text in (name, description)]
    kind_field = f"type={kind} " if kind else ""  # BED custom tracks take no type
    return f'track {kind_field}name="{clean[0]}" description="{clean[1]}"{extra}\n'


def write_bedgraph(
    path: Path, intervals: Sequence[Interval], chrom_sizes: Mapping[str, int], name: str, description: str
) -> None:
    """A bedGraph with a track line; rows sorted as ``sort -k1,1 -k2,2n`` (bedGraphToBigWig's order)."""
    rows = sorted_intervals(intervals)
    check_intervals(rows, chrom_sizes, str(path))
    with atomic_file(path) as tmp, open(tmp, "w") as handle:
        handle.write(_track_line("bedGraph", name, description))
        for row in rows:
            handle.write(f"{row.chrom}\t{row.start}\t{row.end}\t{row.value:.6g}\n")


def _sorted_sizes(chrom_sizes: Mapping[str, int]) -> dict[str, int]:
    return {name: int(chrom_sizes[name]) for name in sorted(chrom_sizes)}


def _write_bbi(path: Path, chrom_sizes: Mapping[str, int], rows: Iterable[tuple[Any, ...]], **kwargs: Any) -> None:
    """Write a bigWig/bigBed with pybigtools through a temporary name that keeps the extension
    (pybigtools picks the format from it)."""
    import pybigtools

    with atomic_file(path) as tmp:
        staged = tmp.with_name(tmp.name + path.suffix)
        try:
            pybigtools.open(str(staged), "w").write(_sorted_sizes(chrom_sizes), rows, **kwargs)
            replace_file(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)


def write_bigwig(path: Path, intervals: Sequence[Interval], chrom_sizes: Mapping[str, int]) -> None:
    """A bigWig whose header lists every contig of ``chrom_sizes`` with its length."""
    rows = sorted_intervals(intervals)
    check_intervals(rows, chrom_sizes, str(path))  # pybigtools reports bad rows without raising
    _write_bbi(path, chrom_sizes, [(r.chrom, r.start, r.end, float(r.value)) for r in rows])


def write_bed9(path: Path, items: Sequence[BedItem], name: str, description: str) -> None:
    with atomic_file(path) as tmp, open(tmp, "w") as handle:
        handle.write(_track_line(None, name, description, ' itemRgb="On"'))
        for item in items:
            handle.write(item.line() + "\n")


def write_bigbed(path: Path, items: Sequence[BedItem], chrom_sizes: Mapping[str, int]) -> None:
    """The BED9 items as a bigBed 9 (UCSC hubs take only binary files)."""
    for item in items:
        size = chrom_sizes.get(item.chrom)
        if size is None or not 0 <= item.start < item.end <= size:
            raise InputError(
                f"{path}: item {item.name} at {item.chrom}:{item.start}-{item.end} is outside the "
                "known contigs. Pass the reference with --fasta."
            )
    rows = [(i.chrom, i.start, i.end, "\t".join(i.line().split("\t")[3:])) for i in items]
    _write_bbi(path, chrom_sizes, rows, autosql=BED9_AUTOSQL)


_IGV_CLASS = {
    "bigwig": "org.broad.igv.track.DataSourceTrack",
    "bedgraph": "org.broad.igv.track.DataSourceTrack",
    "bigbed": "org.broad.igv.track.FeatureTrack",
    "bed": "org.broad.igv.track.FeatureTrack",
}


def _signal(track: TrackFile) -> bool:
    return track.kind in ("bigwig", "bedgraph")


def igv_session_xml(genome: str, locus: str | None, files: Sequence[TrackFile]) -> str:
    """An IGV session as IGV desktop writes it: the genome, the locus, one ``<Resource>`` per track
    file and a ``<Panel>`` whose ``<Track>`` elements (``id`` = the resource's path) carry the
    name and colours. IGV desktop and igv.js both read a relative path relative to the session
    file, so the directory can be moved (or served) as a whole.

    Signal tracks get ``color`` (values above 0) and ``altColor`` (below 0); the BED9 track gets
    no colour, so its items' own colours (the sign of each effect) show.
    """
    root = ET.Element("Session", {"genome": genome, "version": "8"})
    if locus:
        root.set("locus", locus)
    resources = ET.SubElement(root, "Resources")
    panel = ET.Element("Panel", {"name": "DataPanel"})
    for track in files:
        ET.SubElement(resources, "Resource", {"path": track.path})
        attributes = {
            "attributeKey": track.path,
            "clazz": _IGV_CLASS[track.kind],
            "fontSize": "10",
            "id": track.path,
            "name": track.label,
            "visible": "true",
        }
        if _signal(track):
            attributes.update(autoScale="true", renderer="BAR_CHART", windowFunction="none", color=track.color)
            if track.alt_color:
                attributes["altColor"] = track.alt_color
        else:
            attributes["displayMode"] = "EXPANDED"
        ET.SubElement(panel, "Track", attributes)
    root.append(panel)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _igv_js_track(track: TrackFile) -> dict[str, Any]:
    """One igv.js track configuration (its ``url`` relative to the page)."""
    if _signal(track):
        config: dict[str, Any] = {
            "type": "wig",
            "format": "bigwig" if track.kind == "bigwig" else "bedgraph",
            "color": f"rgb({track.color})",
            "autoscale": True,
        }
        if track.alt_color:
            config["altColor"] = f"rgb({track.alt_color})"
    else:
        config = {"type": "annotation", "format": "bigbed" if track.kind == "bigbed" else "bed"}
        config["displayMode"] = "EXPANDED"
    return {"name": track.label, "url": track.path, **config}


def _igv_js_reference(genome: str) -> dict[str, Any]:
    """``genome`` as igv.js takes it: a genome id (hg19, hg38), or a FASTA (its ``.fai`` and, when
    bgzipped, ``.gzi`` beside it) given by a path relative to the page."""
    if not genome.lower().endswith(FASTA_SUFFIXES):
        return {"genome": genome}
    reference: dict[str, Any] = {"fastaURL": genome, "indexURL": f"{genome}.fai"}
    if genome.endswith((".gz", ".bgz")):
        reference["compressedIndexURL"] = f"{genome}.gzi"
    return {"reference": reference}


def igv_html(genome: str, locus: str | None, files: Sequence[TrackFile], igv_js: str = IGV_JS_DEFAULT) -> str:
    """A page showing the tracks with igv.js (no IGV install needed): serve the directory over
    HTTP (``python -m http.server``) and open ``igv.html``. ``igv_js`` is where the page loads
    igv.js from (a URL or a path relative to the page). Once the browser has loaded, the page
    writes the locus and each track's name and number of items in view to
    ``<pre id="varscore-status">`` (JSON)."""
    import html
    import json

    options: dict[str, Any] = {**_igv_js_reference(genome), "tracks": [_igv_js_track(t) for t in files]}
    if locus:
        options["locus"] = locus
    # "</" cannot end the script early inside the JSON
    config = json.dumps(options, indent=2).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>varscore tracks</title>
<!-- igv.js: set with 'varscore track --igv-js URL' (or edit this line) -->
<script src="{html.escape(igv_js, quote=True)}"></script>
</head>
<body>
<div id="igv"></div>
<pre id="varscore-status">loading</pre>
<script>
const options = {config};
const status = document.getElementById("varscore-status");
if (typeof igv === "undefined") {{
  status.textContent = "error: igv.js did not load from {html.escape(igv_js, quote=True)}";
}} else {{
  igv.createBrowser(document.getElementById("igv"), options).then(async (browser) => {{
    const locus = browser.currentLoci();
    const where = /^(.+):([0-9,.]+)-([0-9,.]+)$/.exec(String(Array.isArray(locus) ? locus[0] : locus));
    const shown = {{locus: locus, tracks: []}};
    for (const view of browser.trackViews) {{
      const track = view.track;
      if (!track || !track.url) continue;
      let items = null;
      if (where) {{
        const start = Math.floor(parseFloat(where[2].replace(/,/g, ""))) - 1;
        const end = Math.ceil(parseFloat(where[3].replace(/,/g, "")));
        const features = await track.getFeatures(where[1], start, end, 1);
        items = features ? features.length : 0;
      }}
      shown.tracks.push({{name: track.name, url: track.url, color: track.color || null, items: items}});
    }}
    status.textContent = JSON.stringify(shown);
  }}).catch((error) => {{ status.textContent = "error: " + error; }});
}}
</script>
</body>
</html>
"""


def fit_label(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary (a space, else a ``-``,
    ``_`` or ``.`` inside a name), so no word is cut in the middle; a single word longer than
    ``limit`` is the only text cut mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    for separators in (r" ", r"[ _.-]"):
        cuts = [m.start() for m in re.finditer(separators, text) if 0 < m.start() <= limit]
        if cuts:
            return text[: max(cuts)].rstrip(" _.-")
    return text[:limit]


def _ucsc_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if name[:1].isalpha() else f"t_{name}"


def trackdb_text(files: Sequence[TrackFile]) -> str:
    """UCSC trackDb stanzas for the binary files (bigWig, bigBed) among ``files``."""
    stanzas = []
    seen: set[str] = set()
    for track in files:
        if track.kind not in ("bigwig", "bigbed"):
            continue
        name = _ucsc_name(f"varscore_{Path(track.path).stem}")
        while name in seen:
            name += "_"
        seen.add(name)
        lines = [
            f"track {name}",
            f"bigDataUrl {track.path}",
            f"shortLabel {fit_label(track.label, SHORT_LABEL_MAX)}",
            f"longLabel {fit_label(track.description, LONG_LABEL_MAX)}",
        ]
        if track.kind == "bigwig":
            lines += [
                "type bigWig",
                "visibility full",
                "graphType bar",
                "autoScale on",
                "alwaysZero on",
                f"color {track.color}",
            ]
            if track.alt_color:
                lines.append(f"altColor {track.alt_color}")
        else:
            lines += ["type bigBed 9", "itemRgb on", "visibility pack"]
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas)


def _write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


# --- chromosome sizes and genome names ---


def vcf_contig_lengths(vcf: str | Path) -> dict[str, int]:
    """Contig lengths from the VCF header's ``##contig=<ID=..,length=..>`` lines."""
    reader = open_vcf(vcf)
    try:
        names, lengths = list(reader.seqnames), list(reader.seqlens)
    except Exception:  # cyvcf2 raises when the header has no contig lines
        return {}
    finally:
        reader.close()
    return {n: int(length) for n, length in zip(names, lengths, strict=False) if int(length) > 0}


def browser_genome(build: str | None) -> str | None:
    """The IGV genome id / UCSC database name of a build (``GRCh38`` -> ``hg38``), if known."""
    return BROWSER_GENOMES.get((build or "").strip().lower())


def file_stem(text: str) -> str:
    """A name safe to use in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


# --- reading scores ---


def effects_from_vcf(vcf: str | Path, model: str | None = None, rename: Any = None) -> tuple[list[VariantEffect], str]:
    """The ``VARSCORE`` entries of an annotated VCF, and the model that wrote them.

    ``model`` keeps only that model's entries (needed when the file holds several); ``rename``
    maps a VCF contig name to the track files' name (or None to keep it).
    """
    reader = open_vcf(vcf)
    try:
        header = reader.get_header_type(SCORE_KEY)
    except KeyError:
        reader.close()
        raise InputError(
            f"{vcf} has no INFO {SCORE_KEY} header: score it with 'varscore annotate', or pass --model to score it here."
        ) from None
    description = str(header.get("Description", "")).strip('"')
    try:
        column, n_fields = score_columns(description, vcf, ("ALLELE", "GENE", "MODEL", "DELTA"))
    except InputError:
        reader.close()
        raise
    effects: list[VariantEffect] = []
    models: set[str] = set()
    names: dict[str, str] = {}
    try:
        for number, record in enumerate(reader, start=1):
            value = record.INFO.get(SCORE_KEY)
            if not value:
                continue
            if record.CHROM not in names:
                names[record.CHROM] = (rename(record.CHROM) if rename else None) or record.CHROM
            for entry in str(value).split(","):
                parts = entry.split("|")
                if len(parts) != n_fields:
                    raise InputError(
                        f"{vcf} record {number} ({record.CHROM}:{record.POS}): {SCORE_KEY} entry "
                        f"'{entry}' has {len(parts)} fields; the header says {n_fields}."
                    )
                entry_model = parts[column["MODEL"]]
                models.add(entry_model)
                if model is not None and entry_model != model:
                    continue
                try:
                    delta = float(parts[column["DELTA"]])
                except ValueError:
                    raise InputError(
                        f"{vcf} record {number}: DELTA '{parts[column['DELTA']]}' is not a number."
                    ) from None
                effects.append(
                    VariantEffect(
                        names[record.CHROM],
                        int(record.POS),
                        record.REF,
                        parts[column["ALLELE"]],
                        parts[column["GENE"]],
                        delta,
                        record.ID or f"{record.CHROM}:{record.POS}",
                    )
                )
    finally:
        reader.close()
    if model is None and len(models) > 1:
        raise InputError(
            f"{vcf} holds scores of several models ({', '.join(sorted(models))}): choose one with --model NAME."
        )
    if model is not None and model not in models and models:
        raise InputError(f"{vcf} holds no scores of model '{model}'; it has {', '.join(sorted(models))}.")
    if not effects:
        raise InputError(f"{vcf} has no {SCORE_KEY} entries: no variant was scored, so there is nothing to draw.")
    return effects, model or next(iter(models))


def effects_from_scores(
    variants: Mapping[int, Any], scores: Mapping[int, Sequence[Any]], rename: Any = None
) -> list[VariantEffect]:
    """Effects from the scoring engine: ``variants`` by record index, ``scores`` its
    :class:`~varscore.scoring.engine.AlleleScore` lists."""
    effects = []
    for record, allele_scores in scores.items():
        variant = variants[record]
        chrom = (rename(variant.chrom) if rename else None) or variant.chrom
        name = variant.id or f"{variant.chrom}:{variant.pos}"
        for score in allele_scores:
            effects.append(
                VariantEffect(chrom, variant.pos, variant.ref, score.allele, score.gene, float(score.delta), name)
            )
    return effects


# --- coverage of track models ---


@dataclass
class Coverage:
    """Predicted coverage of one gene window: the reference and, per top variant, the ALT.

    ``reference``: ``(bins,)``; ``alternates``: ``(k, bins)``, row i for ``variants[i]``.
    ``starts``: the 0-based start of each bin; every bin is ``bin_size`` bp.
    """

    gene: str
    chrom: str
    starts: list[int]
    bin_size: int
    reference: Any
    alternates: Any
    variants: list[VariantEffect]

    def intervals(self, values: Any, chrom_size: int) -> list[Interval]:
        """Bins clipped to the contig; bins wholly off it are dropped."""
        rows = []
        for start, value in zip(self.starts, values, strict=True):
            lo, hi = max(start, 0), min(start + self.bin_size, chrom_size)
            if lo < hi and not math.isnan(float(value)):
                rows.append(Interval(self.chrom, lo, hi, float(value)))
        return rows


@dataclass(frozen=True)
class CoverageOptions:
    """What :func:`predict_coverage` draws: the ``top`` strongest SNVs of each gene, ``batch_size``
    alternate windows per forward pass, with a ``progress`` bar."""

    top: int = 3
    batch_size: int = 8
    progress: bool = False


def predict_coverage(
    genes: Sequence[Any],
    effects: Sequence[VariantEffect],
    backbone: SequenceBackbone,
    output_mode: OutputMode,
    genome: Any,
    window_size: int,
    options: CoverageOptions = CoverageOptions(),
) -> list[Coverage]:
    """For each gene: the ``track`` output of the reference window and of the window with each of
    its ``options.top`` strongest SNVs applied (one forward pass for the reference, ALTs batched)."""
    import numpy as np

    from varscore.io.progress import progress_iter
    from varscore.types import tss_window

    by_gene = effects_by_gene(effects)
    out = []
    for gene in progress_iter(genes, "track coverage", "genes", options.progress):
        # substitutions only: an indel shifts the window, so its bins no longer line up with the reference's
        gene_effects = [e for e in by_gene.get(gene.label, []) if len(e.ref) == 1 and len(e.allele) == 1]
        if not gene_effects:
            continue
        ranked = sorted(strongest_per_position(gene_effects), key=_strength, reverse=True)[: options.top]
        window = tss_window(gene, window_size)
        subs = [(window.offset(e.pos), e.allele.upper()) for e in ranked]
        result = backbone.ism(
            genome.window_sequence(window).one_hot, subs, output_mode.reduce, batch_size=options.batch_size
        )
        reference = np.asarray(result.reference, dtype=np.float64)
        n_bins = reference.shape[0]
        span = n_bins * backbone.bin_size
        if span > window_size:
            raise InputError(
                f"Model predicts {n_bins} bins of {backbone.bin_size} bp, more than its "
                f"{window_size}-bp window: cannot place the coverage on the genome."
            )
        first = window.start + (window_size - span) // 2  # cropped outputs cover the window's centre
        starts = [first + i * backbone.bin_size for i in range(n_bins)]
        chrom = genome.resolve(gene.chrom) or gene.chrom
        out.append(
            Coverage(
                gene.label,
                chrom,
                starts,
                backbone.bin_size,
                reference,
                np.asarray(result.alternates, dtype=np.float64),
                ranked,
            )
        )
    return out


# --- the command ---


@dataclass
class _Scored:
    effects: list[VariantEffect]
    model: str
    chrom_sizes: dict[str, int]
    genome: str | None
    lines: list[str]
    coverage: list[Coverage] = field(default_factory=list)


def _fasta_sizes(genome: Any) -> dict[str, int]:
    return {name: int(length) for name, length in genome.lengths.items()}


def _score_with_model(job: TrackJob) -> _Scored:
    """Score ``job.vcf`` through :func:`varscore.scoring.gene_mode.score_vcf`, as ``varscore annotate``
    does (same checks, plan, engine, ensembles)."""
    from varscore.genome.fasta import Genome, load_genes
    from varscore.io.vcf_prepare import prepared_vcf
    from varscore.models.bundle import load_bundle
    from varscore.scoring.gene_mode import ScoringJob, score_vcf
    from varscore.scoring.selection import selected_input

    bundle = load_bundle(job.model)  # type: ignore[arg-type]  # not None: checked by run_tracks
    fasta_path = Path(job.fasta) if job.fasta else bundle.reference_fasta
    genome = Genome(fasta_path) if fasta_path is not None else None
    genes = load_genes(job.genes) if job.genes else bundle.genes
    build = browser_genome(bundle.manifest.get("genome_build"))
    rename = genome.resolve if genome is not None else None
    sizes = _fasta_sizes(genome) if genome is not None else vcf_contig_lengths(job.vcf)
    scoring = ScoringJob(
        job.vcf,
        job.model,
        fasta=Path(job.fasta) if job.fasta else None,
        batch_size=job.batch_size,
        device=job.device,
        bf16=job.bf16,
        check_ref=job.check_ref,
        progress=job.progress,
        cache=job.cache,
    )
    with prepared_vcf(job.vcf) as whole:
        prepared, genes = selected_input(
            whole, job.selection, genes, None if bundle.takes_genotypes else bundle.window_size
        )
        scores = score_vcf(prepared, bundle, genes, scoring)
    effects = effects_from_scores(scores.variants, scores.result.scores, rename)
    if scores.genome is not None:
        genome = scores.genome
    shown = str(genome.path.resolve()) if genome is not None else None
    scored = _Scored(effects, bundle.name, sizes, build or shown, scores.result.summary.lines())
    output_mode = bundle.output_mode()
    if scores.plan is not None and genome is not None and output_mode.name == "track" and job.coverage_top > 0:
        scored_genes = [scores.plan.genes[g] for g in scores.plan.jobs]
        scored.coverage = predict_coverage(
            scored_genes,
            effects,
            bundle.sequence_backbone(job.device, job.bf16),
            output_mode,
            genome,
            bundle.window_size,
            CoverageOptions(job.coverage_top, job.batch_size, job.progress),
        )
    return scored


def _read_scored(vcf: Path, model: str | None, fasta: Path | None) -> _Scored:
    from varscore.genome.fasta import Genome

    genome = Genome(fasta) if fasta else None
    if model is not None and Path(model).is_dir():  # a bundle directory: its scores carry the bundle's name
        from varscore.models.bundle import load_bundle

        model = load_bundle(model).name
    effects, name = effects_from_vcf(vcf, model, genome.resolve if genome else None)
    sizes = _fasta_sizes(genome) if genome else vcf_contig_lengths(vcf)
    lines = [f"scores read from {vcf}: {len(effects)} allele x gene entries of model {name}"]
    # the build recorded by 'varscore annotate' (##varscore_model=<ID=..,Build=..>), else the FASTA
    build = browser_genome(header_models(vcf).get(name, {}).get("Build"))
    return _Scored(effects, name, sizes, build or (str(genome.path.resolve()) if genome else None), lines)


def _locus(effects: Sequence[VariantEffect], chrom_sizes: Mapping[str, int], pad: int = 500) -> str | None:
    """IGV locus (1-based, inclusive): the scored positions of the gene of the strongest variant."""
    if not effects:
        return None
    top = max(effects, key=_strength)
    positions = [e.pos for e in effects if e.chrom == top.chrom and e.gene == top.gene]
    size = chrom_sizes.get(top.chrom, max(positions) + pad)
    return f"{top.chrom}:{max(min(positions) - pad, 1)}-{min(max(positions) + pad, size)}"


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``bigwig,bed`` -> ``["bigwig", "bed"]``; unknown names fail with the allowed ones."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip().lower() for f in items if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(
            f"Unknown track format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)} "
            "(comma-separated, e.g. bigwig,bed)."
        )
    return sorted(set(formats), key=FORMATS.index)


def run_tracks(job: TrackJob) -> TrackResult:
    """Score ``job.vcf`` with ``job.model`` (or read its ``VARSCORE`` entries) and write browser
    tracks, an IGV session and, for binary tracks on a UCSC genome, a track hub to ``job.out_dir``."""
    chosen = parse_formats(job.formats)
    if job.top < 0 or job.coverage_top < 0:
        raise InputError(f"--top and --coverage-top must be >= 0; got {job.top} and {job.coverage_top}.")
    vcf = Path(job.vcf)
    if job.from_vcf or job.model is None:
        if job.selection.active:
            raise InputError(
                "--regions/--genes-only pick records to score: to draw part of a scored VCF, cut it first."
            )
        if job.model is None and not job.from_vcf and not _has_scores(vcf):
            raise InputError(f"{vcf} holds no {SCORE_KEY} scores: pass --model to score it.")
        fasta_path = Path(job.fasta) if job.fasta else None
        scored = _read_scored(vcf, str(job.model) if job.model is not None else None, fasta_path)
    else:
        scored = _score_with_model(job)
    if not scored.effects:
        raise InputError(f"No variant of {vcf} was scored ({'; '.join(scored.lines)}): there is nothing to draw.")
    if not scored.chrom_sizes:
        raise InputError(
            f"No contig lengths for the tracks: {vcf} has no ##contig lines with lengths and no "
            "FASTA is known. Pass the reference with --fasta."
        )
    session_genome = job.genome or scored.genome
    if not session_genome:
        raise InputError(
            "Cannot tell which genome the tracks are on (the VCF names no model build in ##varscore_model): "
            "pass --genome (e.g. hg38) or --fasta."
        )
    out = Path(job.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"Output {out} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    files = _write_tracks(out, scored, chosen, job.top)
    session_files = _preferred(files)
    session = out / "igv_session.xml"
    # a genome id (hg19, hg38) where the build is known; else the FASTA, relative to the session
    session_path = (
        os.path.relpath(session_genome, out.resolve()) if Path(session_genome).is_absolute() else session_genome
    )
    locus = _locus(scored.effects, scored.chrom_sizes)
    _write_text(session, igv_session_xml(session_path, locus, session_files))
    _write_text(out / "igv.html", igv_html(session_path, locus, session_files, job.igv_js))
    lines = [
        *scored.lines,
        f"positions drawn: {len(strongest_per_position(scored.effects))}",
        f"genes drawn: {len(effects_by_gene(scored.effects))}",
    ]
    trackdb = None
    stanzas = trackdb_text(files)
    if stanzas:
        trackdb = out / "trackDb.txt"
        _write_text(trackdb, stanzas)
        ucsc = browser_genome(session_genome) or (
            session_genome if session_genome in BROWSER_GENOMES.values() else None
        )
        if ucsc:
            hub = (
                f"hub varscore_{_ucsc_name(scored.model)}\n"
                f"shortLabel {_hub_short_label(scored.model)}\n"
                f"longLabel {fit_label(f'varscore variant effects: model {scored.model}', LONG_LABEL_MAX)}\n"
                "genomesFile genomes.txt\n"
            )
            if job.hub_email:
                hub += f"email {job.hub_email}\n"
            else:
                lines.append("warning: hub.txt has no email line; a public UCSC hub needs a contact: pass --hub-email")
            _write_text(out / "hub.txt", hub)
            _write_text(out / "genomes.txt", f"genome {ucsc}\ntrackDb trackDb.txt\n")
        else:
            lines.append(f"no UCSC hub.txt: genome '{session_genome}' is no UCSC database (pass --genome hg38|hg19)")
    else:
        lines.append("no UCSC trackDb.txt: UCSC hubs need binary tracks (add --format bigwig)")
    return TrackResult(out, files, session, trackdb, lines)


def _hub_short_label(model: str) -> str:
    """``varscore MODEL`` when it fits UCSC's 17 characters, else the model name (cut between its
    words if it must be)."""
    full = f"varscore {model}"
    return full if len(full) <= SHORT_LABEL_MAX else fit_label(model, SHORT_LABEL_MAX)


def _has_scores(vcf: Path) -> bool:
    reader = open_vcf(vcf)
    try:
        return f"ID={SCORE_KEY}," in reader.raw_header
    finally:
        reader.close()


def _preferred(files: Sequence[TrackFile]) -> list[TrackFile]:
    """One file per track for the IGV session: binary (indexed) formats first."""
    rank = {"bigwig": 0, "bigbed": 0, "bedgraph": 1, "bed": 1}
    chosen: dict[str, TrackFile] = {}
    for track in files:
        key = track.path.rsplit(".", 1)[0]
        if key not in chosen or rank[track.kind] < rank[chosen[key].kind]:
            chosen[key] = track
    return list(chosen.values())


def _write_tracks(out: Path, scored: _Scored, formats: Sequence[str], top: int) -> list[TrackFile]:
    sizes = scored.chrom_sizes
    files: list[TrackFile] = []
    signal: list[tuple[str, list[Interval], str, str, str | None]] = []  # stem, rows, label, description, alt colour
    model = scored.model
    signal.append(
        (
            "ism.merged",
            position_intervals(scored.effects),
            "ISM merged",
            f"{model}: ISM delta per position (largest |delta| of all genes)",
            DECREASE_RGB,
        )
    )
    stems: set[str] = set()
    for gene, gene_effects in effects_by_gene(scored.effects).items():
        stem = _unique(f"ism.{file_stem(gene)}", stems)
        signal.append(
            (
                stem,
                position_intervals(gene_effects),
                f"ISM {gene}",
                f"{model}: ISM delta for {gene}, largest |delta| over alleles",
                DECREASE_RGB,
            )
        )
    for cov in scored.coverage:
        size = sizes.get(cov.chrom)
        if size is None:
            raise InputError(f"Contig '{cov.chrom}' of gene {cov.gene} has no known length.")
        stem = _unique(f"coverage.{file_stem(cov.gene)}", stems)
        signal.append(
            (
                f"{stem}.ref",
                cov.intervals(cov.reference, size),
                f"{cov.gene} ref cov",
                f"{model}: predicted coverage of the reference window of {cov.gene}",
                None,
            )
        )
        for rank, (variant, alt) in enumerate(zip(cov.variants, cov.alternates, strict=True), start=1):
            what = f"{variant.name} {variant.ref}>{variant.allele}"
            signal.append(
                (
                    f"{stem}.top{rank}.alt",
                    cov.intervals(alt, size),
                    f"{cov.gene} alt{rank} cov",
                    f"{model}: predicted coverage of {cov.gene} with {what} (rank {rank})",
                    None,
                )
            )
            signal.append(
                (
                    f"{stem}.top{rank}.delta",
                    cov.intervals(alt - cov.reference, size),
                    f"{cov.gene} delta{rank} cov",
                    f"{model}: predicted coverage change (alt - ref) of {cov.gene} from {what}",
                    DECREASE_RGB,
                )
            )
    for stem, rows, label, description, alt_color in signal:
        color = INCREASE_RGB if alt_color else "0,0,0"
        if "bigwig" in formats:
            write_bigwig(out / f"{stem}.bw", rows, sizes)
            files.append(TrackFile(f"{stem}.bw", "bigwig", label, description, color, alt_color))
        if "bedgraph" in formats:
            write_bedgraph(out / f"{stem}.bedGraph", rows, sizes, label, description)
            files.append(TrackFile(f"{stem}.bedGraph", "bedgraph", label, description, color, alt_color))
    items = top_variants(scored.effects, top)
    shown = f"top {top} per gene" if top else "all scored variants"
    description = f"{model}: {shown} by |delta|; red raises, blue lowers expression"
    if "bigwig" in formats:
        write_bigbed(out / "top_variants.bb", items, sizes)
        files.append(TrackFile("top_variants.bb", "bigbed", "top variants", description, INCREASE_RGB))
    if "bed" in formats:
        write_bed9(out / "top_variants.bed", items, "top variants", description)
        files.append(TrackFile("top_variants.bed", "bed", "top variants", description, INCREASE_RGB))
    return files


def _unique(stem: str, taken: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate)
    return candidate
