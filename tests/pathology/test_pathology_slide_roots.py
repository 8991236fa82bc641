"""One lab's slides are not another's: each job login submits slides under its own folders
(pathology.slide_roots_by_login), by absolute path, ``..`` or a link alike; a login the
mapping does not name is refused unless pathology.unlisted_logins_use_slide_roots says so;
and a refusal never tells one login whether another's slide is there."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from appliance.config import PathologyConfig, config_from_mapping, load_config
from appliance.pathology.jobrun import JobRun
from appliance.pathology.jobs import (
    ANY_JOB,
    JOB_SCHEMA,
    JobRefusedError,
    JobRequest,
    SlideRequest,
    request_topic,
    state_topic,
)
from appliance.pathology.jobstore import open_pathology_store
from appliance.pathology.preflight import unusable
from appliance.pathology.prepare import TileSettings
from appliance.pathology.preparing import SlidePreparation
from appliance.pathology.requestcheck import login_request
from appliance.pathology.server import PathologyServer
from appliance.pathology.slideworker import prepare_for_model
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pathology_helpers import counting_subacks, subscribed

REPO = Path(__file__).resolve().parents[2]
LEADS_OUTSIDE = ("leads outside the slide roots now (a link, or a folder on its way, replaced "
                 "since its job was taken); refused")


@dataclass
class Labs:
    """Two labs' slide folders, each with one slide, and a shared folder."""

    a: Path
    b: Path
    shared: Path

    def settings(self, **pathology: Any) -> PathologyConfig:
        mapping = {"slide_roots_by_login": {"lab-a": [str(self.a)], "lab-b": [str(self.b)]},
                   "slide_roots": [str(self.shared)], **pathology}
        return config_from_mapping({"pathology": mapping}).pathology


@pytest.fixture
def labs(tmp_path: Path) -> Labs:
    found = Labs(tmp_path / "slides" / "lab-a", tmp_path / "slides" / "lab-b",
                 tmp_path / "slides" / "shared")
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 1, 0.5, seed=3))
    for folder in (found.a, found.b, found.shared):
        folder.mkdir(parents=True)
        Image.fromarray(rgb).save(folder / "s.jpg", quality=88)
    return found


def _payload(job_id: str, paths: list[Path | str]) -> bytes:
    return json.dumps({"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
                       "slides": [{"path": str(p), "um_per_px": 1.0} for p in paths]}).encode()


def _refusal(settings: PathologyConfig, job_id: str, path: Path | str) -> str:
    with pytest.raises(JobRefusedError) as caught:
        login_request(settings, _payload(job_id, [path]), job_id)
    assert caught.value.job_id == job_id  # refused as that job's: on its login's topics
    return str(caught.value)


def test_a_login_submits_its_own_slides_and_none_of_another_lab_s(labs: Labs) -> None:
    """Lab A's login asks for lab B's slide by absolute path, by ``..`` out of its own
    folder, and by a link in its own folder: each is refused as outside its slide roots,
    word for word as a path to nothing in B's folder is, and as a link to a link loop there
    is (it was "cannot be resolved", which said what lies in B's folder)."""
    settings = labs.settings()
    own = login_request(settings, _payload("lab-a/own", [labs.a / "s.jpg"]), "lab-a/own")
    assert own.slides[0].path == str((labs.a / "s.jpg").resolve())
    (labs.a / "to-b.jpg").symlink_to(labs.b / "s.jpg")
    (labs.a / "to-nothing.jpg").symlink_to(labs.b / "nothing.jpg")
    (labs.b / "loop.jpg").symlink_to("loop.jpg")
    (labs.a / "to-loop.jpg").symlink_to(labs.b / "loop.jpg")
    ways = {labs.b / "s.jpg": "absolute", f"{labs.a}/../lab-b/s.jpg": "dotdot",
            labs.a / "to-b.jpg": "link", labs.shared / "s.jpg": "shared",
            labs.b / "nothing.jpg": "missing", labs.a / "to-nothing.jpg": "link-missing",
            labs.b / "loop.jpg": "loop", labs.a / "to-loop.jpg": "link-loop"}
    for path, way in ways.items():
        reason = _refusal(settings, f"lab-a/{way}", path)
        assert reason == f"slides[0].path {str(path)!r} is outside the slide roots", way
    assert login_request(settings, _payload("lab-b/own", [labs.b / "s.jpg"]), "lab-b/own")


