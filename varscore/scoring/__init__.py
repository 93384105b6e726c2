"""Variant scoring: the gene-window engine and workflow, variant-centred scoring and calibration, detail tables, genome-browser tracks and sharded runs."""
