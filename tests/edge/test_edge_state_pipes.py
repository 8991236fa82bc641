"""A pipe (FIFO) put in the place of a file the kiosk reads from its state folder at start is
not waited on: opened for reading, it waits for a writer for ever, and the kiosk never
started (systemd's start timeout, then the same again). Each reader takes it as a file it
cannot use, as it takes a garbled one."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.transport.session_topics import SessionTopics
from appliance.updates.install import POINTER, ModelStore
from appliance.updates.rejected import REJECTED_FILE, RejectedReleases


def _session(state: Path) -> Any:
    return SessionTopics(state / "session-topics.json", "edge-s-k", ("t/ack",)).clean_start()


def _pointer(state: Path) -> Any:
    return ModelStore(state).read().current


def _rejected(state: Path) -> Any:
    return "0" * 64 in RejectedReleases(state / "models")


READERS: dict[str, tuple[str, Callable[[Path], Any], Any]] = {
    "session-topics": ("session-topics.json", _session, True),  # unknown: a clean session
    "model-pointer": (f"models/{POINTER}", _pointer, None),  # nothing installed
    "refused-releases": (f"models/{REJECTED_FILE}", _rejected, False),  # none remembered
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_pipe_in_place_of_a_state_file_is_not_waited_on(tmp_path: Path, reader: str) -> None:
    name, read, unusable = READERS[reader]
    pipe = tmp_path / name
    pipe.parent.mkdir(exist_ok=True)
    os.mkfifo(pipe)
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(read(tmp_path)), daemon=True)
    thread.start()
    thread.join(10)
    try:
        assert not thread.is_alive(), f"{name}: still waiting for a writer to the pipe"
    finally:
        with contextlib.suppress(OSError):  # one waiting for a writer gets one, and EOF
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    assert answers == [unusable]
