"""The repository's HTTP server serves published files only: no temporaries, no way out."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.updates.serve import RepositoryServer
from tests.slow_clients import answer_to, check_the_cap, silent_connections


@pytest.fixture
def public(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    public_dir = tmp_path / "repo" / "public"
    (public_dir / "metadata").mkdir(parents=True)
    (public_dir / "metadata" / "timestamp.json").write_bytes(b"{}")
    server = RepositoryServer(public_dir).start()
    try:
        yield public_dir, server.url
    finally:
        server.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_published_file_is_served(public: tuple[Path, str]) -> None:
    _public_dir, url = public
    assert _status(f"{url}/metadata/timestamp.json") == 200


def test_a_temporary_left_by_a_killed_release_is_not_served(public: tuple[Path, str]) -> None:
    public_dir, url = public
    (public_dir / "metadata" / ".snapshot.json.k2j3h4").write_bytes(b"half")
    (public_dir / ".staging").mkdir()
    (public_dir / ".staging" / "model.onnx").write_bytes(b"half")
    assert _status(f"{url}/metadata/.snapshot.json.k2j3h4") == 404
    assert _status(f"{url}/.staging/model.onnx") == 404


def test_a_symlink_out_of_public_is_not_followed(public: tuple[Path, str]) -> None:
    public_dir, url = public
    secret = public_dir.parent / "keys" / "targets.key"
    secret.parent.mkdir()
    secret.write_bytes(b"private key")
    (public_dir / "metadata" / "key.json").symlink_to(secret)
    (public_dir / "keys").symlink_to(secret.parent, target_is_directory=True)
    (public_dir / "metadata" / "inside.json").symlink_to(public_dir / "metadata" / "timestamp.json")
    assert _status(f"{url}/metadata/key.json") == 404
    assert _status(f"{url}/keys/targets.key") == 404
    assert _status(f"{url}/metadata/inside.json") == 200  # a link that stays inside is published


def test_a_symlink_loop_is_not_found_and_the_server_stays_up(public: tuple[Path, str]) -> None:
    public_dir, url = public
    (public_dir / "metadata" / "a.json").symlink_to(public_dir / "metadata" / "b.json")
    (public_dir / "metadata" / "b.json").symlink_to(public_dir / "metadata" / "a.json")
    assert _status(f"{url}/metadata/a.json") == 404
    assert _status(f"{url}/metadata/timestamp.json") == 200


def test_names_no_file_can_have_are_not_found_and_no_traceback_is_printed(
    public: tuple[Path, str], capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A NUL (%00), a name part or a path longer than the file system takes: each raised out
    of the handler (socketserver printed its traceback on stderr, the path echoed in it, and
    the client got no answer). Each is 404 now; a client that hangs up mid-answer is one log
    line, not a traceback either."""
    _public_dir, url = public
    for path in ("/metadata/%00", "/metadata/timestamp.json%00.txt",
                 "/metadata/" + "a" * 300, "/" + "a/" * 3000):
        assert _status(url + path) == 404
    assert _status(f"{url}/metadata/timestamp.json") == 200
    (_public_dir / "metadata" / "large.json").write_bytes(b" " * 16_000_000)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as hanging_up:
        hanging_up.sendall(b"GET /metadata/large.json HTTP/1.0\r\n\r\n")
        hanging_up.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 20
    while ": requests ended early: " not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ": requests ended early: 1 since the last saying, the latest from 127.0.0.1: " in (
        caplog.text)
    assert "Traceback" not in capsys.readouterr().err


def test_connections_past_the_cap_are_refused_at_once_and_its_threads_stay_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection held a thread and a file descriptor, as many as clients opened: a
    few hundred silent ones (each cut only after 10 s, then opened again) used up the
    server's threads or descriptors. One past the cap is answered 503 at once now."""
    public_dir = tmp_path / "public"
    (public_dir / "metadata").mkdir(parents=True)
    (public_dir / "metadata" / "timestamp.json").write_bytes(b"{}")
    server = RepositoryServer(public_dir, max_connections=4, request_deadline_s=3.0).start()
    try:
        host, port = server.httpd.server_address[:2]
        check_the_cap((str(host), int(port)), f"{server.url}/metadata/timestamp.json", 4, caplog)
    finally:
        server.close()


def test_repo_serve_takes_its_cap_from_the_command_line(tmp_path: Path) -> None:
    public_dir = tmp_path / "repo" / "public"
    (public_dir / "metadata").mkdir(parents=True)
    command = [sys.executable, "-m", "appliance", "models", "repo", "serve",
               str(tmp_path / "repo"), "--port", "0", "--max-connections", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as serving:
        try:
            assert serving.stdout is not None
            found = re.search(r"on http://127\.0\.0\.1:(\d+) ", serving.stdout.readline())
            assert found, "repo serve did not say where it serves"
            address = ("127.0.0.1", int(found.group(1)))
            with silent_connections(address, 1), silent_connections(address, 1) as (excess,):
                assert answer_to(excess).startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        finally:
            serving.kill()


def test_repo_serve_stops_in_order_on_sigterm_and_sighup_with_exit_0(tmp_path: Path) -> None:
    """As systemd stops its unit (SIGTERM) or a terminal closes (SIGHUP): exit 0 and said, not
    143 or 129 as a one-shot command ends, which left the unit failed after every stop."""
    public_dir = tmp_path / "repo" / "public"
    (public_dir / "metadata").mkdir(parents=True)
    command = [sys.executable, "-m", "appliance", "models", "repo", "serve",
               str(tmp_path / "repo"), "--port", "0"]
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as serving:
            assert serving.stdout is not None
            assert "serving" in serving.stdout.readline()
            serving.send_signal(signum)
            out, err = serving.communicate(timeout=30)
        assert serving.returncode == 0, err
        assert f"stopped serving {public_dir}" in out
