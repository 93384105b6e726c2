"""The ``varscore`` command group: one-line errors, plugin commands, logging."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from varscore import __version__
from varscore.errors import VarscoreError

logger = logging.getLogger("varscore")


class VarscoreGroup(click.Group):
    """Turns :class:`VarscoreError` into a one-line message (traceback with VARSCORE_DEBUG=1), and
    adds the plugins' commands before the first command line is parsed, however it is invoked."""

    plugin_commands_added = False

    def add_plugin_commands(self) -> None:
        if not self.plugin_commands_added:
            from varscore.plugin.manager import manager

            manager.add_commands(self)
            self.plugin_commands_added = True

    def main(self, *args: Any, **kwargs: Any) -> Any:
        self.add_plugin_commands()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VarscoreError as exc:
            if os.environ.get("VARSCORE_DEBUG"):
                raise
            error = click.ClickException(str(exc))
            error.exit_code = getattr(exc, "exit_code", 1)  # type: ignore[misc]  # e.g. 143 after SIGTERM, as shells report it
            raise error from exc
        except OSError as exc:  # the system refused a read or write no check foresaw (disk full, I/O error)
            if os.environ.get("VARSCORE_DEBUG"):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}; set VARSCORE_DEBUG=1 for details.") from exc


@click.group(cls=VarscoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varscore")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--trust-unverified",
    is_flag=True,
    help="Load model bundles whose manifest records no checksums (only bundles you trust).",
)
@click.option(
    "--allow-large-models", is_flag=True, help="Build models above the size limits that protect against bad manifests."
)
def cli(verbose: int, trust_unverified: bool, allow_large_models: bool) -> None:
    """Score genetic variants by their predicted effect on gene expression."""
    from varscore.models.bundle import LoadSettings, loading_with

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from varscore.io.progress import show_lines_on_stderr

    show_lines_on_stderr()  # progress lines in a log where stderr is no terminal
    # for this command only: the flags never carry over to later calls in the same process
    settings = LoadSettings(trust_unverified=trust_unverified, allow_large_models=allow_large_models)
    click.get_current_context().with_resource(loading_with(settings))


def main() -> None:
    try:
        cli.add_plugin_commands()
    except VarscoreError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli(prog_name="varscore")
