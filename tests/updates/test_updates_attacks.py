"""Each attack or fault is refused with its reason while the old model keeps serving.

Real mosquitto, a real HTTP server over the repository folder, a real edge daemon with its
model updater; the attacker edits the served files (holding, where the attack needs it, an
online key: snapshot/timestamp or fleet, never the targets key).
"""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata
from updates_helpers import Fleet, inputs

from appliance.inference.runner import RUN_DEADLINE_S
from appliance.transport.payloads import ModelState
from appliance.updates.defaults import FLEET
from appliance.updates.operations import release_model
from appliance.updates.release import manifest_for
from appliance.updates.serve import RepositoryServer
from appliance.updates.testing import ModelEvents, linear_model

pytestmark = pytest.mark.broker


def _refused_after(fleet: Fleet, events: ModelEvents, attack: Callable[[], None],
                   device: str = "k1") -> ModelState:
    """Start a kiosk on 1.0.0, run ``attack``, notify; the kiosk's rejection, old model kept."""
    daemon = fleet.daemons.get(device) or fleet.kiosk(device)
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    attack()
    daemon.updater.notify()
    assert events.wait_until(
        lambda: (s := events.last_state(device)) is not None and s.state == "rejected", 30
    ), events.states.get(device)
    state = events.last_state(device)
    assert state is not None
    assert state.reason
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"
    served = len(events.versions[device])
    assert events.wait_until(lambda: len(events.versions[device]) > served, 20)
    assert set(events.versions[device].values()) == {"1.0.0"}
    return state


def _latest(fleet: Fleet, role: str) -> Path:
    return fleet.repo.metadata_dir / f"{fleet.repo.latest_version(role)}.{role}.json"


def _model_file(fleet: Fleet, version: str) -> Path:
    return next((fleet.repo.targets_dir / "models").rglob(f"*-{version}.onnx"))


def _release_and_assign(fleet: Fleet, version: str = "1.1.0", **manifest: Any) -> None:
    fleet.assign(fleet.release(version, **manifest), ["k1"])


def test_bad_signature_on_targets_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    def attack() -> None:
        _release_and_assign(fleet)
        path = _latest(fleet, "targets")
        data = json.loads(path.read_text())
        for info in data["signed"]["targets"].values():
            info["hashes"]["sha256"] = "0" * 64  # point at another file, keep the signature
        path.write_text(json.dumps(data))

    state = _refused_after(fleet, events, attack)
    assert "signature check failed" in state.reason


def test_targets_signed_by_another_key_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    def attack() -> None:
        _release_and_assign(fleet)
        md = Metadata.from_file(str(_latest(fleet, "targets")))
        md.signed.version += 1
        md.signatures.clear()
        md.sign(CryptoSigner.generate_ed25519())
        md.to_file(str(fleet.repo.metadata_dir / f"{md.signed.version}.targets.json"))
        fleet.repo.publish()  # the attacker holds the online snapshot and timestamp keys

    state = _refused_after(fleet, events, attack)
    assert "signature check failed" in state.reason
    assert "targets" in state.reason


def test_one_flipped_byte_in_the_model_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    def attack() -> None:
        _release_and_assign(fleet)
        model = _model_file(fleet, "1.1.0")
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))

    state = _refused_after(fleet, events, attack)
    assert "does not match its signed length/hash" in state.reason


def test_target_longer_than_its_signed_length_is_refused(
    fleet: Fleet, events: ModelEvents
) -> None:
    def attack() -> None:
        _release_and_assign(fleet)
        with _model_file(fleet, "1.1.0").open("ab") as model:
            model.write(b"\0" * 100_000)  # endless data, as far as the client can tell

    state = _refused_after(fleet, events, attack)
    assert "longer than its signed length" in state.reason


def test_expired_timestamp_is_refused(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, events: ModelEvents
) -> None:
    fleet = Fleet.start(tmp_path, mqtt_broker, topic_prefix, timestamp=3)
    try:
        def attack() -> None:
            _release_and_assign(fleet)
            events.wait_until(lambda: False, 4)  # nobody re-signs: the timestamp expires

        state = _refused_after(fleet, events, attack)
        assert "metadata expired" in state.reason
    finally:
        fleet.close()


def test_older_targets_metadata_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    fleet.release("1.1.0")  # targets version 2, not assigned: the kiosk only learns it
    daemon.updater.notify()
    assert events.wait_until(lambda: daemon.updater.checks >= 2, 20)

    def attack() -> None:
        with fleet.repo.edit_snapshot() as snapshot:  # a compromised snapshot key
            snapshot.meta["targets.json"].version = 1
        fleet.repo.do_timestamp()

    state = _refused_after(fleet, events, attack)
    assert "version check failed" in state.reason


