"""Generators with known truth, kept apart from the code that measures (``skimage.data`` style).

``micrometer``: photos of a stage micrometer at a known µm per pixel, for ``appliance calibrate``.
"""
