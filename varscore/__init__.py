"""varscore: score genetic variants by their predicted effect on gene expression."""

__version__ = "0.1.0"
