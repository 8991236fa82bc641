"""Signed model bundles: verify, validate, install, roll back."""
