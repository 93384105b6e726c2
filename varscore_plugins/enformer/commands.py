"""The Enformer plugin's command: ``varscore models from-enformer``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import click

    from varscore_plugins.enformer.backbone import EnformerBackbone


def add_commands(cli: click.Group) -> None:
    """``varscore models from-enformer``: a single-track scorer from a local pre-trained Enformer."""
    import click

    models = cli.commands.get("models")
    if not isinstance(models, click.Group):  # a command line without the models group
        return

    from varscore.plugin import writes

    @models.command("from-enformer")
    @click.argument("pretrained_dir", type=click.Path(file_okay=False, path_type=Path))
    @click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
    @click.option(
        "--genes",
        "genes_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Gene/TSS table (TSV, GTF or GFF3).",
    )
    @click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA to record.")
    @click.option("--track", default=4950, show_default=True, help="Output track (4950 = CAGE:blood, adult, pool1).")
    @click.option("--center-bins", default=3, show_default=True, help="Centre bins summed into the score.")
    @click.option("--head", "output_head", default="human", show_default=True, help="Enformer output head.")
    @click.option("--window", default=196608, show_default=True, help="Input window in bp.")
    @writes(("output", "-o", "bundle"))
    def models_from_enformer(
        pretrained_dir: Path,
        output: Path,
        genes_path: Path,
        fasta: Path | None,
        track: int,
        center_bins: int,
        output_head: str,
        window: int,
    ) -> None:
        """Make a bundle from a pre-trained Enformer in a local directory (config.json + model.safetensors)."""
        from varscore.genome.fasta import load_genes
        from varscore.models.bundle import BundleMetadata, save_bundle
        from varscore.plugin.checkpoint_format import check_output
        from varscore.plugin.manager import get_backbone, get_output_mode

        genes = load_genes(genes_path)
        backbone = get_backbone("enformer")(
            head="pretrained", pretrained_dir=str(pretrained_dir), output_head=output_head, window_size=window
        ).build()
        scored = {"track": track, "center_bins": center_bins, "stat": "center"}
        built = cast("EnformerBackbone", backbone)
        check_output(scored, built.n_tracks, built.n_bins, kind="enformer")
        mode = get_output_mode("scalar")(track=track, center_bins=center_bins)
        save_bundle(
            output,
            name=output.name,
            backbone=backbone,
            output_mode=mode,
            genes=genes,
            about=BundleMetadata(reference_fasta=fasta, provenance={"pretrained_dir": pretrained_dir.name}),
        )
        click.echo(f"wrote {output}")
