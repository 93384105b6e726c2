"""Sequences: FASTA access, reference records and genome builds, exons, edits of a window, personal genomes, PWMs and one-hot encoding."""
