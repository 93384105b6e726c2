"""Model bundles, the catalogue of published models and their download, checkpoint import and replicate ensembles."""
