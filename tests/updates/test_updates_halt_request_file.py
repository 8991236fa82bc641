"""The halt request a running deploy looks at while it waits for a wave (`models halt` writes
it into the repository folder): one it cannot use is no request, whatever the file holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.updates.halting import HALT_REQUEST, MAX_HALT_REQUEST_BYTES, halt_requested
from appliance.updates.operations import init_repository


@pytest.mark.parametrize("content", [b"[" * MAX_HALT_REQUEST_BYTES, b"\xff", b"[]"])
def test_a_halt_request_the_deploy_cannot_read_is_no_request(
        tmp_path: Path, content: bytes) -> None:
    repo = init_repository(tmp_path / "repo")
    (repo.dir / HALT_REQUEST).write_bytes(content)
    assert halt_requested(repo, "r0llout1") is None  # on main: RecursionError ended the deploy


def test_the_halt_request_of_models_halt_is_read(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    (repo.dir / HALT_REQUEST).write_text(json.dumps({"rollout": "r0llout1", "reason": "ops"}))
    assert halt_requested(repo, "r0llout1") == "ops"
    assert halt_requested(repo, "other") is None
