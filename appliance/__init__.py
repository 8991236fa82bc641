"""appliance: the skin-analysis kiosk, its fleet back office, and pathology batch inference."""

__version__ = "0.1.0"
