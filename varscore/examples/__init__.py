"""The bundled example: a simulated cohort on a real hg19 chr20 slice and two demo models trained on it.

Shipped as package data, so an installed wheel has them too; ``varscore examples path`` prints
the data folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def examples_dir() -> Path:
    """The folder holding ``data/`` and ``models/`` (a real directory: wheels install unzipped)."""
    return Path(str(resources.files(__name__)))


def data_dir() -> Path:
    """The example cohort (``cohort.vcf.gz``, expression, genes, the hg19 FASTA slice)."""
    return examples_dir() / "data"


def models_dir() -> Path:
    """The demo model bundles (``variformer-demo``, ``elastic-net-demo``)."""
    return examples_dir() / "models"
