"""Skeletons of new plugin packages (``varscore plugin new``): a pip-installable distribution with
one backbone, output mode or annotator, its entry-point line and tests that pass as generated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from varscore import __version__
from varscore.errors import InputError

KINDS = ("backbone", "genotype-backbone", "output-mode", "annotator")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class GeneratedPlugin:
    """What :func:`write_plugin` wrote: the package directory, its distribution and import names,
    the name it registers and every file (relative to ``directory``)."""

    directory: Path
    distribution: str
    package: str
    registered_name: str
    kind: str
    files: tuple[str, ...]


def write_plugin(name: str, out_dir: str | Path, kind: str = "backbone", force: bool = False) -> GeneratedPlugin:
    """Write ``out_dir/varscore-NAME/``: ``pyproject.toml`` (with the ``varscore`` entry point),
    ``README.md``, the package ``varscore_NAME/`` and ``tests/``.

    ``name`` (lower case, digits and single hyphens, e.g. ``my-cnn``) is what users type
    (``--backbone my-cnn``). An existing non-empty target is an error unless ``force``.
    """
    if not _NAME.match(name):
        raise InputError(
            f"Plugin name {name!r} is not valid: use lower-case letters, digits and single hyphens, "
            "starting with a letter (e.g. 'my-cnn')."
        )
    if kind not in KINDS:
        raise InputError(f"Unknown plugin kind {kind!r}. Choose one of: {', '.join(KINDS)}.")
    distribution = f"varscore-{name}"
    package = "varscore_" + name.replace("-", "_")
    target = Path(out_dir) / distribution
    if target.exists() and any(target.iterdir()) and not force:
        raise InputError(f"{target} exists and is not empty; choose another -o directory or pass --force.")
    words = {
        "name": name,
        "distribution": distribution,
        "package": package,
        "cls": "".join(part.capitalize() for part in name.split("-")) + _CLASS_SUFFIX[kind],
        "info_key": "VARSCORE_" + name.upper().replace("-", "_"),
        "kind": kind,
        "kind_plural": {
            "backbone": "backbones",
            "genotype-backbone": "backbones",
            "output-mode": "output modes",
            "annotator": "annotators",
        }[kind],
        "varscore_version": __version__,
        "extra_deps": '\n    "safetensors>=0.4.3",' if kind.endswith("backbone") else "",
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"{package}/__init__.py": _MODULES[kind],
        f"tests/test_{package}.py": _TESTS[kind],
    }
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(words))
    return GeneratedPlugin(target, distribution, package, name, kind, tuple(files))


_CLASS_SUFFIX = {
    "backbone": "Backbone",
    "genotype-backbone": "Backbone",
    "output-mode": "Output",
    "annotator": "Annotator",
}

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "varscore plugin: the '$name' $kind"
readme = "README.md"
requires-python = ">=3.10"
dependencies = [
    "varscore>=$varscore_version",
    "numpy>=1.24",$extra_deps
]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# The line that makes this package a varscore plugin: varscore imports every module named in the
# "varscore" entry-point group and calls its hook functions.
[project.entry-points.varscore]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_README = """\
# $distribution

A varscore plugin that registers the $kind `$name`.

```
pip install -e .            # varscore finds it through the "varscore" entry point
varscore plugins            # lists: $name  $kind_plural: $name
python -m pytest tests      # its tests, including varscore's conformance checks
```

Edit `$package/__init__.py`; the contracts (array shapes, coordinates) are in varscore's
`docs/plugins.md`. Publish with `python -m build` and `twine upload dist/*`.
"""

_BACKBONE = '''\
"""varscore plugin: the '$name' backbone.

A numpy skeleton to replace with your model: one weight per position, base and track, summed over
each bin. Keep heavy imports (torch, ...) inside methods so that loading plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from varscore.errors import BundleError, InputError
from varscore.plugin import Backbone, PluginOptions, SequenceBackbone, hookimpl, option

WEIGHTS_FILE = "weights.safetensors"


