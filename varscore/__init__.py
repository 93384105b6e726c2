"""varscore: score genetic variants by their predicted effect on gene expression.

The public Python API (docs/python-api.md)::

    import varscore
    table = varscore.score_variants("variformer-demo", "in.vcf.gz")

``import varscore`` stays fast and torch-free: the errors and value types load with the package,
everything else on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from varscore.errors import (
    BundleError,
    InputError,
    ModelNotFoundError,
    NotFittedError,
    PluginError,
    VarscoreError,
)
from varscore.types import Gene, Variant, Window

__version__ = "0.1.0"

if TYPE_CHECKING:
    from varscore.api import ScoringOptions, TorchModel, read_variants, score_variants
    from varscore.models.bundle import ModelBundle, list_models, load_bundle

#: public name -> the module that defines it, imported on first access
_LAZY = {
    "score_variants": "varscore.api",
    "read_variants": "varscore.api",
    "ScoringOptions": "varscore.api",
    "TorchModel": "varscore.api",
    "load_bundle": "varscore.models.bundle",
    "list_models": "varscore.models.bundle",
    "ModelBundle": "varscore.models.bundle",
}

__all__ = [
    "BundleError",
    "Gene",
    "InputError",
    "ModelBundle",
    "ModelNotFoundError",
    "NotFittedError",
    "PluginError",
    "ScoringOptions",
    "TorchModel",
    "VarscoreError",
    "Variant",
    "Window",
    "__version__",
    "list_models",
    "load_bundle",
    "read_variants",
    "score_variants",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'varscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
