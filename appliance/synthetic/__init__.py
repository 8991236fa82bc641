"""Every generator with known truth: skin frames, H&E cohorts, a simulated fleet.

The package mirrors ``appliance synth ...``; ``micrometer`` draws stage-micrometer photos at a
known µm per pixel for ``appliance calibrate``.

Generated data lives here, apart from the packages that measure it (``skin``, ``pathology``),
as scikit-image keeps its sample data in ``skimage.data``.
"""