def test_snapshot_and_targets_that_do_not_belong_together_are_refused(
    fleet: Fleet, events: ModelEvents
) -> None:
    def attack() -> None:
        _release_and_assign(fleet)
        newest = _latest(fleet, "targets")
        newest.write_bytes((fleet.repo.metadata_dir / "1.targets.json").read_bytes())

    state = _refused_after(fleet, events, attack)
    assert "version check failed" in state.reason


def test_dot_dot_in_a_target_name_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    def attack() -> None:
        fleet.release("1.1.0")
        evil = fleet.tmp / "evil.json"
        evil.write_text(json.dumps({
            "model": "skin-texture-grade", "version": "1.1.0", "rollout": "evil",
            "target": "models/../../../state/evil.onnx",
        }))
        with fleet.repo.locked():  # a compromised fleet key
            fleet.repo.add_target(FLEET, evil, f"devices/{fleet.site}/k1.json")
            fleet.repo.publish()

    state = _refused_after(fleet, events, attack)
    assert "target name 'models/../../../state/evil.onnx' refused" in state.reason


def test_a_model_that_fails_its_self_test_is_refused(fleet: Fleet, events: ModelEvents) -> None:
    def attack() -> None:
        fleet.assign(fleet.release_failing_self_test("1.1.0"), ["k1"])

    state = _refused_after(fleet, events, attack)
    assert "self-test failed: self-test vector 0: the model says 'normal'" in state.reason


