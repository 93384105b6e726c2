"""The surface plugin authors import: ``from varscore.plugin import ...`` (plus the typed errors of
:mod:`varscore.errors` and the records of :mod:`varscore.types`).

Hooks (:func:`hookimpl`), the contracts a plugin implements (backbones, output modes, annotators,
checkpoint formats) with their capability attributes and typed options, the PyTorch backbone base
and its weight helpers, the conformance check every backbone's tests call, the registry look-ups
(``get_backbone``, ... and the plugin ``manager``), the personal-genome helpers a genotype model
needs, and the output guard a plugin's commands write files through. Nothing here imports torch.
"""

from varscore.genome.personal import imputed_dosage, variant_keys
from varscore.genome.sequence import BASE_INDEX, BASES
from varscore.io.infotext import info_atom
from varscore.io.outputguard import atomic_file, write_text, writes
from varscore.plugin.checkpoint_format import (
    CanonicalState,
    CheckpointFormat,
    ImportRequest,
    bad_config_field,
    check_config_numbers,
    check_output,
    read_config,
    read_tensors,
    strip_prefix,
    weight_files,
)
from varscore.plugin.conformance import check_backbone
from varscore.plugin.contracts import (
    HOMOZYGOUS_ALT,
    AnnotationContext,
    Annotator,
    Backbone,
    GenotypeBackbone,
    GenotypeFitResult,
    InfoField,
    ISMResult,
    OutputMode,
    Reducer,
    SequenceBackbone,
    VariantEffect,
)
from varscore.plugin.fastpredict import WindowEdit
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.manager import (
    checkpoint_formats,
    get_annotator,
    get_backbone,
    get_checkpoint_format,
    get_output_mode,
    manager,
)
from varscore.plugin.options import PluginOptions, option
from varscore.plugin.torch_backbone import (
    TorchSequenceBackbone,
    check_positive_ints,
    check_tensor_dtypes,
    check_window_multiple,
    load_state_checked,
    read_weights,
    save_weights,
    tensors_missing_from,
)

__all__ = [
    "BASES",
    "BASE_INDEX",
    "HOMOZYGOUS_ALT",
    "AnnotationContext",
    "Annotator",
    "Backbone",
    "CanonicalState",
    "CheckpointFormat",
    "GenotypeBackbone",
    "GenotypeFitResult",
    "ISMResult",
    "ImportRequest",
    "InfoField",
    "OutputMode",
    "PluginOptions",
    "Reducer",
    "SequenceBackbone",
    "TorchSequenceBackbone",
    "VariantEffect",
    "WindowEdit",
    "atomic_file",
    "bad_config_field",
    "check_backbone",
    "check_config_numbers",
    "check_output",
    "check_positive_ints",
    "check_tensor_dtypes",
    "check_window_multiple",
    "checkpoint_formats",
    "get_annotator",
    "get_backbone",
    "get_checkpoint_format",
    "get_output_mode",
    "hookimpl",
    "imputed_dosage",
    "info_atom",
    "load_state_checked",
    "manager",
    "option",
    "read_config",
    "read_tensors",
    "read_weights",
    "save_weights",
    "strip_prefix",
    "tensors_missing_from",
    "variant_keys",
    "weight_files",
    "write_text",
    "writes",
]
