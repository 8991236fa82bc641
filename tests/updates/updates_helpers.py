"""A model repository, its HTTP server and simulated kiosks for the update tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.transport.payloads import FEATURE_KEYS
from appliance.updates.manifest import Assignment, Device, ModelManifest
from appliance.updates.operations import assign, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repository import FileRepository
from appliance.updates.serve import RepositoryServer
from appliance.updates.testing import ModelEvents, kiosk_daemon, linear_model

# Representative inputs: typical magnitudes of each feature (kime_score, index 9, about 30).
SCALES = np.array(
    [90, 75, 150, 0.02, 6, 12, 0.08, 45, 0.3, 30, 60, 10, 15, 30, 20, 0.05], dtype=np.float32
)
KIME = FEATURE_KEYS.index("kime_score")


def inputs(rows: int = 12, seed: int = 0) -> list[list[float]]:
    """Self-test inputs at realistic scales."""
    rng = np.random.default_rng(seed)
    return (rng.lognormal(0.0, 0.2, (rows, len(FEATURE_KEYS))) * SCALES).tolist()


def coarse_on_high_kime() -> np.ndarray:
    """Weights that say "coarse" when kime_score > 50 (the kiosks' fixed features say 61)."""
    weights = np.zeros((len(FEATURE_KEYS), 3), np.float32)
    weights[KIME, 2] = 1.0
    return weights


@dataclass
class Fleet:
    """A repository served over HTTP plus kiosk daemons running in threads."""

    tmp: Path
    broker: Any
    prefix: str
    repo: FileRepository
    server: RepositoryServer
    # a site of its own: the MQTT client id (edge-{site}-{device}) is unique on a shared broker
    site: str = field(default_factory=lambda: f"site-{uuid.uuid4().hex[:8]}")
    daemons: dict[str, EdgeDaemon] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, broker: Any, prefix: str, **expiry_s: int) -> Fleet:
        repo = init_repository(tmp / "repo", expiry_s=expiry_s or None)
        server = RepositoryServer(repo.dir / "public").start()
        return cls(tmp, broker, prefix, repo, server)

    def release(self, version: str, *, weights: np.ndarray | None = None,
                bias: Sequence[float] = (2.0, 0.0, 0.0), **manifest: Any) -> ModelManifest:
        model = linear_model(self.tmp / f"model-{version}.onnx", version, weights, bias)
        built = manifest_for(model, version, inputs(), **manifest)
        release_model(self.repo, model, built)
        return built

    def release_failing_self_test(self, version: str) -> ModelManifest:
        """A release whose file gives other answers than the self-test its manifest records."""
        honest = manifest_for(linear_model(self.tmp / "honest.onnx", version), version, inputs())
        other = linear_model(self.tmp / f"other-{version}.onnx", version, bias=(0.0, 3.0, 0.0))
        release_model(self.repo, other, honest)
        return honest

    def config(self, device_id: str, url: str | None = None, **updates: Any) -> Config:
        first = self.tmp / "initial.onnx"
        if not first.exists():
            linear_model(first, "1.0.0")
        data: dict[str, Any] = {
            "device": {"id": device_id, "site": self.site},
            "camera": {"source": "synthetic"},
            "mqtt": {"host": self.broker.host, "port": self.broker.port,
                     "topic_prefix": self.prefix},
            "state_dir": str(self.tmp / device_id),
            "model": {"path": str(first)},
            "edge": {"synthetic_fps": 16},
            "updates": {"url": url or self.server.url,
                        "trusted_root": str(self.repo.metadata_dir / "1.root.json"),
                        "check_interval_s": 600, "health_measurements": 2, **updates},
        }
        return config_from_mapping(data, "test", environ={})

    def kiosk(self, device_id: str, **updates: Any) -> EdgeDaemon:
        daemon = kiosk_daemon(self.config(device_id, **updates))
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        self.daemons[device_id] = daemon
        self.threads.append(thread)
        return daemon

    def assign(self, manifest: ModelManifest, devices: Sequence[str], **kw: Any) -> str:
        return assign(self.repo, [(self.site, d) for d in devices], manifest, **kw)

    def notify_all(self) -> None:
        for daemon in self.daemons.values():
            if daemon.updater is not None:
                daemon.updater.notify()

    def close(self) -> None:
        for daemon in self.daemons.values():
            daemon.request_stop()
        for thread in self.threads:
            thread.join(10)
        self.server.close()


def unmarked(held: Mapping[Device, Assignment]) -> dict[Device, Assignment]:
    """``held`` (signed assignments) without the mark of the halt that put one back
    (``Assignment.halted``): as they were before the rollout replaced them."""
    return {device: assignment.model_copy(update={"halted": None})
            for device, assignment in held.items()}


def wait_installed(events: ModelEvents, device: str, version: str | None = None) -> None:
    """Wait until ``device`` reports its release (``version``, where given) installed and
    healthy (30 s at most)."""
    assert events.wait_until(lambda: (s := events.last_state(device)) is not None
                             and s.state == "installed" and s.healthy is True
                             and (version is None or (s.model is not None
                                                      and s.model.version == version)), 30), \
        events.states.get(device)


class RepositoryClock:
    """The repository's "now" (``FileRepository.now``), held still and moved by the test
    rather than by sleeping: a step that takes seconds longer on a busy machine changes
    nothing. Set in the past, it leaves a kiosk's TUF client, which reads the real clock,
    seeing what the repository signed as that much older."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
        self.at = at
        monkeypatch.setattr(FileRepository, "now", lambda _repo: self.at)

    def advance(self, seconds: float) -> None:
        """Move the repository's time on by ``seconds``."""
        self.at += timedelta(seconds=seconds)
