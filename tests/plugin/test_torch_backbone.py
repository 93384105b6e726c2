"""The shared torch plumbing (varscore.plugin.torch_backbone) on a minimal subclass, checked against numpy."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from varscore.errors import BundleError, InputError  # noqa: E402
from varscore.plugin.conformance import check_backbone  # noqa: E402
from varscore.plugin.torch_backbone import (  # noqa: E402
    WEIGHTS_FILE,
    TorchSequenceBackbone,
    check_positive_ints,
    check_window_multiple,
    load_state_checked,
    read_weights,
    save_weights,
)


class BinConvBackbone(TorchSequenceBackbone):
    """One convolution per bin: ``out[n, b, t] = bias[t] + sum_{p in bin b, c} w[t, c, p - b * bin] x[n, p, c]``,
    what a third party writes on top of the base class (build, ``_new_model``, ``_forward``)."""

    name: ClassVar[str] = "bin-conv"
    label: ClassVar[str] = "BinConv"
    summary_params: ClassVar[tuple[str, ...]] = ("tracks",)
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    default_params: ClassVar[dict[str, Any]] = {"window_size": 64, "bin_size": 8, "tracks": 2, "seed": 0}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_positive_ints("Backbone 'bin-conv'", self.params, ("window_size", "bin_size", "tracks"))
        check_window_multiple("Backbone 'bin-conv'", self.window_size, self.bin_size, f"bin_size {self.bin_size}")

    @property
    def bin_size(self) -> int:
        return int(self.params["bin_size"])

    @property
    def n_tracks(self) -> int:
        return int(self.params["tracks"])

    def _new_model(self) -> Any:
        return torch.nn.Conv1d(4, self.n_tracks, kernel_size=self.bin_size, stride=self.bin_size)

    def build(self) -> BinConvBackbone:
        with self._seeded():
            self._place(self._new_model())
        return self

    def _forward(self, x: Any, model: Any = None) -> Any:
        return (self.model_ if model is None else model)(x.transpose(1, 2)).transpose(1, 2)


def _one_hot(rng: np.random.Generator, n: int, length: int = 64) -> np.ndarray:
    """``(n, length, 4)`` float32."""
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def _numpy_bin_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x`` ``(N, L, 4)``, ``weight`` ``(T, 4, bin)``, ``bias`` ``(T,)`` -> ``(N, L / bin, T)``, by a loop."""
    n, length, _ = x.shape
    tracks, _, size = weight.shape
    out = np.zeros((n, length // size, tracks))
    for b in range(length // size):
        for t in range(tracks):
            out[:, b, t] = bias[t] + np.einsum("npc,cp->n", x[:, b * size : (b + 1) * size], weight[t])
    return out


def test_import_does_not_load_torch() -> None:
    code = "import sys, varscore.plugin.torch_backbone; assert 'torch' not in sys.modules and 'safetensors' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_minimal_subclass_passes_conformance() -> None:
    check_backbone(BinConvBackbone, {"window_size": 64, "bin_size": 8, "tracks": 3})


def test_predict_matches_numpy_and_handles_empty_and_bad_batches() -> None:
    backbone = BinConvBackbone().build()
    x = _one_hot(np.random.default_rng(1), 3)
    weight = backbone.model_.weight.detach().numpy()
    bias = backbone.model_.bias.detach().numpy()
    np.testing.assert_allclose(backbone.predict(x), _numpy_bin_conv(x, weight, bias), rtol=1e-5, atol=1e-6)
    assert backbone.predict(np.zeros((0, 64, 4), np.float32)).shape == (0, 8, 2)
    with pytest.raises(InputError, match=r"BinConv predict\(\) needs .* \(N, 64, 4\); got shape \(2, 32, 4\)"):
        backbone.predict(np.zeros((2, 32, 4), np.float32))


def test_seed_fixes_weights_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = BinConvBackbone(seed=5).build().model_.weight.detach().clone()
    assert torch.equal(torch.rand(3), expected_next)  # building did not consume the global generator
    assert torch.equal(BinConvBackbone(seed=5).build().model_.weight, first)
    assert not torch.equal(BinConvBackbone(seed=6).build().model_.weight, first)
    with pytest.raises(InputError, match="seed must be an integer or None; got '5'"):
        BinConvBackbone(seed="5")


def test_parameter_checks() -> None:
    with pytest.raises(InputError, match="Backbone 'bin-conv': tracks must be a positive integer; got True"):
        BinConvBackbone(tracks=True)
    with pytest.raises(InputError, match="window_size 60 is not a multiple of bin_size 8; use e.g. 56 or 64"):
        BinConvBackbone(window_size=60)
    with pytest.raises(InputError, match="use e.g. 8 or 16"):
        check_window_multiple("x", 5, 8, "8")
    check_positive_ints("x", {"depth": 0}, ("depth",), allow_zero=("depth",))
    with pytest.raises(InputError, match="depth must be a positive integer; got -1"):
        check_positive_ints("x", {"depth": -1}, ("depth",), allow_zero=("depth",))


def test_configure(caplog: pytest.LogCaptureFixture) -> None:
    backbone = BinConvBackbone().build()
    with caplog.at_level(logging.WARNING):
        backbone.configure("cpu", bf16=True)
    assert "only used on CUDA" in caplog.text and backbone._bf16 is False
    with pytest.raises(InputError, match="Unknown device 'gpu0'"):
        backbone.configure("gpu0")
    with pytest.raises(InputError, match="Unsupported device 'meta'"):
        backbone.configure("meta")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            backbone.configure("cuda:0")
    backbone.configure("auto")
    assert backbone._device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_torch_module_shares_parameters() -> None:
    backbone = BinConvBackbone().build()
    x = _one_hot(np.random.default_rng(2), 4)
    before = backbone.predict(x)
    module = backbone.torch_module()
    assert module.model is backbone.model_
    optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
    module(torch.from_numpy(x)).sum().backward()
    optimiser.step()
    after = backbone.predict(x)
    assert not np.allclose(before, after)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), after, rtol=1e-6)


def test_save_load_round_trip_and_errors(tmp_path: Path) -> None:
    backbone = BinConvBackbone(tracks=3, seed=1).build()
    backbone.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [WEIGHTS_FILE]
    loaded = BinConvBackbone(tracks=3, seed=2).load(tmp_path / "model")
    x = _one_hot(np.random.default_rng(3), 2)
    np.testing.assert_array_equal(loaded.predict(x), backbone.predict(x))

    with pytest.raises(BundleError, match=r"BinConv weights not found: .* does not exist \(save\(\) writes it\)"):
        BinConvBackbone().load(tmp_path / "nowhere")
    with pytest.raises(BundleError, match=r"hyper-parameters in the manifest \(tracks=2\): 2 of another shape"):
        BinConvBackbone(tracks=2).load(tmp_path / "model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(BundleError, match="Cannot read BinConv weights"):
        BinConvBackbone().load(tmp_path / "broken")


class _Shared(torch.nn.Module):
    """One linear layer registered under two names, as enformer-pytorch registers its trunk."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(3, 2)
        self.alias = self.first
        self.norm = torch.nn.BatchNorm1d(2)


def test_save_weights_stores_shared_tensors_once_and_replaces_atomically(tmp_path: Path) -> None:
    model = _Shared()
    path = tmp_path / "sub" / "w.safetensors"
    save_weights(model, path, {"format": "pt"})
    save_weights(model, path, {"format": "pt"})  # overwrites
    state = load_file(str(path))
    assert len([k for k in state if k.endswith(".weight") and k.split(".")[0] in ("first", "alias")]) == 1
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]  # no .partial left behind


def test_load_state_checked_reports_and_loads(tmp_path: Path) -> None:
    source, target = _Shared(), _Shared()
    with torch.no_grad():
        source.first.weight.add_(1.0)
        source.norm.running_mean.add_(0.5)
    path = tmp_path / "w.safetensors"
    save_weights(source, path, {})
    state = read_weights(path, "Toy")

    # one name of the aliased pair is absent: missing unless aliases are honoured
    problem = load_state_checked(target, state)
    assert problem is not None and problem.startswith("2 missing (e.g. ")
    assert not torch.equal(target.first.weight, source.first.weight)  # nothing copied on failure
    assert load_state_checked(target, state, aliases=True) is None
    assert torch.equal(target.alias.weight, source.first.weight)
    assert torch.equal(target.norm.running_mean, source.norm.running_mean)

    extra = {**state, "surplus": torch.zeros(1), "norm.running_var": torch.ones(5)}
    assert load_state_checked(_Shared(), extra, aliases=True) == (
        "1 unexpected (e.g. surplus); 1 of another shape (e.g. norm.running_var) tensor(s)."
    )
    lacking = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert (
        load_state_checked(_Shared(), lacking, aliases=True) == "1 missing (e.g. norm.num_batches_tracked) tensor(s)."
    )
    assert load_state_checked(_Shared(), lacking, aliases=True, optional=lambda k: k.endswith("tracked")) is None


def test_read_weights_wraps_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 5)
    with pytest.raises(InputError, match=r"Cannot read Toy weights .*bad\.safetensors: "):
        read_weights(path, "Toy", InputError)
