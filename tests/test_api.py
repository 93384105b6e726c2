"""The one-call Python API (varscore.score_variants): equal to what ``varscore annotate`` writes,
equal to a plain forward-pass loop for an in-memory torch module, the same table for every form
of input, one-line errors, and the runnable example of docs/python-api.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from enformer_pytorch import Enformer, EnformerConfig

import varscore
from tests.conftest import random_sequence, read_vcf_lines, write_fasta, write_vcf
from varscore.cli import cli
from varscore.genome.sequence import one_hot
from varscore.io.vcf import SCORE_KEY, SKIP_KEY, format_float
from varscore.types import Gene

WINDOW = 2048
DOCS = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def _records(seq: str) -> list[tuple[str, int, str, str]]:
    """Records around two genes (TSS 3000 and 3500; windows [1975, 4023) and [2475, 4523), 0-based)."""

    def base(pos: int) -> str:
        return seq[pos - 1]

    def other(pos: int) -> str:
        return "ACGT"[("ACGT".index(base(pos)) + 1) % 4]

    return [
        ("chr1", 100, base(100), other(100)),  # outside every window
        ("chr1", 2100, base(2100), other(2100)),  # G1 only
        ("chr1", 3000, base(3000), ",".join(b for b in "ACGT" if b != base(3000))[:3]),  # two ALTs, both windows
        ("chr1", 3010, base(3010), base(3010) + "GT"),  # insertion, both windows
        ("chr1", 3020, seq[3019:3023], base(3020)),  # deletion of 3 bases, both windows
        ("chr1", 3030, other(3030), base(3030)),  # REF differs from the FASTA
        ("chr1", 4400, base(4400), other(4400)),  # G2 only
        ("chr1", 7000, base(7000), other(7000)),  # outside
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A FASTA, two genes, a tiny Enformer bundle and a VCF with every kind of record."""
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.enformer import EnformerBackbone, tiny_params
    from varscore_plugins.outputs import ScalarOutput

    tmp = tmp_path_factory.mktemp("api")
    seq = random_sequence(np.random.default_rng(7), 8000)
    fasta = write_fasta(tmp / "ref.fa", {"chr1": seq})
    genes = [Gene("ENSG1", "chr1", 3000, "+", "GENEA"), Gene("ENSG2", "chr1", 3500, "-", "GENEB")]
    backbone = EnformerBackbone(**tiny_params(window_size=WINDOW, depth=1, seed=3)).build()
    bundle = save_bundle(
        tmp / "tiny-enformer",
        name="tiny-enformer",
        backbone=backbone,
        output_mode=ScalarOutput(),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    records = _records(seq)
    vcf = write_vcf(tmp / "in.vcf", records, contigs={"chr1": len(seq)})
    return {"tmp": tmp, "seq": seq, "fasta": fasta, "genes": genes, "bundle": bundle, "records": records, "vcf": vcf}


def _values(column: pd.Series) -> list[Any]:
    """A column's values with every missing value as None (pandas, pyarrow and numpy spell it differently)."""
    return [None if pd.isna(x) else x for x in column.astype(object)]


def _info(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split("\t")[7].split(";") if "=" in kv)


def test_bundle_scores_equal_what_annotate_writes(world: dict[str, Any]) -> None:
    out = world["tmp"] / "annotated.vcf"
    result = CliRunner().invoke(cli, ["annotate", str(world["vcf"]), "-m", str(world["bundle"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written: dict[tuple[int, str, str], tuple[str, str, str]] = {}
    reasons: dict[int, str] = {}
    body = [line for line in read_vcf_lines(out) if not line.startswith("#")]
    for record, line in enumerate(body):
        info = _info(line)
        reasons[record] = info.get(SKIP_KEY, "outside_windows") if SCORE_KEY not in info else ""
        for entry in info.get(SCORE_KEY, "").split(",") if SCORE_KEY in info else []:
            allele, gene, _, ref_pred, alt_pred, delta, _ = entry.split("|")
            written[(record, allele, gene)] = (ref_pred, alt_pred, delta)

    table = varscore.score_variants(world["bundle"], world["vcf"])
    assert list(table.columns) == list(varscore.api.GENE_COLUMNS)
    scored = table[table["skip"].isna()]
    got = {
        (int(r.record), r.alt, r.gene_name or r.gene_id): tuple(
            format_float(v) for v in (r.ref_pred, r.alt_pred, r.delta)
        )
        for r in scored.itertuples()
    }
    assert got == written
    assert len(got) == len(scored) == 1 + 2 * 2 + 2 + 2 + 1  # G1; multi-allelic x 2 genes; ins; del; G2
    skipped = table[table["skip"].notna()]
    assert dict(zip(skipped["record"], skipped["skip"], strict=True)) == {r: s for r, s in reasons.items() if s}
    assert set(skipped["skip"]) == {"outside_windows", "ref_mismatch"}
    assert skipped[["ref_pred", "alt_pred", "delta"]].isna().all().all()


def test_variant_mode_equals_the_parquet_detail_of_annotate(world: dict[str, Any]) -> None:
    out, detail = world["tmp"] / "centred.vcf", world["tmp"] / "detail.parquet"
    args = ["annotate", str(world["vcf"]), "-m", str(world["bundle"]), "-o", str(out), "--mode", "variant"]
    result = CliRunner().invoke(cli, [*args, "--detail", str(detail), "--stats", "SUM,D2"])
    assert result.exit_code == 0, result.output
    options = varscore.ScoringOptions(stats=("SUM", "D2"))
    table = varscore.score_variants(str(world["bundle"]), world["vcf"], mode="variant", options=options)
    assert list(table.columns) == list(varscore.api.CENTRED_COLUMNS)
    expected = pd.read_parquet(detail).drop(columns=["id"])
    got = table[table["skip"].isna()].drop(columns=["skip"]).reset_index(drop=True)
    assert len(got) == len(expected) > 0
    for column in expected.columns:
        if column in ("ref_value", "alt_value", "score"):
            np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-6, atol=1e-9)
        else:
            assert _values(got[column]) == _values(expected[column]), column
    assert table.loc[table["skip"].notna(), "skip"].tolist() == ["ref_mismatch"]


def _tiny_enformer(seed: int = 5) -> torch.nn.Module:
    """A tiny enformer-pytorch Enformer (dim 48, depth 1, one head, 4 human tracks, every bin), with
    random batch-norm statistics and a sharpened stem so that one base moves the centre bin
    measurably (~1e-4; at its random initialisation the effects are below float32 resolution)."""
    torch.manual_seed(seed)
    config = EnformerConfig(
        dim=48, depth=1, heads=1, attn_dim_key=8, num_downsamples=7, dim_divisible_by=8, output_heads={"human": 4}
    )
    config.target_length = -1
    model = Enformer(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.stem[0].weight.mul_(50.0)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def test_in_memory_enformer_equals_a_plain_forward_loop(world: dict[str, Any]) -> None:
    module = _tiny_enformer()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    seq, genes = world["seq"], world["genes"]
    snvs = [
        ("chr1", pos, seq[pos - 1], "ACGT"[("ACGT".index(seq[pos - 1]) + step) % 4])
        for pos, step in ((2990, 1), (3000, 2), (3001, 3), (3040, 1), (3480, 2), (3510, 1), (100, 1))
    ]
    model = varscore.TorchModel(
        module, "enformer", window_size=WINDOW, params={"head": "pretrained"}, output_params={"track": 2}
    )
    table = varscore.score_variants(model, snvs, fasta=world["fasta"], genes=genes)
    scored = table[table["skip"].isna()]
    assert table["skip"].dropna().tolist() == ["outside_windows"]  # pos 100
    assert len(scored) == 2 * 6  # both windows hold 2990..3510

    by_id = {g.gene_id: g for g in genes}
    centre = WINDOW // 128 // 2  # the scalar output's centre bin
    for row in scored.itertuples():
        start = by_id[row.gene_id].tss - 1 - WINDOW // 2  # the TSS base at index L // 2
        ref_seq = seq[start : start + WINDOW]  # inside the contig here
        alt_seq = ref_seq[: row.pos - 1 - start] + row.alt + ref_seq[row.pos - start :]
        batch = torch.from_numpy(np.stack([one_hot(ref_seq), one_hot(alt_seq)]))
        with torch.no_grad():
            out = module(batch)["human"][:, centre, 2].double().numpy()
        assert row.ref_pred == pytest.approx(out[0], rel=1e-6, abs=1e-7)
        assert row.alt_pred == pytest.approx(out[1], rel=1e-6, abs=1e-7)
        assert row.delta == pytest.approx(out[1] - out[0], abs=2e-7)
        assert row.gene_name == by_id[row.gene_id].name
    assert scored["delta"].abs().max() > 1e-4  # the comparison is not of zeros
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # the module is untouched


def test_the_three_forms_of_variants_give_the_same_table(world: dict[str, Any]) -> None:
    records = world["records"]
    frame = pd.DataFrame(records, columns=["chrom", "pos", "ref", "alt"])
    from_vcf = varscore.score_variants(world["bundle"], world["vcf"])
    from_frame = varscore.score_variants(world["bundle"], frame)
    from_tuples = varscore.score_variants(world["bundle"], records)
    pd.testing.assert_frame_equal(from_frame, from_vcf)
    pd.testing.assert_frame_equal(from_tuples, from_vcf)
    picked = varscore.score_variants(world["bundle"], records, genes=["GENEB"])  # a bundle gene by name
    assert set(picked["gene_id"].dropna()) == {"ENSG2"}


def _one_line_error(call: Any, *fragments: str) -> None:
    with pytest.raises(varscore.VarscoreError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_input_is_a_one_line_varscore_error(world: dict[str, Any]) -> None:
    bundle, records = world["bundle"], world["records"]
    _one_line_error(lambda: varscore.score_variants("no-such-model", records), "Unknown model 'no-such-model'")
    mismatch = [records[5]]
    strict = varscore.ScoringOptions(check_ref="fail")
    _one_line_error(lambda: varscore.score_variants(bundle, mismatch, options=strict), "REF mismatch at chr1:3030")
    _one_line_error(lambda: varscore.score_variants(bundle, []), "at least one variant")
    _one_line_error(lambda: varscore.score_variants(bundle, [("chr1", "2100", "A", "C")]), "variants[0]", "'2100'")
    _one_line_error(lambda: varscore.score_variants(bundle, [records[1], ("chr1", 2100, "A")]), "variants[1]")
    _one_line_error(lambda: varscore.score_variants(bundle, ["chr1:2100:A:C"]), "variants[0]")
    _one_line_error(lambda: varscore.score_variants(bundle, pd.DataFrame({"chrom": ["chr1"]})), "lacks column(s) pos")
    _one_line_error(lambda: varscore.score_variants(bundle, world["tmp"] / "missing.vcf"), "VCF file not found")
    _one_line_error(lambda: varscore.score_variants(bundle, records, mode="genes"), "mode must be one of")
    _one_line_error(lambda: varscore.score_variants(bundle, records, genes=["NOPE"]), "has no gene NOPE")
    module = _tiny_enformer()
    _one_line_error(lambda: varscore.score_variants(module, records), "(module, 'enformer')")
    _one_line_error(lambda: varscore.score_variants((module, "enformer"), records, genes=world["genes"]), "fasta=")
    wrong = varscore.TorchModel(module, "enformer", window_size=WINDOW)  # a bare Enformer, head left at variformer
    _one_line_error(
        lambda: varscore.score_variants(wrong, records, fasta=world["fasta"], genes=world["genes"]),
        "do not fit",
        "head='variformer'",
    )


def test_import_varscore_does_not_import_torch_or_pandas() -> None:
    code = "import sys, varscore; print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"score_variants", "load_bundle", "VarscoreError", "InputError"} <= set(varscore.__all__)


def test_the_python_api_docs_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert blocks, f"{DOCS} has no ```python block"
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    table = namespace["table"]
    assert isinstance(table, pd.DataFrame) and (table["gene_name"] == "SNAP25").any()