class $cls(SequenceBackbone):
    """``predict``: ``(N, window_size, 4)`` one-hot (A, C, G, T) -> ``(N, window_size // bin_size, tracks)``.

    ``prediction[n, b, t] = sum over positions p in bin b, bases c of weights_[t, p, c] * x[n, p, c]``.
    To make it fine-tunable with ``varscore finetune``, return a ``torch.nn.Module`` mapping
    ``(B, L, 4)`` to ``(B, bins, tracks)`` from ``torch_module()``.
    """

    name: ClassVar[str] = "$name"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")

    @dataclass
    class Options(PluginOptions):  # every accepted parameter; unknown keys are rejected
        window_size: int = option(256, "Input window in bp, a multiple of bin_size.")
        bin_size: int = option(16, "bp per output bin.")
        tracks: int = option(1, "Output tracks.")
        seed: int = option(0, "Seed of the random weights build() draws.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # rejects unknown keys
        if self.params["window_size"] % self.params["bin_size"]:
            raise InputError(
                f"Backbone '$name': window_size {self.params['window_size']} is not a multiple of "
                f"bin_size {self.params['bin_size']}."
            )

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    @property
    def bin_size(self) -> int:
        return int(self.params["bin_size"])

    def build(self) -> $cls:
        rng = np.random.default_rng(self.params["seed"])
        self.model_ = rng.normal(size=(self.params["tracks"], self.window_size, 4)).astype(np.float32)
        return self

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        self._require_built()
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.model_}, str(Path(directory) / WEIGHTS_FILE))

    def load(self, directory: Path) -> $cls:
        from safetensors.numpy import load_file

        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise BundleError(f"Backbone '$name': {path} does not exist (save() writes it).")
        weights = load_file(str(path))["weights"]
        expected = (self.params["tracks"], self.window_size, 4)
        if weights.shape != expected:
            raise BundleError(
                f"Backbone '$name': {path} holds weights of shape {weights.shape}; expected {expected}."
            )
        self.model_ = weights
        return self

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self._require_built()
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != (self.window_size, 4):
            raise InputError(
                f"Backbone '$name' needs (N, {self.window_size}, 4) one-hot; got shape {batch.shape}."
            )
        per_base = np.einsum("nlc,tlc->nlt", batch, self.model_)
        bins = self.window_size // self.bin_size
        return per_base.reshape(len(batch), bins, self.bin_size, -1).sum(axis=2)


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register($cls)
'''

# the generated tests' fixture: the plugin through its entry point, or registered by hand from source
_REGISTERED_FIXTURE = '''\
@pytest.fixture
def registered():
    """The plugin as varscore sees it: through its entry point when installed, else registered by hand."""
    try:
        importlib.metadata.distribution("$distribution")
        installed = True
    except importlib.metadata.PackageNotFoundError:
        installed = False
        manager.register($package, name="$name")
    yield manager
    if not installed:
        manager.unregister("$name")
'''

_BACKBONE_TESTS = (
    '''\
"""Tests of the '$name' backbone: varscore's conformance check plus the model's own arithmetic."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from varscore.errors import InputError
from varscore.plugin import check_backbone, manager

import $package
from $package import $cls


'''
    + _REGISTERED_FIXTURE
    + """

def test_conformance():
    check_backbone($cls, {"window_size": 64, "bin_size": 8, "tracks": 2})


def test_registered(registered):
    from varscore.plugin import get_backbone

    assert get_backbone("$name") is $cls


def test_predict_equals_explicit_sum():
    backbone = $cls(window_size=32, bin_size=8, tracks=2).build()
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(3, 32))]
    pred = backbone.predict(x)
    assert pred.shape == (3, 4, 2)
    for n in range(3):
        for b in range(4):
            for t in range(2):
                expected = sum(
                    backbone.model_[t, p, c] * x[n, p, c] for p in range(8 * b, 8 * b + 8) for c in range(4)
                )
                assert pred[n, b, t] == pytest.approx(expected, rel=1e-5)


def test_rejects_bad_params():
    with pytest.raises(InputError, match="not a multiple"):
        $cls(window_size=30, bin_size=8)
    with pytest.raises(InputError, match="unknown option"):
        $cls(windowsize=32)
"""
)

_OUTPUT = '''\
"""varscore plugin: the '$name' output mode.

A skeleton to replace with your reduction: the largest value over all bins of one track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from varscore.errors import InputError
from varscore.plugin import OutputMode, PluginOptions, hookimpl, option


class $cls(OutputMode):
    """``(N, bins, tracks)`` -> ``(N, 1)``: the maximum over bins of track ``track``."""

    name: ClassVar[str] = "$name"

    @dataclass
    class Options(PluginOptions):
        track: int = option(0, "Track whose maximum over bins is the score (0-based).")

    def reduce(self, prediction: np.ndarray) -> np.ndarray:
        prediction = np.asarray(prediction)
        track = int(self.params["track"])
        if prediction.ndim != 3 or not 0 <= track < prediction.shape[2]:
            raise InputError(
                f"Output mode '$name' needs (N, bins, tracks) with track {track} present; "
                f"got shape {prediction.shape}."
            )
        return prediction[:, :, track].max(axis=1, keepdims=True)

    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        return [f"max_track{self.params['track']}"]


