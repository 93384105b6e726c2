"""The surface plugin authors import: hook specifications, the backbone and output-mode contracts, the PyTorch backbone base, the plugin manager, conformance checks and the plugin template."""
