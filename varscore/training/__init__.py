"""Cohorts, the Lightning module and trainer, the fine-tuning workflow, evaluation and uncertainty."""