def test_a_model_whose_runs_never_end_is_refused_and_later_updates_still_install(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A release (its targets key holder careless or hostile) whose model answers what its
    self-test recorded, only after a Loop node of 10^11 trips (hours): the kiosk's updater
    waited in its warm-up for ever, said "downloading" last and installed nothing more, a
    later good release included, until a restart, which waited again. Each run is now
    stopped at RUN_DEADLINE_S and the release refused for good, naming it."""
    def attack() -> None:
        honest = manifest_for(linear_model(fleet.tmp / "honest.onnx", "1.1.0"), "1.1.0",
                              inputs())
        looping = linear_model(fleet.tmp / "looping.onnx", "1.1.0", loop_trips=10**11)
        release_model(fleet.repo, looping, honest)  # the same answers: its self-test passes
        fleet.assign(honest, ["k1"])

    state = _refused_after(fleet, events, attack)
    assert "model too slow: " in state.reason
    assert f"did not end within {RUN_DEADLINE_S:g} s" in state.reason
    assert list((fleet.tmp / "k1" / "models").glob(".download-*")) == []
    _release_and_assign(fleet, "1.2.0")
    fleet.daemons["k1"].updater.notify()
    assert events.wait_until(
        lambda: (s := events.last_state("k1")) is not None and s.healthy is True, 30
    ), events.states.get("k1")
    assert fleet.daemons["k1"].classifier.version == "1.2.0"


@pytest.mark.parametrize(("model", "refusal"), [
    ({"one_answer": True}, "the model answers shape [1, 3] for 12 self-test rows; a release "
                           "answers [12, 3]"),
    ({"one_row_only": True}, "the model fails on its 12 self-test rows: "),
])
def test_a_model_answering_one_row_for_its_whole_self_test_is_refused_said_once(
    fleet: Fleet, events: ModelEvents, model: dict[str, bool], refusal: str
) -> None:
    """A model answering one row whatever its batch (a mean over it), or failing on more than
    one (a fixed reshape), passed the one-row warm-up; the self-test's replay then raised a
    ValueError, or ONNX Runtime's own error, nothing caught: the kiosk logged a traceback, said
    nothing after "downloading", and downloaded and tried the release again at every check."""
    def attack() -> None:
        honest = manifest_for(linear_model(fleet.tmp / "honest.onnx", "1.1.0"), "1.1.0",
                              inputs())
        odd = linear_model(fleet.tmp / "odd.onnx", "1.1.0", **model)
        release_model(fleet.repo, odd, honest)
        fleet.assign(honest, ["k1"])

    state = _refused_after(fleet, events, attack)
    assert f"self-test failed: {refusal}" in state.reason
    refusals = len(events.states["k1"])
    daemon = fleet.daemons["k1"]
    checks = daemon.updater.checks
    daemon.updater.notify()
    assert events.wait_until(lambda: daemon.updater.checks > checks, 20)
    assert len(events.states["k1"]) == refusals  # refused for good: not tried, not said again


def test_a_model_for_another_feature_schema_is_refused(
    fleet: Fleet, events: ModelEvents
) -> None:
    state = _refused_after(
        fleet, events, lambda: _release_and_assign(fleet, feature_schema="appliance.features/2")
    )
    assert "incompatible feature schema 'appliance.features/2'" in state.reason


class _CutHandler(http.server.SimpleHTTPRequestHandler):
    """Sends model files' full Content-Length but only half their bytes, then hangs up."""

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        if self.path.endswith(".onnx"):
            data = data[: len(data) // 2]
            self.close_connection = True
        outputfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


def test_a_transfer_cut_halfway_is_retried_then_refused(
    fleet: Fleet, events: ModelEvents
) -> None:
    cutting = RepositoryServer(fleet.repo.dir / "public", handler=_CutHandler).start()
    fleet.daemons["k1"] = fleet.kiosk("k1", url=cutting.url, download_tries=2)
    try:
        state = _refused_after(fleet, events, lambda: _release_and_assign(fleet))
    finally:
        cutting.close()
    assert "download failed" in state.reason
    assert "after 2 tries" in state.reason
    leftovers = list((fleet.tmp / "k1" / "models").glob(".download-*"))
    assert leftovers == []


class _CutTimestampHandler(http.server.SimpleHTTPRequestHandler):
    """Sends timestamp.json's full Content-Length but only half its bytes, then hangs up, the
    first ``cuts`` times it is asked (a server restarting, a link dropping, or an attacker)."""

    cuts: ClassVar[list[int]] = [0]  # one list per handler class made by _cut_timestamps

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        if self.path.endswith("timestamp.json") and self.cuts[0] > 0:
            self.cuts[0] -= 1
            data = data[: len(data) // 2]
            self.close_connection = True
        outputfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


def _cut_timestamps(cuts: int) -> type[_CutTimestampHandler]:
    return type("CutTimestamps", (_CutTimestampHandler,), {"cuts": [cuts]})


def test_metadata_cut_at_every_try_is_a_refusal_said_not_a_silent_check(
    fleet: Fleet, events: ModelEvents
) -> None:
    """urllib3's error from a body cut short escaped the kiosk's check: it logged a traceback,
    reported nothing (its last report stood, a rollout waited out its timeout) and did not try
    again until its next check (an hour by default)."""
    cutting = RepositoryServer(fleet.repo.dir / "public", handler=_cut_timestamps(10**6)).start()
    fleet.daemons["k1"] = fleet.kiosk("k1", url=cutting.url, download_tries=2)
    try:
        state = _refused_after(fleet, events, lambda: _release_and_assign(fleet))
    finally:
        cutting.close()
    assert "download failed: DownloadError: transfer broke off after 2 tries" in state.reason
    assert "timestamp.json: cut before its end (ProtocolError" in state.reason


def test_metadata_cut_once_is_tried_again_and_the_update_installs(
    fleet: Fleet, events: ModelEvents
) -> None:
    handler = _cut_timestamps(0)
    cutting = RepositoryServer(fleet.repo.dir / "public", handler=handler).start()
    daemon = fleet.daemons["k1"] = fleet.kiosk("k1", url=cutting.url, download_tries=2)
    try:
        assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
        _release_and_assign(fleet)
        handler.cuts[0] = 1
        daemon.updater.notify()
        assert events.wait_until(
            lambda: (s := events.last_state("k1")) is not None and s.healthy is True, 30
        ), events.states.get("k1")
    finally:
        cutting.close()
    assert handler.cuts == [0]
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.1.0"
    assert "rejected" not in [s.state for s in events.states["k1"]]


class _DripHandler(http.server.SimpleHTTPRequestHandler):
    """Sends a model file one byte every 0.2 s: each byte well within the kiosk's socket
    timeout, the whole file (about 1.5 kB) in some five minutes."""

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        if not self.path.endswith(".onnx"):
            outputfile.write(data)
            return
        for index in range(len(data)):
            try:
                outputfile.write(data[index:index + 1])
                outputfile.flush()
            except OSError:  # the kiosk gave up and hung up, as it should
                return
            time.sleep(0.2)

    def log_message(self, *args: Any) -> None:
        return


def test_a_model_sent_a_byte_at_a_time_is_refused_at_the_deadline_not_awaited_for_ever(
    fleet: Fleet, events: ModelEvents
) -> None:
    """TUF's slow retrieval attack: a server (or anyone between) that sends the model a byte
    now and then, each within the socket timeout, held the kiosk at "downloading" for as long
    as it liked (the updater read no later assignment meanwhile). Past
    updates.download_deadline_s the transfer is refused; the old model serves on."""
    dripping = RepositoryServer(fleet.repo.dir / "public", handler=_DripHandler).start()
    fleet.daemons["k1"] = fleet.kiosk("k1", url=dripping.url, download_tries=1,
                                      download_timeout_s=1, download_deadline_s=2.0)
    try:
        state = _refused_after(fleet, events, lambda: _release_and_assign(fleet))
    finally:
        dripping.close()
    assert "download failed: SlowRetrievalError" in state.reason
    assert "-1.1.0.onnx: still arriving after 2 s (updates.download_deadline_s)" in state.reason
    assert list((fleet.tmp / "k1" / "models").glob(".download-*")) == []
