"""Variant analyses: ISM tables, high-scoring variants, drivers, attributions, enrichments, figures."""
