"""The ``varscore`` command line, one module per command group, each a thin shell over a library
workflow. The only package that talks to the user."""

from varscore.cli import analysis, evaluate, models, report, scoring, tools, training  # noqa: F401  (registers commands)
from varscore.cli.app import cli, main

__all__ = ["cli", "main"]