def test_a_login_the_mapping_does_not_name_is_refused_unless_the_operator_says_so(
    labs: Labs,
) -> None:
    refused = labs.settings()
    assert _refusal(refused, "lab-c/j1", labs.shared / "s.jpg") == (
        "login 'lab-c' has no slide folders on this server (pathology.slide_roots_by_login "
        "does not name it); ask its operator to add them")
    allowed = labs.settings(unlisted_logins_use_slide_roots=True)
    assert login_request(allowed, _payload("lab-c/j1", [labs.shared / "s.jpg"]), "lab-c/j1")
    assert "outside the slide roots" in _refusal(allowed, "lab-c/j2", labs.a / "s.jpg")
    assert "outside the slide roots" in _refusal(allowed, "lab-a/j3", labs.shared / "s.jpg")


def test_without_the_mapping_every_login_uses_the_shared_roots(labs: Labs) -> None:
    """A single-lab config (slide_roots only) works as before, for any login."""
    settings = config_from_mapping({"pathology": {"slide_roots": [str(labs.a.parent)]}}
                                   ).pathology
    for job_id in ("lab-a/j1", "anonymous/j2"):
        assert login_request(settings, _payload(job_id, [labs.b / "s.jpg"]), job_id)


def test_a_slide_swapped_for_a_link_into_another_lab_is_refused_alike_there_or_not(
    labs: Labs,
) -> None:
    """Accepted, then replaced in A's folder by a link into B's: the worker refused it only
    once opened, so a link to nothing there failed as "slide file not found" and one to a
    slide as "leads outside": A learnt which of B's slides exist. Now both are refused
    before opening, alike."""
    settings = TileSettings(tile_px=64, tile_um=128.0)
    slide = labs.a / "swapped.jpg"
    for target in (labs.b / "s.jpg", labs.b / "nothing.jpg"):
        slide.unlink(missing_ok=True)
        slide.symlink_to(target)
        prepared = prepare_for_model("lab-a/j1", 0, str(slide), 1.0, settings,
                                     roots=[str(labs.a)])
        assert prepared.error == f"{slide}: {LEADS_OUTSIDE}"


def test_a_refused_slide_does_not_name_where_another_lab_s_link_leads(labs: Labs) -> None:
    """A's slide swapped for a link to B's link ``latest.jpg``: the refusal, A's job's slide
    result, said where it led, a name of B's (here a patient's) that A had no other way to
    read."""
    (labs.b / "2026").mkdir()
    (labs.b / "s.jpg").rename(labs.b / "2026" / "P4711-smith.jpg")
    (labs.b / "latest.jpg").symlink_to(labs.b / "2026" / "P4711-smith.jpg")
    (labs.a / "x.jpg").symlink_to(labs.b / "latest.jpg")
    prepared = prepare_for_model("lab-a/j1", 0, str(labs.a / "x.jpg"), 1.0,
                                 TileSettings(tile_px=64, tile_um=128.0), roots=[str(labs.a)])
    assert prepared.error == f"{labs.a / 'x.jpg'}: {LEADS_OUTSIDE}"


