"""The plugin manager: entry points, duplicate names, unknown hooks, restricted loading."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from tests import toy_plugin
from varscore.cli import cli
from varscore.errors import PluginError
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.manager import PluginManager


def _plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def test_builtins_load_through_entry_points():
    manager = PluginManager()
    assert {"enformer", "outputs"} <= set(manager.plugin_names())
    assert {"scalar", "track"} <= set(manager.registry.names("output_modes"))
    assert "enformer" in manager.registry.names("backbones")


def test_duplicate_names_name_both_plugins():
    manager = PluginManager()
    manager.register(toy_plugin, name="first-toy")
    manager.register(
        _plugin("second", register_backbones=lambda register: register(toy_plugin.ToyBackbone)), name="second-toy"
    )
    with pytest.raises(PluginError) as err:
        _ = manager.registry
    message = str(err.value)
    assert "'toy'" in message and "first-toy" in message and "second-toy" in message


def test_unknown_hook_fails_at_load():
    manager = PluginManager()
    with pytest.raises(PluginError, match="register_backbone"):
        manager.register(_plugin("typo", register_backbone=lambda register: None), name="typo-plugin")
    assert "typo-plugin" not in manager.plugin_names()


def test_unknown_backbone_lists_installed():
    manager = PluginManager()
    with pytest.raises(PluginError, match=r"Unknown backbone 'enformr'\. Installed: .*enformer"):
        manager.registry.get("backbones", "enformr")


def test_load_plugins_env_restricts(monkeypatch):
    monkeypatch.setenv("VARSCORE_LOAD_PLUGINS", "outputs")
    manager = PluginManager()
    assert manager.plugin_names() == ["outputs"]
    assert manager.registry.names("backbones") == []


def test_plugins_command_lists_what_each_registers(toy_plugin):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    lines = dict(line.split("\t", 1) for line in result.output.splitlines())
    assert lines["toy-plugin"] == "backbones: toy"
    assert "output modes: scalar, track" in lines["outputs"]
    assert "backbones: enformer" in lines["enformer"]


def test_plugin_commands_are_added():
    import click

    module = types.ModuleType("cmds")

    def register_commands(cli):
        @cli.command("hello-plugin")
        def hello():
            click.echo("hello from a plugin")

    module.register_commands = hookimpl(register_commands)
    manager = PluginManager()
    manager.register(module, name="cmds")
    group = click.Group()
    manager.add_commands(group)
    assert CliRunner().invoke(group, ["hello-plugin"]).output == "hello from a plugin\n"


def test_help_is_fast_and_imports_no_torch():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "varscore", "--help"], capture_output=True, text=True, check=True
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "Usage" in result.stdout
    assert not imported & {"torch", "transformers", "lightning", "tensorflow", "numba", "enformer_pytorch"}


def test_check_backbone_passes_for_the_toy_plugin_and_catches_a_broken_one():
    from varscore.plugin.conformance import check_backbone

    check_backbone(toy_plugin.ToyBackbone, {"window_size": 32, "bin_size": 4})

    class NoisyBackbone(toy_plugin.ToyBackbone):
        name = "noisy"

        def predict(self, batch):
            out = super().predict(batch)
            return out + np.random.default_rng().normal(size=out.shape)

    with pytest.raises(AssertionError, match="not deterministic"):
        check_backbone(NoisyBackbone, {"window_size": 32, "bin_size": 4})


def test_checkpoint_formats_are_registered_and_duplicates_name_both_plugins():
    from varscore_plugins.enformer import EnformerCheckpoint

    manager = PluginManager()
    assert {"borzoi", "enformer"} <= set(manager.registry.names("checkpoint_formats"))
    assert manager.provided_by("enformer")["checkpoint_formats"] == ["enformer"]
    manager.register(
        _plugin("copycat", register_checkpoint_formats=lambda register: register(EnformerCheckpoint)), name="copycat"
    )
    with pytest.raises(PluginError) as err:
        _ = manager.registry
    assert str(err.value).startswith("Duplicate checkpoint format name 'enformer': registered by plugin 'enformer'")
    assert "'copycat'" in str(err.value)


def test_unknown_checkpoint_format_lists_the_installed_ones():
    from varscore.plugin import get_checkpoint_format

    with pytest.raises(PluginError, match=r"Unknown checkpoint format 'enformr'\. Installed: .*borzoi, enformer"):
        get_checkpoint_format("enformr")


def test_options_reject_unknown_keys_and_document_each_option():
    from dataclasses import dataclass

    from varscore.errors import InputError
    from varscore.plugin import PluginOptions, option
    from varscore_plugins.enformer import EnformerBackbone
    from varscore_plugins.outputs import ScalarOutput

    assert ScalarOutput.default_params == {"track": 0, "center_bins": 1, "stat": "center"}
    assert all(EnformerBackbone.Options.docs().values())  # every option says what it means
    with pytest.raises(InputError, match=r"^Output mode 'scalar': unknown option\(s\) tracks\. Allowed: center_bins"):
        ScalarOutput(tracks=1)
    first, second = EnformerBackbone(), EnformerBackbone()
    first.params["output_heads"]["human"] = 1  # defaults are copied, never shared
    assert second.params["output_heads"]["human"] == 5313

    with pytest.raises(PluginError, match="must be decorated with @dataclass"):

        class Undecorated(toy_plugin.ToyBackbone):
            class Options(PluginOptions):
                depth: int = option(1, "Layers.")

    class Decorated(toy_plugin.ToyBackbone):
        @dataclass
        class Options(PluginOptions):
            depth: int = option(1, "Layers.")

    assert Decorated.default_params == {"depth": 1}


def test_capabilities_are_declared_on_the_contracts():
    from varscore.plugin import Backbone, GenotypeBackbone, SequenceBackbone, TorchSequenceBackbone
    from varscore_plugins.borzoi import BorzoiBackbone
    from varscore_plugins.enformer import EnformerBackbone
    from varscore_plugins.linear import RidgeBackbone

    assert (Backbone.trainable, Backbone.fine_tunes_from_pretrained) == (False, False)
    assert (SequenceBackbone.has_torch_module, SequenceBackbone.warm_starts) == (False, False)
    assert TorchSequenceBackbone.trainable and TorchSequenceBackbone.has_torch_module
    assert TorchSequenceBackbone.warm_starts and not GenotypeBackbone.trainable
    assert EnformerBackbone.fine_tunes_from_pretrained and BorzoiBackbone.fine_tunes_from_pretrained
    assert RidgeBackbone.trainable and not RidgeBackbone.fine_tunes_from_pretrained