@hookimpl
def register_output_modes(register: Callable[[type[OutputMode]], None]) -> None:
    register($cls)
'''

_OUTPUT_TESTS = (
    '''\
"""Tests of the '$name' output mode."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from varscore.errors import InputError
from varscore.plugin import manager

import $package
from $package import $cls


'''
    + _REGISTERED_FIXTURE
    + """

def test_registered(registered):
    from varscore.plugin import get_output_mode

    assert get_output_mode("$name") is $cls


def test_reduce_equals_explicit_loop():
    rng = np.random.default_rng(0)
    prediction = rng.normal(size=(3, 7, 2))
    reduced = $cls(track=1).reduce(prediction)
    assert reduced.shape == (3, 1)
    for n in range(3):
        assert reduced[n, 0] == max(prediction[n, b, 1] for b in range(7))
    assert len($cls().output_names(7, 2)) == reduced.shape[1]


def test_rejects_bad_input():
    with pytest.raises(InputError, match="track 5"):
        $cls(track=5).reduce(np.zeros((1, 4, 2)))
    with pytest.raises(InputError, match="unknown option"):
        $cls(trak=1)
"""
)

_ANNOTATOR = '''\
"""varscore plugin: the '$name' annotator.

A skeleton to replace with your annotation: each variant's signed distance to the nearest gene's
TSS (negative upstream, strand-aware), written as INFO $info_key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
from varscore.errors import InputError
from varscore.plugin import AnnotationContext, Annotator, InfoField, PluginOptions, hookimpl, option
from varscore.types import Variant


