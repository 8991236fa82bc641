"""Skin measurement: texture (furrows/hills), pores, colour; overlays; synthetic skin."""
