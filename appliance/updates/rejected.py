"""The releases a kiosk refused for good, remembered so that it never tries them again.

A release that failed its self-test or its health check here is refused by its sha256 for as
long as it stays assigned: trying it again at every check would download it, and a release
that failed its health check would go back on probation with customers' results. The newest
MAX_REJECTED are kept in ``rejected.json`` in the model store's folder, so a restart remembers
them; a full disk keeps them until the process ends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from appliance import safejson
from appliance.boundedread import read_bounded
from appliance.updates.repofiles import write_atomically

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.json"
MAX_REJECTED = 200  # releases remembered as refused here, the newest
MAX_REJECTED_FILE_BYTES = 256 * 1024  # their sha256s, some 70 bytes each


class RejectedReleases:
    """The sha256s of the releases refused for good in ``folder``, oldest first."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / REJECTED_FILE
        self._sha256s = self._load()

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._sha256s

    def _load(self) -> dict[str, None]:
        try:
            # read_bounded: a pipe put in its place would hold the kiosk's start for ever
            raw = read_bounded(self.path, MAX_REJECTED_FILE_BYTES).decode("utf-8")
            return dict.fromkeys(safejson.loads(raw))
        except (OSError, ValueError, TypeError):
            return {}

    def remember(self, sha256: str) -> None:
        """Remember a release refused for good here, with the newest MAX_REJECTED others."""
        if not sha256:
            return
        self._sha256s.pop(sha256, None)
        self._sha256s[sha256] = None
        while len(self._sha256s) > MAX_REJECTED:
            del self._sha256s[next(iter(self._sha256s))]
        body = json.dumps(list(self._sha256s)).encode()
        try:
            write_atomically(self.path, body)
        except OSError as exc:  # a full disk: remembered until this process ends
            log.error("%s: could not write (%s); release %s stays refused until a restart",
                      self.path, exc.strerror or exc, sha256[:12])