class $cls(Annotator):
    """One INFO field: ``GENE:DISTANCE`` for the nearest TSS on the variant's chromosome.

    ``Variant.pos`` and ``Gene.tss`` are both 1-based; the distance is ``pos - tss`` on the plus
    strand and ``tss - pos`` on the minus strand. Variants on chromosomes without genes get no entry.
    """

    name: ClassVar[str] = "$name"
    info_fields: ClassVar[tuple[InfoField, ...]] = (
        InfoField(
            "$info_key", "1", "String", "Nearest TSS: GENE:DISTANCE (bp, negative = upstream)"
        ),
    )

    @dataclass
    class Options(PluginOptions):
        max_distance: int = option(1_000_000, "Farthest TSS reported (bp).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # rejects unknown keys
        # options from the command line (--annotator-opt $name.max_distance=500) arrive as strings
        try:
            self.params["max_distance"] = int(self.params["max_distance"])
        except (TypeError, ValueError) as err:
            value = self.params["max_distance"]
            message = f"Annotator '{self.name}': max_distance must be a whole number of bp; got {value!r}."
            raise InputError(message) from err

    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        values: dict[str, str] = {}
        for variant in variants:
            best = None
            for gene in context.genes:
                if gene.chrom != variant.chrom:
                    continue
                distance = variant.pos - gene.tss if gene.strand != "-" else gene.tss - variant.pos
                if abs(distance) <= self.params["max_distance"] and (best is None or abs(distance) < abs(best[1])):
                    best = (gene.label, distance)
            if best is not None:
                values[variant.key] = f"{best[0]}:{best[1]}"
        return pd.DataFrame({"$info_key": pd.Series(values, dtype=object)})


@hookimpl
def register_annotators(register: Callable[[type[Annotator]], None]) -> None:
    register($cls)
'''

_ANNOTATOR_TESTS = (
    '''\
"""Tests of the '$name' annotator."""

from __future__ import annotations

import importlib.metadata

import pytest
from varscore.errors import InputError
from varscore.plugin import AnnotationContext, manager
from varscore.types import Gene, Variant

import $package
from $package import $cls


'''
    + _REGISTERED_FIXTURE
    + """

def test_registered(registered):
    from varscore.plugin import get_annotator

    assert get_annotator("$name") is $cls


def test_distances_are_strand_aware():
    genes = [Gene("G1", "chr1", 1000, "+", "PLUS"), Gene("G2", "chr1", 5000, "-", "MINUS")]
    variants = [
        Variant("chr1", 990, "A", ("G",)),   # 10 bp upstream of PLUS
        Variant("chr1", 4990, "C", ("T",)),  # 10 bp downstream of MINUS (minus strand)
        Variant("chr2", 100, "G", ("A",)),   # no gene on chr2
    ]
    frame = $cls().annotate(variants, AnnotationContext(genes=genes, windows={}))
    column = frame["$info_key"]
    assert column[variants[0].key] == "PLUS:-10"
    assert column[variants[1].key] == "MINUS:10"
    assert variants[2].key not in column.index
    assert [f.key for f in $cls.info_fields] == list(frame.columns)


def test_params_from_the_command_line():
    genes = [Gene("G1", "chr1", 1000, "+", "PLUS")]
    variants = [Variant("chr1", 990, "A", ("G",)), Variant("chr1", 1500, "C", ("T",))]
    context = AnnotationContext(genes=genes, windows={})
    frame = $cls(max_distance="100").annotate(variants, context)
    assert list(frame["$info_key"].index) == [variants[0].key]  # the other is 500 bp away
    with pytest.raises(InputError, match="whole number"):
        $cls(max_distance="far")
    with pytest.raises(InputError, match="unknown option"):
        $cls(max_dist=5)
"""
)

_GENOTYPE_BACKBONE = '''\
"""varscore plugin: the '$name' genotype backbone.

A numpy skeleton to replace with your model: per gene, a least-squares fit of expression on the
ALT dosages (0, 1, 2) of the variants in its window, with a small ridge penalty. Variant effects,
person predictions and VCF scoring come from :class:`varscore.plugin.contracts.GenotypeBackbone`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from varscore.errors import BundleError, InputError
from varscore.plugin import (
    Backbone,
    GenotypeBackbone,
    GenotypeFitResult,
    PluginOptions,
    hookimpl,
    imputed_dosage,
    option,
    variant_keys,
)

WEIGHTS_FILE = "weights.safetensors"


class $cls(GenotypeBackbone):
    """``predict_dosages(gene, x)`` = ``intercept + x @ weights`` for ``x`` ``(N, V)`` ALT dosages."""

    name: ClassVar[str] = "$name"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar",)
    trainable: ClassVar[bool] = True

    @dataclass
    class Options(PluginOptions):
        window_size: int = option(2048, "Window around the TSS whose variants are the predictors (bp).")
        penalty: float = option(1.0, "Ridge penalty.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # rejects unknown keys
        if not float(self.params["penalty"]) >= 0:
            raise InputError(f"Backbone '$name': penalty must be >= 0; got {self.params['penalty']!r}.")

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    def build(self) -> $cls:
        self.model_: dict[str, tuple[list[str], np.ndarray, float]] = {}  # gene -> keys, weights, intercept
        return self

    def gene_ids(self) -> list[str]:
        self._require_built()
        return list(self.model_)

    def _gene(self, gene_id: str) -> tuple[list[str], np.ndarray, float]:
        if gene_id not in self.gene_ids():
            raise InputError(f"Model '$name' has no gene '{gene_id}'.")
        return self.model_[gene_id]

    def variant_keys(self, gene_id: str) -> list[str]:
        return list(self._gene(gene_id)[0])

    def predict_dosages(self, gene_id: str, dosages: np.ndarray) -> np.ndarray:
        keys, weights, intercept = self._gene(gene_id)
        dosages = np.asarray(dosages, dtype=np.float64)
        if dosages.ndim != 2 or dosages.shape[1] != len(keys):
            raise InputError(f"Gene '{gene_id}' takes (N, {len(keys)}) dosages; got shape {dosages.shape}.")
        return intercept + dosages @ weights

    def allele_weights(self, gene_id: str) -> dict[str, float]:
        keys, weights, _ = self._gene(gene_id)
        return {key: float(w) for key, w in zip(keys, weights, strict=True)}

    def fit_gene(self, gene_id: str, keys: list[str], dosages: np.ndarray, y: np.ndarray) -> None:
        """Ridge regression of ``y`` ``(n,)`` on ``dosages`` ``(n, V)``, the intercept unpenalised."""
        x = np.asarray(dosages, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        mean_x, mean_y = x.mean(axis=0), y.mean()
        centred = x - mean_x
        gram = centred.T @ centred + float(self.params["penalty"]) * np.eye(x.shape[1])
        weights = np.linalg.solve(gram, centred.T @ (y - mean_y)) if x.shape[1] else np.zeros(0)
        self.model_[gene_id] = (list(keys), weights, float(mean_y - mean_x @ weights))

    def finetune(self, data: Any, config: Any = None) -> GenotypeFitResult:
        if not self.is_built:
            self.build()
        train, tune = np.asarray(data.train), np.asarray(data.tune)
        rows, imputed = [], 0
        for gene_data in data.genes:
            genotypes = gene_data.windows.genotypes
            dosage, missing = imputed_dosage(genotypes, train)
            imputed += missing
            y = np.asarray(gene_data.expression, dtype=np.float64)
            gene_id = gene_data.gene.gene_id
            self.fit_gene(gene_id, variant_keys(genotypes), dosage[train], y[train])
            pred = self.predict_dosages(gene_id, dosage[tune])
            total = float(((y[tune] - y[tune].mean()) ** 2).sum())
            r2 = 1 - float(((y[tune] - pred) ** 2).sum()) / total if total > 0 else math.nan
            rows.append({"gene": gene_id, "tune_r2": r2})
        scores = [row["tune_r2"] for row in rows if not math.isnan(row["tune_r2"])]
        return GenotypeFitResult(rows, float(np.mean(scores)) if scores else math.nan, imputed)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        genes = self.gene_ids()
        tensors = {
            "intercepts": np.array([self.model_[g][2] for g in genes], dtype=np.float64),
            "weights": np.concatenate([self.model_[g][1] for g in genes] or [np.zeros(0)]).astype(np.float64),
        }
        meta = {"genes": genes, "keys": [self.model_[g][0] for g in genes]}
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(directory) / WEIGHTS_FILE), metadata={"$package": json.dumps(meta)})

    def load(self, directory: Path) -> $cls:
        from safetensors import safe_open

        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise BundleError(f"Backbone '$name': {path} does not exist (save() writes it).")
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get("$package")
            if raw is None:
                raise BundleError(f"Backbone '$name': {path} was not written by this backbone.")
            meta = json.loads(raw)
            intercepts, weights = handle.get_tensor("intercepts"), handle.get_tensor("weights")
        self.build()
        start = 0
        for gene_id, keys, intercept in zip(meta["genes"], meta["keys"], intercepts, strict=True):
            self.model_[gene_id] = (list(keys), weights[start : start + len(keys)].copy(), float(intercept))
            start += len(keys)
        return self


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register($cls)
'''

_GENOTYPE_BACKBONE_TESTS = (
    """\
\"\"\"Tests of the '$name' genotype backbone: varscore's conformance check plus the model's own arithmetic.\"\"\"

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from varscore.errors import InputError
from varscore.plugin import check_backbone, manager

import $package
from $package import $cls


"""
    + _REGISTERED_FIXTURE
    + """

class _Fitted($cls):
    \"\"\"``build()`` fits one gene, so that the conformance check has a model to check.\"\"\"

    def build(self):
        super().build()
        rng = np.random.default_rng(0)
        x = rng.integers(0, 3, size=(60, 5)).astype(np.float64)
        self.fit_gene("G1", [f"chr1:{100 + i}:A:G" for i in range(5)], x, 0.5 * x[:, 1] + rng.normal(size=60))
        return self


def test_conformance():
    check_backbone(_Fitted, {"window_size": 512})


def test_registered(registered):
    from varscore.plugin import get_backbone

    assert get_backbone("$name") is $cls


def test_fit_equals_the_normal_equations_and_effects_are_twice_the_weight():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(40, 3)).astype(np.float64)
    y = 1.0 + 0.8 * x[:, 0] - 0.3 * x[:, 2] + rng.normal(scale=0.1, size=40)
    model = $cls(penalty=0.0).build()
    model.fit_gene("G", ["c:1:A:G", "c:2:C:T", "c:3:G:A"], x, y)
    design = np.column_stack([np.ones(40), x])
    expected = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(model.predict_dosages("G", x), design @ expected, atol=1e-8)
    for effect, weight in zip(model.variant_effects("G"), expected[1:], strict=True):
        assert effect.alt_pred - effect.ref_pred == pytest.approx(2 * weight)


def test_rejects_bad_params():
    with pytest.raises(InputError, match="penalty"):
        $cls(penalty=-1)
    with pytest.raises(InputError, match="unknown option"):
        $cls(windowsize=32)
"""
)

_MODULES = {
    "backbone": _BACKBONE,
    "genotype-backbone": _GENOTYPE_BACKBONE,
    "output-mode": _OUTPUT,
    "annotator": _ANNOTATOR,
}
_TESTS = {
    "backbone": _BACKBONE_TESTS,
    "genotype-backbone": _GENOTYPE_BACKBONE_TESTS,
    "output-mode": _OUTPUT_TESTS,
    "annotator": _ANNOTATOR_TESTS,
}
