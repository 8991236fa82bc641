"""A root that lists one key twice in a role: a threshold one key meets alone, refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata
from updates_helpers import inputs

from appliance.config import config_from_mapping
from appliance.updates.fetch import RepositoryClient, UpdateRefusedError, read_trusted_root
from appliance.updates.operations import assign, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repository import FileRepository
from appliance.updates.serve import RepositoryServer
from appliance.updates.testing import linear_model


def _client(repo: FileRepository, url: str, state: Path, root: Path) -> RepositoryClient:
    config = config_from_mapping({"updates": {"url": url, "trusted_root": str(root)}}, "test",
                                 environ={})
    return RepositoryClient(config.updates, "lab", "k1", state)


def _targets_key_twice(repo: FileRepository) -> None:
    """What a root signer could sign: the one targets key listed again under a second key id,
    the targets threshold 2, and targets signed under both ids (one key, one signature)."""
    with repo.edit_root() as root:
        [keyid] = root.roles["targets"].keyids
        key = root.keys[keyid]
        twin = SSlibKey("ab" * 32, key.keytype, key.scheme, dict(key.keyval))
        root.add_key(twin, "targets")
        root.roles["targets"].threshold = 2
    shutil.copy(repo.keys_dir / "targets" / f"{keyid}.pem",
                repo.keys_dir / "targets" / f"{twin.keyid}.pem")
    current = repo.metadata_dir / f"{repo.latest_version('targets')}.targets.json"
    repo.close("targets", Metadata.from_bytes(current.read_bytes()))  # under both key ids
    repo.publish()


def test_a_root_listing_one_key_under_two_key_ids_is_refused_by_the_kiosk(
    tmp_path: Path
) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    assign(repo, [("lab", "k1")], manifest)
    server = RepositoryServer(repo.dir / "public").start()
    try:
        client = _client(repo, server.url, tmp_path / "state", repo.metadata_dir / "1.root.json")
        assert client.check() is not None  # the honest repository: the assignment is read
        _targets_key_twice(repo)
        assert json.loads((repo.metadata_dir / "2.root.json").read_bytes())["signed"]["roles"][
            "targets"]["threshold"] == 2
        for _ in range(2):  # refused, and again at the next check
            with pytest.raises(UpdateRefusedError, match=r"lists one key of role 'targets' "
                               r"under two key ids .*threshold of 2"):
                client.check()
        # a kiosk set up from that root refuses to start from it
        with pytest.raises(ValueError, match=r"updates\.trusted_root: .*under two key ids"):
            _client(repo, server.url, tmp_path / "other", repo.metadata_dir / "2.root.json")
    finally:
        server.close()


def test_a_root_listing_one_key_id_twice_is_refused_as_python_tuf_refuses_it(
    tmp_path: Path
) -> None:
    repo = init_repository(tmp_path / "repo")
    body = json.loads((repo.metadata_dir / "1.root.json").read_bytes())
    targets = body["signed"]["roles"]["targets"]
    targets["keyids"] *= 2
    targets["threshold"] = 2
    forged = tmp_path / "root.json"
    forged.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="not TUF root metadata") as refused:
        read_trusted_root(str(forged))
    assert "Nonunique keyids" in str(refused.value.__cause__.__cause__)
