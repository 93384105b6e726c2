"""Model bundles as a user receives them: verified on every load, installed only under plain names
inside the cache, refused when tampered with, oversized or malformed (one-line errors), portable
between machines (the reference recorded by identity, no absolute path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import missing_tool, write_fasta, write_vcf
from varscore.cli import cli
from varscore.errors import BundleError
from varscore.examples import data_dir, models_dir
from varscore.genome.builds import infer_build
from varscore.genome.reference import ReferenceRecord, contig_md5s
from varscore.io.integrity import sha256
from varscore.models.bundle import MANIFEST, WEIGHTS, BundleMetadata, install_bundle, load_bundle, save_bundle
from varscore.scoring.gene_mode import ScoringJob, run_scoring


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test installs into (and caches verdicts in) its own cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("VARSCORE_TRUST_UNVERIFIED", raising=False)
    monkeypatch.delenv("VARSCORE_ALLOW_LARGE_MODELS", raising=False)
    return cache


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code not in (0, None) and "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _copy(bundle: Path, where: Path) -> Path:
    target = where / bundle.name
    shutil.copytree(bundle, target)
    return target


def _edit_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    for dotted, value in changes.items():
        node = manifest
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is KeyError:
            node.pop(last, None)
        else:
            node[last] = value
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _annotate(world: dict, bundle: Path, *extra: str):
    ref = world["seqs"]["chr1"][149]
    vcf = write_vcf(world["tmp"] / "in.vcf", [("chr1", 150, ref, "C" if ref == "A" else "A")])
    return CliRunner().invoke(
        cli, [*extra, "annotate", str(vcf), "-m", str(bundle), "-o", str(world["tmp"] / "out.vcf")]
    )


# -- install: names never leave the cache -------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "../../victim", "/tmp/victim", "a/b", "x\ny", ""])
def test_install_refuses_names_that_are_not_plain(toy_world, private_cache, name):
    victim = toy_world["tmp"] / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (private_cache / "varscore" / "models" / "other").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["models", "install", str(toy_world["bundle"]), "--name", name])
    _one_line_error(result, "name")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert (private_cache / "varscore" / "models" / "other").is_dir()


def test_install_copies_a_valid_bundle_and_it_loads(toy_world, private_cache):
    installed = install_bundle(toy_world["bundle"], name="toy.v1")
    assert installed == private_cache / "varscore" / "models" / "toy.v1"
    assert load_bundle(installed).name == "toy-model"
    assert sha256(installed / WEIGHTS) == sha256(toy_world["bundle"] / WEIGHTS)


def test_install_refuses_a_symlinked_weights_file(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    (bundle / WEIGHTS).unlink()
    os.symlink("/dev/zero", bundle / WEIGHTS)
    _one_line_error(CliRunner().invoke(cli, ["models", "install", str(bundle), "--name", "z"]), "symbolic link")


def test_install_refuses_a_bundle_that_annotate_would_reject(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    _edit_manifest(bundle, output_mode={"name": "no-such-mode", "params": {}})
    _one_line_error(CliRunner().invoke(cli, ["models", "install", str(bundle), "--name", "z"]))


# -- weights verified on every load --------------------------------------------------------------


def test_a_flipped_byte_in_the_weights_stops_the_run(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    data = bytearray((bundle / WEIGHTS).read_bytes())
    data[-1] ^= 0x01
    (bundle / WEIGHTS).write_bytes(bytes(data))
    _one_line_error(_annotate(toy_world, bundle), "Checksum mismatch", WEIGHTS)
    assert not (toy_world["tmp"] / "out.vcf").exists()


def test_a_changed_file_is_hashed_again_after_a_cached_verdict(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    assert _annotate(toy_world, bundle).exit_code == 0  # verdict cached
    data = bytearray((bundle / WEIGHTS).read_bytes())
    data[-1] ^= 0x01
    (bundle / WEIGHTS).write_bytes(bytes(data))  # same size: the mtime (and content) changed
    _one_line_error(_annotate(toy_world, bundle), "Checksum mismatch")


def test_the_verdict_cache_hashes_an_unchanged_file_once(toy_world, monkeypatch):
    import varscore.io.integrity as integrity

    calls = []
    real = integrity.sha256
    monkeypatch.setattr(integrity, "sha256", lambda path: calls.append(path) or real(path))
    load_bundle(toy_world["bundle"])
    load_bundle(toy_world["bundle"])
    assert len([c for c in calls if Path(c).name == WEIGHTS]) == 1


def test_a_bundle_without_checksums_needs_trust(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    _edit_manifest(bundle, files=KeyError, provenance__weights_sha256=KeyError)
    _one_line_error(_annotate(toy_world, bundle), "records no checksums", "--trust-unverified")
    _one_line_error(CliRunner().invoke(cli, ["models", "install", str(bundle), "--name", "z"]), "no checksums")
    assert _annotate(toy_world, bundle, "--trust-unverified").exit_code == 0


def test_an_extra_weights_file_the_manifest_does_not_cover_is_refused(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    shutil.copyfile(bundle / WEIGHTS, bundle / "weights.r1.safetensors")
    _one_line_error(_annotate(toy_world, bundle), "weights.r1.safetensors")


def test_a_missing_weights_file_is_a_one_line_error(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    (bundle / WEIGHTS).unlink()
    _one_line_error(_annotate(toy_world, bundle), "lacks weights.safetensors")
    _one_line_error(CliRunner().invoke(cli, ["models", "install", str(bundle), "--name", "z"]), "lacks")


# -- manifest paths stay inside the bundle ---------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside.tsv", "/etc/passwd", "sub/../../x"])
def test_files_named_outside_the_bundle_are_refused(toy_world, tmp_path, path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    _edit_manifest(bundle, files={WEIGHTS: sha256(bundle / WEIGHTS), path: "0" * 64})
    _one_line_error(_annotate(toy_world, bundle), "outside the bundle")


def test_folds_named_outside_the_bundle_are_refused(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    _edit_manifest(bundle, folds={"file": "../../folds.tsv", "replicate": 0})
    _one_line_error(_annotate(toy_world, bundle), "folds.file", "outside the bundle")


# -- malformed manifests: one line naming the field -----------------------------------------------

MALFORMED = {
    "schema_string": ({"schema_version": "1"}, "schema_version", "must be an integer; got a string"),
    "schema_future": ({"schema_version": 9}, "schema version 9"),
    "backbone_list": ({"backbone": ["toy"]}, "'backbone' must be an object"),
    "backbone_missing": ({"backbone": KeyError}, "lacks the 'backbone' field"),
    "params_list": ({"backbone__params": [1, 2]}, "'backbone.params' must be an object"),
    "output_mode_str": ({"output_mode": "scalar"}, "'output_mode' must be an object"),
    "window_str": ({"window_size": "128"}, "'window_size' must be a positive integer"),
    "window_negative": ({"window_size": -5}, "'window_size' must be a positive integer"),
    "genes_object": ({"genes": {"G1": 1}}, "'genes' must be a list"),
    "gene_tss_str": ({"genes": [{"gene_id": "G", "chrom": "chr1", "tss": "200", "strand": "+"}]}, "genes[0].tss"),
    "gene_tss_zero": ({"genes": [{"gene_id": "G", "chrom": "chr1", "tss": 0, "strand": "+"}]}, "tss > 0"),
    "gene_missing_key": ({"genes": [{"gene_id": "G", "chrom": "chr1"}]}, "genes[0] must have"),
    "gene_strand": ({"genes": [{"gene_id": "G", "chrom": "chr1", "tss": 5, "strand": "x"}]}, "strand"),
    "build_number": ({"genome_build": 19}, "'genome_build' must be a string or null"),
    "files_list": ({"files": ["weights.safetensors"]}, "'files' must be an object"),
    "unknown_param": ({"backbone__params__bogus": 1}, "unknown option(s) bogus"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifests_are_one_line_errors(toy_world, tmp_path, case):
    changes, *fragments = MALFORMED[case]
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    _edit_manifest(bundle, **changes)
    _one_line_error(_annotate(toy_world, bundle), *fragments)
    _one_line_error(CliRunner().invoke(cli, ["models", "install", str(bundle), "--name", "z"]))


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00garbage", b"{not json", b"[1, 2, 3]", b"null"])
def test_manifests_that_are_not_json_objects_are_one_line_errors(toy_world, tmp_path, content):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    (bundle / MANIFEST).write_bytes(content)
    _one_line_error(_annotate(toy_world, bundle), MANIFEST)


def test_a_linear_weights_file_of_random_bytes_is_a_one_line_error(tmp_path):
    bundle = _copy(models_dir() / "elastic-net-demo", tmp_path)
    (bundle / WEIGHTS).write_bytes(os.urandom(4096))
    _edit_manifest(
        bundle, files={**json.loads((bundle / MANIFEST).read_text())["files"], WEIGHTS: sha256(bundle / WEIGHTS)}
    )
    vcf = data_dir() / "cohort.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(bundle), "-o", str(tmp_path / "o.vcf.gz")])
    _one_line_error(result, WEIGHTS)


# -- sizes bounded before anything is allocated ----------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "field"),
    [
        ("depth", 100_000, "depth=100,000"),
        ("window_size", 2**31, "window_size=2,147,483,648"),
        ("dim", 196_608, "dim=196,608"),
        ("output_heads", {"human": 10**9}, "output_heads['human']"),
    ],
)
def test_oversized_enformer_manifests_are_refused_naming_the_field(tmp_path, param, value, field):
    bundle = _copy(models_dir() / "variformer-demo", tmp_path)
    _edit_manifest(bundle, **{f"backbone__params__{param}": value})
    vcf = data_dir() / "cohort.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(bundle), "-o", str(tmp_path / "o.vcf.gz")])
    _one_line_error(result, field, "--allow-large-models")


# -- portable bundles: no absolute path, reference by identity -------------------------------------


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("name", ["variformer-demo", "elastic-net-demo"])
def test_demo_manifests_hold_no_absolute_path_and_name_their_reference(name):
    manifest = json.loads((models_dir() / name / MANIFEST).read_text())
    assert not [s for s in _strings(manifest) if os.path.isabs(s)]
    assert manifest["genome_build"] == "hg19" and manifest["reference"]["build"] == "hg19"
    assert manifest["reference"]["contigs"] == [
        {
            "name": "chr20",
            "length": 63_025_520,
            "md5": contig_md5s(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")["chr20"],
        }
    ]
    assert set(manifest["files"]) == {"weights.safetensors", "folds.tsv"}


def test_saved_bundles_record_no_absolute_path(toy_world, tmp_path):
    from tests.toy_plugin import ToyBackbone
    from varscore_plugins.outputs import ScalarOutput

    (tmp_path / "far" / "away" / "deep" / "down").mkdir(parents=True)
    fasta = write_fasta(tmp_path / "far" / "away" / "deep" / "down" / "genome.fa", toy_world["seqs"])
    target = save_bundle(
        tmp_path / "models" / "m",
        name="m",
        backbone=ToyBackbone().build(),
        output_mode=ScalarOutput(track=1),
        genes=toy_world["genes"],
        about=BundleMetadata(
            reference_fasta=fasta, provenance={"output_dir": str(tmp_path / "training"), "inputs": [str(fasta)]}
        ),
    )
    manifest = json.loads((target / MANIFEST).read_text())
    assert not [s for s in _strings(manifest) if os.path.isabs(s)]
    assert manifest["provenance"]["output_dir"] == "training" and manifest["provenance"]["inputs"] == ["genome.fa"]
    assert (
        manifest["reference"]["name"] == "genome.fa"
        and manifest["reference"]["relative_path"] == "../../far/away/deep/down/genome.fa"
    )


def test_the_reference_md5_equals_samtools_dict():
    samtools = shutil.which("samtools")
    if samtools is None:
        missing_tool("samtools", "apt-get install samtools")
    fasta = data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz"
    text = subprocess.run([samtools, "dict", str(fasta)], capture_output=True, text=True, check=True).stdout
    m5 = {f.split(":")[1]: f.split(":", 1)[1] for f in text.split() if f.startswith(("SN:", "M5:"))}
    fields = dict(
        item.split(":", 1) for line in text.splitlines() if line.startswith("@SQ") for item in line.split("\t")[1:]
    )
    assert m5 and contig_md5s(fasta)[fields["SN"]] == fields["M5"]


def test_the_reference_is_found_through_the_fasta_dir_and_checked(toy_world, tmp_path, monkeypatch):
    bundle = _copy(toy_world["bundle"], tmp_path / "a" / "b" / "moved")  # the relative hint misses ref.fa
    assert load_bundle(bundle).reference_fasta is None
    _one_line_error(_annotate(toy_world, bundle), "needs ref.fa", "VARSCORE_FASTA_DIR")
    monkeypatch.setenv("VARSCORE_FASTA_DIR", str(toy_world["fasta"].parent))
    assert load_bundle(bundle).reference_fasta == toy_world["fasta"]
    ref = toy_world["seqs"]["chr1"][149]
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 150, ref, "C" if ref == "A" else "A")])
    summary = run_scoring(ScoringJob(vcf, bundle, tmp_path / "out.vcf"))
    assert "records written: 1" in summary.lines()  # the run completes


def test_a_fasta_of_another_build_is_refused(toy_world, tmp_path):
    longer = {**toy_world["seqs"], "chr1": toy_world["seqs"]["chr1"] + "ACGT" * 5}
    other = write_fasta(tmp_path / "other.fa", longer)
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, longer["chr1"][9], "N")])
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "--fasta", str(other)])
    _one_line_error(result, "not the model's reference", "chr1 is 1,020 bp there and 1,000 bp")


def test_builds_are_inferred_from_contig_lengths():
    assert infer_build({"chr20": 63_025_520}) == "hg19"
    assert infer_build({"20": 64_444_167, "X": 156_040_895}) == "hg38"
    assert infer_build({"chr20": 64_444_167, "chr1": 249_250_621}) is None  # contradictory
    assert infer_build({"chrZ": 1000}) is None
    record = ReferenceRecord.of(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    assert record.build == "hg19"


def test_models_info_summarises_and_json_gives_the_manifest():
    runner = CliRunner()
    text = runner.invoke(cli, ["models", "info", "variformer-demo"])
    assert text.exit_code == 0, text.output
    for fragment in (
        "backbone:     enformer",
        "window:       16,384 bp",
        "genome build: hg19",
        "genes:        5 (SNAP25",
        "weights.safetensors sha256 ",
    ):
        assert fragment in text.output
    manifest = json.loads(runner.invoke(cli, ["models", "info", "variformer-demo", "--json"]).output)
    assert manifest == json.loads((models_dir() / "variformer-demo" / MANIFEST).read_text())


def test_saving_over_a_directory_that_is_not_a_bundle_is_refused(toy_world, tmp_path):
    from tests.toy_plugin import ToyBackbone
    from varscore_plugins.outputs import ScalarOutput

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(Exception, match="not a model bundle"):
        save_bundle(
            home, name="m", backbone=ToyBackbone().build(), output_mode=ScalarOutput(track=1), genes=toy_world["genes"]
        )
    assert (home / "thesis.tex").read_text() == "years of work"


def test_bundle_error_for_an_unknown_file_type(toy_world, tmp_path):
    bundle = _copy(toy_world["bundle"], tmp_path / "src")
    os.mkfifo(bundle / "pipe")
    with pytest.raises(BundleError, match="not a regular file"):
        load_bundle(bundle)


def test_the_typed_manifest_reads_the_demo_bundle_and_refuses_wrong_types(tmp_path: Path) -> None:
    from varscore.models.bundle import Manifest

    bundle = load_bundle(models_dir() / "variformer-demo")
    raw = bundle.manifest
    spec = bundle.spec
    assert spec.backbone.name == raw["backbone"]["name"] == "enformer"
    assert spec.backbone.params == raw["backbone"]["params"]
    assert bundle.window_size == raw["window_size"] and spec.bin_size == raw["bin_size"]
    assert spec.output_mode.name == raw["output_mode"]["name"] and spec.genome_build == "hg19"
    assert [g.gene_id for g in spec.genes] == [g["gene_id"] for g in raw["genes"]]
    assert spec.held_out("test") == raw["people"]["test"] and len(spec.held_out("train")) == len(raw["people"]["train"])
    assert spec.trained_genes == set(raw["train_genes"])
    carried = bundle.carried_folds()
    assert (
        carried is not None
        and carried[0] == bundle.path / raw["folds"]["file"]
        and carried[1] == raw["folds"]["replicate"]
    )
    for field, value in (
        ("people", ["SIM0001"]),
        ("train_genes", "SNAP25"),
        ("folds", {"file": "f.tsv", "replicate": "0"}),
    ):
        broken = {**raw, field: value}
        with pytest.raises(BundleError, match=field):
            Manifest.from_dict(broken, "test manifest")
    escaping = {**raw, "folds": {"file": "../../etc/passwd", "replicate": 0}}
    target = tmp_path / "bundle"
    shutil.copytree(bundle.path, target)
    (target / MANIFEST).write_text(json.dumps(escaping))
    from varscore.models.bundle import ModelBundle

    with pytest.raises(BundleError):
        ModelBundle(target, escaping).carried_folds()
