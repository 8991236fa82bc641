"""What ``pathology serve`` checks before it starts, and ``config check`` with it: the folders
and files its config names (light: no model or backend is loaded here)."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import PathologyConfig
from appliance.filekind import not_a_file


def unusable(settings: PathologyConfig) -> list[str]:
    """Each thing the server could not use, named by its key (empty where the config gives no
    slide roots: a kiosk's config has none): a slide root that is no folder, a model file that
    is not there, a results folder that is no writable folder."""
    if not settings.serves_slides:
        return []
    refused = [f"pathology.slide_roots: {root}: not a folder"
               for root in settings.slide_roots if not os.path.isdir(root)]
    refused += [f"pathology.slide_roots_by_login.{login}: {root}: not a folder"
                for login, roots in settings.slide_roots_by_login.items()
                for root in roots if not os.path.isdir(root)]
    for key in ("model", "int8_model"):
        value = getattr(settings, key)
        if value is not None and not os.path.isfile(value):
            refused.append(not_a_file(f"pathology.{key}", Path(value)))
    results = _unwritable(Path(settings.results_dir))
    if results:
        refused.append(f"pathology.results_dir: {settings.results_dir}: {results}")
    return refused


def _unwritable(folder: Path) -> str | None:
    """Why the server could not write heatmaps under ``folder`` (made when missing), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is no folder" if existing != folder else "not a folder"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    return "not writable" if existing == folder else f"cannot be made ({existing} is not writable)"
