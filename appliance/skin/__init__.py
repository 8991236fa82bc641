"""Skin measurement only: texture (furrows/hills), pores, colour, calibration, overlay."""