def test_a_swap_between_the_look_and_the_open_is_refused_on_the_opened_file(
    labs: Labs, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The look before opening sees A's own file; the link into B's folder comes just after
    it (the resolution answered as before the swap): the opened file's own look refuses it."""
    slide = labs.a / "raced.jpg"
    slide.symlink_to(labs.b / "s.jpg")
    resolved = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda path, **kwargs: str(path) if
                        str(path) == str(slide) else resolved(path, **kwargs))
    prepared = prepare_for_model("lab-a/j1", 0, str(slide), 1.0,
                                 TileSettings(tile_px=64, tile_um=128.0), roots=[str(labs.a)])
    assert prepared.error == f"{slide}: {LEADS_OUTSIDE}"


class _Pool:
    """Records what the preparation would hand its workers."""

    def __init__(self) -> None:
        self.roots: list[tuple[str, ...]] = []

    def submit(self, *_args: Any, roots: tuple[str, ...]) -> Future[Any]:
        self.roots.append(roots)
        return Future()


def test_a_job_s_slides_are_read_inside_its_login_s_roots_only(labs: Labs) -> None:
    """The worker's second look (where the opened file lies) took the shared slide_roots: a
    slide of A's job swapped for a link into a root of B's passed it. It takes the roots of
    the job's login, and a login with none now (the config changed while its job waited)
    fails its slide unread: no roots would mean no check."""
    preparation = SlidePreparation()
    preparation.settings = labs.settings()
    preparation.pool = _Pool()  # type: ignore[assignment]
    preparation.tile_settings = TileSettings(tile_px=64, tile_um=128.0)
    for job_id in ("lab-a/j1", "lab-b/j1"):
        request = JobRequest(job_id, (SlideRequest(str(labs.a / "s.jpg"), 1.0, "s"),), "")
        preparation._prepare(JobRun(request, set()), 0)  # noqa: SLF001 - the dispatch's step
    assert preparation.pool.roots == [(str(labs.a),), (str(labs.b),)]  # type: ignore[attr-defined]
    request = JobRequest("lab-c/j1", (SlideRequest(str(labs.shared / "s.jpg"), 1.0, "s"),), "")
    prepared = preparation._prepare(JobRun(request, set()), 0).result(0)  # noqa: SLF001
    assert prepared.error == (f"{labs.shared / 's.jpg'}: login 'lab-c' has no slide folders "
                              "on this server now (pathology.slide_roots_by_login); refused, "
                              "unread")
    assert len(preparation.pool.roots) == 2  # type: ignore[attr-defined]


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(("section", "said"), [
    ({"slide_roots_by_login": {"lab a": ["/srv/slides/a"]}},
     "pathology.slide_roots_by_login: 'lab a' is no job login: 1-64 of A-Z a-z 0-9 _ . -"),
    ({"slide_roots_by_login": {"lab-a": []}},
     "pathology.slide_roots_by_login: lab-a: give its folders as a list of 1 or more"),
    ({"slide_roots_by_login": {"lab-a": "/srv/slides/a"}},
     "pathology.slide_roots_by_login.lab-a: got '/srv/slides/a'; expected a valid list"),
    ({"slide_roots": ["/srv/slides"], "unlisted_logins_use_slide_roots": True},
     "pathology: pathology.unlisted_logins_use_slide_roots is true but "
     "pathology.slide_roots_by_login names no login"),
    ({"slide_roots_by_login": {"lab-a": ["/srv/slides/a"]},
      "unlisted_logins_use_slide_roots": True},
     "pathology: pathology.unlisted_logins_use_slide_roots is true but pathology.slide_roots "
     "is empty"),
])
def test_config_check_names_the_key_of_a_bad_mapping(
    tmp_path: Path, section: dict[str, Any], said: str,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pathology": section}))
    checked = _check(path)
    assert checked.returncode == 2, checked.stdout
    assert said in checked.stderr, checked.stderr


def test_a_login_s_folders_are_relative_to_the_config_file_and_must_be_folders(
    tmp_path: Path,
) -> None:
    (tmp_path / "slides" / "a").mkdir(parents=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pathology": {
        "slide_roots_by_login": {"lab-a": ["slides/a"], "lab-b": ["slides/b"]},
        "results_dir": str(tmp_path / "out")}}))
    settings = load_config(path, environ={}).pathology
    assert settings.slide_roots_of("lab-a") == [str(tmp_path / "slides" / "a")]
    assert [problem for problem in unusable(settings) if "slide_roots" in problem] == [
        f"pathology.slide_roots_by_login.lab-b: {tmp_path / 'slides' / 'b'}: not a folder"]


