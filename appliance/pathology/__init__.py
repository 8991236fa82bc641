"""Pathology: slides and tiles, tissue mask, stain normalisation, batching, metrics, heatmaps."""
