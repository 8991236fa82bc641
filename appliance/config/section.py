"""The base of every config section: unknown keys are errors and a loaded config is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A block of config.yaml; a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