class _States:
    """Every job state published under a prefix."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.heard: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: dict[str, dict[str, Any]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"slideroots-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: m.payload and self.heard.put(
            json.loads(m.payload))
        self.client.connect(host, port)
        self.host, self.port = host, port
        counting_subacks(self.client)
        self.client.loop_start()
        subscribed(self.client, [(state_topic(prefix, ANY_JOB), 1)])
        self.prefix = prefix

    def submit(self, job_id: str, paths: list[Path | str]) -> None:
        self.client.publish(request_topic(self.prefix, job_id), _payload(job_id, paths), qos=1,
                            retain=True).wait_for_publish(5)

    def ended(self, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        while self.seen.get(job_id, {}).get("state") not in ("done", "failed"):
            state = self.heard.get(timeout=timeout_s)
            self.seen[state["job_id"]] = state
        return self.seen[job_id]


@pytest.fixture
def states(mqtt_broker: Any) -> Iterator[_States]:
    watch = _States(mqtt_broker.host, mqtt_broker.port,
                    f"test/slideroots-{uuid.uuid4().hex[:10]}")
    yield watch
    watch.client.disconnect()
    watch.client.loop_stop()


@pytest.mark.broker
def test_a_server_scores_a_lab_s_own_slide_and_refuses_it_another_lab_s(
    labs: Labs, tmp_path: Path, states: _States,
) -> None:
    """End to end: lab A's job for its own slide is done; its job for lab B's slide, and a
    job of a login the mapping does not name, fail with the reason on their own state."""
    config = config_from_mapping({
        "mqtt": {"host": states.host, "port": states.port,
                 "topic_prefix": states.prefix},
        "state_dir": str(tmp_path / "state"),
        "pathology": {"client_id": f"slideroots-{uuid.uuid4().hex[:8]}",
                      "slide_roots": [str(labs.shared)],
                      "slide_roots_by_login": {"lab-a": [str(labs.a)], "lab-b": [str(labs.b)]},
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})
    (tmp_path / "state").mkdir()
    store = open_pathology_store(f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}")
    server = PathologyServer(config, store)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        states.submit("lab-a/theirs", [labs.b / "s.jpg"])
        states.submit("lab-c/shared", [labs.shared / "s.jpg"])
        states.submit("lab-a/own", [labs.a / "s.jpg"])
        theirs = states.ended("lab-a/theirs")
        assert (theirs["state"], theirs["reason"]) == (
            "failed", f"slides[0].path {str(labs.b / 's.jpg')!r} is outside the slide roots")
        assert "login 'lab-c' has no slide folders" in states.ended("lab-c/shared")["reason"]
        own = states.ended("lab-a/own")
        assert (own["state"], own["slides_done"]) == ("done", 1), own
        assert not own["results"][0]["error"], own["results"]
    finally:
        stop.set()
        thread.join(30)
        store.close()


def test_a_config_written_out_in_full_loads_again() -> None:
    """A config dumped with every default (``unlisted_logins_use_slide_roots: false`` and no
    ``slide_roots_by_login`` among them), as the update tests and an operator's
    ``model_dump`` write it, loads back unchanged: the false default said out loud is no
    mistake, only true without a mapping is."""
    written = config_from_mapping({}).model_dump(mode="json")
    assert written["pathology"]["unlisted_logins_use_slide_roots"] is False
    assert config_from_mapping(written, environ={}).model_dump(mode="json") == written
