"""``appliance console user add`` and ``console token create`` on a real store."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
import uvicorn

from appliance.backoffice.store import Store, open_store
from appliance.cli import main
from appliance.console import passwordprompt, server
from appliance.console.auth import AccessError, bearer_login, create_token, verify_password
from appliance.passwordfile import MAX_PASSWORD_FILE_BYTES
from tests.store_helpers import PG_URL


def test_user_add_reads_the_password_file_and_token_create_prints_a_working_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password_file = tmp_path / "pw"
    password_file.write_text("a long enough secret\nignored second line\n")
    assert main(["console", "user", "add", "ops", "--role", "operator", "--password-file",
                 str(password_file), "--store", url]) == 0
    assert "added console user ops (operator)" in capsys.readouterr().out
    assert main(["console", "token", "create", "ops", "--store", url]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()  # the token alone on stdout
    assert "'Authorization: Bearer TOKEN'" in printed.err  # how to use it, for a person
    store = open_store(url)
    try:
        login = bearer_login(store, f"Bearer {token}")
        assert login is not None
        assert (login.name, login.role) == ("ops", "operator")
        assert verify_password(store, "ops", "a long enough secret") is not None
        assert verify_password(store, "ops", "wrong secret!!") is None
        stored = store.user("ops")
        assert stored is not None
        assert stored[0].startswith("$argon2id$")  # only the hash is kept
    finally:
        store.close()


def test_bad_users_and_unknown_token_owners_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    short = tmp_path / "short"
    short.write_text("short\n")
    assert main(["console", "user", "add", "ops", "--password-file", str(short),
                 "--store", url]) == 2
    assert "password: 10 to 256 characters" in capsys.readouterr().err
    assert main(["console", "token", "create", "nobody", "--store", url]) == 2
    assert "no console user 'nobody'" in capsys.readouterr().err
    assert main(["console", "user", "add", "ops", "--password-file",
                 str(tmp_path / "missing"), "--store", url]) == 2


def test_user_add_refuses_a_bad_name_before_asking_for_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name the store refuses was only refused after the password had been typed twice; with
    no terminal the refusal was 'no password given', which hid what was wrong."""
    asked: list[str] = []

    def typed(limit_chars: int) -> str:
        asked.append("password")
        return "correct horse battery staple"

    monkeypatch.setattr(passwordprompt, "ask_new_password", typed)
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    assert main(["console", "user", "add", "bad name!", "--role", "viewer", "--store", url]) == 2
    assert capsys.readouterr().err.strip() == (
        "console user add: user name 'bad name!': use 1 to 64 of the ASCII letters A-Z a-z, "
        "digits 0-9 and _ . @ -, starting with a letter or digit")
    assert asked == []
    assert not (tmp_path / "bo.sqlite3").exists()


def test_a_user_name_in_another_script_is_refused_naming_the_ascii_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'ボブ' was refused with "use 1-64 letters": it is made of letters, so the message
    contradicted itself; the rule is ASCII letters and digits, and the refusal says so."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password = tmp_path / "password"
    password.write_text("correct horse battery staple\n")
    assert main(["console", "user", "add", "ボブ", "--password-file", str(password),
                 "--store", url]) == 2
    refusal = capsys.readouterr().err.strip()
    assert refusal.startswith("console user add: user name 'ボブ': use 1 to 64 of the ASCII ")
    assert "A-Z a-z, digits 0-9" in refusal
    with pytest.raises(AccessError, match="up to 64 of the ASCII letters A-Z a-z"):
        create_token(cast(Store, None), "bob", label="für Grafana")  # refused before the store


def test_token_list_of_a_user_that_is_not_there_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`console token list --user NAME` with a mistyped NAME said 'no API tokens of NAME', exit
    0, as for a real user without tokens; token create and user remove refuse such a name."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password = tmp_path / "password"
    password.write_text("correct horse battery staple\n")
    assert main(["console", "user", "add", "ops", "--role", "operator", "--password-file",
                 str(password), "--store", url]) == 0
    capsys.readouterr()
    assert main(["console", "token", "list", "--user", "ops", "--store", url]) == 0
    assert capsys.readouterr().out == "no API tokens of ops\n"
    assert main(["console", "token", "list", "--user", "osp", "--store", url]) == 2
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == (
        "", "console token list: no console user 'osp' (console user list shows them)\n")


def test_the_group_store_option_reaches_the_subcommand(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'group.sqlite3'}"
    password_file = tmp_path / "pw"
    password_file.write_text("a long enough secret\n")
    assert main(["console", "--store", url, "user", "add", "ops", "--password-file",
                 str(password_file)]) == 0
    assert (tmp_path / "group.sqlite3").is_file()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda path: path.mkdir(), "a folder; name the file whose first line is the password"),
        (lambda path: None, "file not found; check the path"),
        (lambda path: path.write_bytes(b"\xe9t\xe9 de passe\n"),
         "not UTF-8 text (byte 0); save the password as UTF-8 text"),
    ],
)
def test_a_password_file_that_cannot_be_read_is_named_with_the_option_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, said: str
) -> None:
    """It said only Python's error text ("[Errno 21] Is a directory: ...", or for a file in
    another encoding "'utf-8' codec can't decode byte 0xe9 ...", naming no file at all)."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password_file = tmp_path / "pw"
    make(password_file)
    assert main(["console", "user", "add", "ops", "--password-file", str(password_file),
                 "--store", url]) == 2
    assert capsys.readouterr().err == f"console user add: --password-file {password_file}: {said}\n"
    assert not (tmp_path / "bo.sqlite3").exists()  # refused before any store is made


def test_console_on_a_taken_port_says_so_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It names the variable that moves the console for one run: a newcomer in the repository
    would otherwise edit the shipped config.yaml, and one without a config has none to edit."""
    # a shell that finds this program as `appliance` (the venv activated)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("APPLIANCE__CONSOLE__PORT", str(port))
        code = main(["console", "--store", f"sqlite:///{tmp_path / 'bo.sqlite3'}"])
    assert code == 2  # on main: uvicorn's SystemExit(3) after "console on ..."
    printed = capsys.readouterr()
    assert printed.err.strip() == (f"console: cannot listen on 127.0.0.1:{port}: Address "
                                   "already in use; stop what uses it or set console.bind / "
                                   "console.port (in the config, or for one run "
                                   "APPLIANCE__CONSOLE__PORT=8081 appliance console)")
    assert "console on" not in printed.out


def _console_that_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``appliance console`` starts its server, which stops at once as after Ctrl-C."""
    real_make_server = server.make_server

    def stopping_at_once(*args: Any, **kwargs: Any) -> uvicorn.Server:
        made = real_make_server(*args, **kwargs)
        made.should_exit = True
        return made

    monkeypatch.setattr(server, "make_server", stopping_at_once)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        monkeypatch.setenv("APPLIANCE__CONSOLE__PORT", str(free.getsockname()[1]))


def test_a_console_nobody_can_log_in_to_says_how_to_add_a_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A console started on a store without users said only where it listens: a newcomer
    reached a login form no name and password opened. Now it names the command that adds one,
    with the store it serves; a store with a user that can log in gets no such line."""
    _console_that_stops_at_once(monkeypatch)
    # a shell that finds this program as `appliance` (the venv activated)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    assert main(["console", "--store", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "console: no user can log in yet; add one (this console takes it at once): appliance "
        f"console user add NAME --role operator --store {url}")
    password_file = tmp_path / "pw"
    password_file.write_text("correct horse battery\n")
    assert main(["console", "user", "add", "ops", "--role", "operator", "--password-file",
                 str(password_file), "--store", url]) == 0
    capsys.readouterr()
    assert main(["console", "--store", url]) == 0
    assert "no user can log in" not in capsys.readouterr().out


def test_the_console_reads_dead_letters_under_the_config_s_topic_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`appliance console` gives its app the config's mqtt.topic_prefix, under which the
    dead-letters page reads a site's topics (tests/console/test_console_dead_letters_site.py):
    on the built-in prefix it would choose no letter of a fleet on another."""
    _console_that_stops_at_once(monkeypatch)
    real_create_app, prefixes = server.create_app, list[str]()

    def recording(*args: Any, **kwargs: Any) -> Any:
        prefixes.append(kwargs.get("topic_prefix", "(none given)"))
        return real_create_app(*args, **kwargs)

    monkeypatch.setattr(server, "create_app", recording)
    config = tmp_path / "console.yaml"
    config.write_text(f"mqtt:\n  topic_prefix: fleet-y/eu\nstore:\n  url: "
                      f"sqlite:///{tmp_path / 'bo.sqlite3'}\n", encoding="utf-8")
    assert main(["console", "--config", str(config)]) == 0
    assert prefixes == ["fleet-y/eu"]


def test_the_console_s_hints_call_this_program_as_the_shell_finds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ./dev demo, whose next steps say `.venv/bin/appliance console`, the console said
    to run `appliance console user add ...` and `... appliance console`, which a shell without
    the venv on its PATH does not find ("appliance: command not found")."""
    script = Path(sys.executable).parent / "appliance"  # ./dev demo runs .venv/bin/appliance
    assert script.exists()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell: the venv is not on it
    monkeypatch.chdir(script.parent.parent.parent)
    shown = os.path.relpath(script)
    _console_that_stops_at_once(monkeypatch)
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    assert main(["console", "--store", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        f"(this console takes it at once): {shown} console user add NAME --role operator "
        f"--store {url}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("APPLIANCE__CONSOLE__PORT", str(taken.getsockname()[1]))
        assert main(["console", "--store", url]) == 2
    assert f"APPLIANCE__CONSOLE__PORT=8081 {shown} console)" in capsys.readouterr().err


def test_a_console_bound_for_others_without_a_tls_proxy_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """console.bind 0.0.0.0 with no proxy named in console.trusted_proxies served logins and
    session cookies in plain HTTP to the network, saying nothing; now it is refused (exit 2)
    naming the address and what to do, unless console.allow_plain_http says to."""
    _console_that_stops_at_once(monkeypatch)
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    monkeypatch.setenv("APPLIANCE__CONSOLE__BIND", "0.0.0.0")
    assert main(["console", "--store", url]) == 2  # on main: 0, served
    printed = capsys.readouterr()
    assert printed.err.strip() == (
        "console: console.bind is 0.0.0.0, not loopback, and console.trusted_proxies names no "
        "TLS proxy: passwords and session cookies would cross the network in clear; keep "
        "console.bind at 127.0.0.1 behind a TLS reverse proxy and name it in "
        "console.trusted_proxies (README, Back-office console, TLS), or set "
        "console.allow_plain_http: true to serve plain HTTP anyway")
    assert "console on" not in printed.out
    monkeypatch.setenv("APPLIANCE__CONSOLE__ALLOW_PLAIN_HTTP", "true")
    assert main(["console", "--store", url]) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == ("console: serving 0.0.0.0 without TLS "
                                   "(console.allow_plain_http): passwords and session cookies "
                                   "cross the network in clear")
    assert "console on http://0.0.0.0:" in printed.out
    monkeypatch.delenv("APPLIANCE__CONSOLE__ALLOW_PLAIN_HTTP")
    config = tmp_path / "config.yaml"
    config.write_text("console:\n  trusted_proxies: [192.0.2.10]\n")
    assert main(["console", "--config", str(config), "--store", url]) == 0  # a proxy in front
    assert capsys.readouterr().err == ""


@pytest.mark.postgres
def test_the_console_names_a_postgresql_store_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """"console on http://... (store postgresql://user:PASSWORD@...": the database password
    on the screen and in the journal of every console start."""
    import psycopg

    _console_that_stops_at_once(monkeypatch)
    schema = f"smallbo_console_{uuid.uuid4().hex[:10]}"
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            assert main(["console", "--store", url]) == 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    printed = capsys.readouterr()
    assert f"(store {url.replace('s3cret-pw', '***')}, pathology" in printed.out
    assert "s3cret-pw" not in printed.out + printed.err


def test_user_add_with_no_terminal_and_standard_input_ended_says_how_to_give_a_password(
    tmp_path: Path,
) -> None:
    """``console user add`` run by a script with nothing on standard input raised EOFError
    from getpass: a traceback. Now one line naming --password-file, exit 2, and no user."""
    store = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "console", "user", "add", "bob", "--role", "viewer",
         "--store", store], check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120, start_new_session=True)  # no controlling terminal: stdin is read
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(  # after the prompt
        "console user add: no password given: standard input ended; type it on a terminal, "
        "or name a file whose first line is the password with --password-file")
    assert not (tmp_path / "console.sqlite3").exists()


def test_a_password_file_that_is_a_pipe_is_read_no_further_than_its_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipe (``--password-file <(...)``) or a device has no size to check first: it was read
    whole (1 MB here, then refused for its length; /dev/zero until memory ran out). Now the
    same refusal as a large file, read no further than the limit, and no store is made."""
    fifo = tmp_path / "pw"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as pipe:
            for _ in range(256):
                pipe.write(b"x" * 4096)  # one line of 1 MB, no newline

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    code = main(["console", "user", "add", "ops", "--password-file", str(fifo), "--store", url])
    feeder.join(10)
    assert code == 2
    assert capsys.readouterr().err == (f"console user add: --password-file {fifo}: larger than "
                                       f"{MAX_PASSWORD_FILE_BYTES} bytes; not a password file\n")
    assert not (tmp_path / "bo.sqlite3").exists()


def _user_add_fed_on_a_pipe(store: str,
                            controlling_terminal: bool) -> subprocess.CompletedProcess[str]:
    """``console user add`` with its password on a pipe, with or without a controlling
    terminal (a pseudo-terminal that it was never asked on)."""
    import fcntl
    import pty
    import termios

    leader, follower = pty.openpty()
    try:
        return subprocess.run(
            [sys.executable, "-m", "appliance", "console", "user", "add", "bob", "--store",
             store], check=False, input="s3cret-password-1\n", capture_output=True, text=True,
            timeout=60, start_new_session=True, pass_fds=(follower,),
            preexec_fn=(lambda: fcntl.ioctl(follower, termios.TIOCSCTTY, 0))
            if controlling_terminal else None)
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize("controlling_terminal", [False, True])
def test_a_password_on_a_pipe_is_read_without_a_prompt(
    tmp_path: Path, controlling_terminal: bool
) -> None:
    """It printed 'password: ' where nobody reads it (no terminal), and from a terminal's shell
    (`echo "$PW" | appliance console user add ...`) it asked on the terminal instead, ignoring
    the pipe."""
    store = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    done = _user_add_fed_on_a_pipe(store, controlling_terminal)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "added console user bob (viewer)\n"


SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def test_the_user_and_token_lists_say_times_to_the_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`console token list` and `console user list` printed the store's times with their
    microseconds (2026-12-06T00:51:16.123456Z), as no other command or page says a time."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password = tmp_path / "password"
    password.write_text("correct horse battery staple\n")
    for name, role in (("ops", "operator"), ("vic", "viewer")):
        assert main(["console", "user", "add", name, "--role", role, "--password-file",
                     str(password), "--store", url]) == 0
    capsys.readouterr()
    assert main(["console", "token", "create", "ops", "--store", url]) == 0
    made = capsys.readouterr()
    said = re.search(r"It expires at (\S+)\. ", made.err)
    assert said
    assert SECOND.fullmatch(said.group(1))
    store = open_store(url)
    try:
        assert bearer_login(store, f"Bearer {made.out.strip()}") is not None  # a last use
    finally:
        store.close()
    assert main(["console", "user", "disable", "vic", "--store", url]) == 0
    capsys.readouterr()
    assert main(["console", "token", "list", "--store", url]) == 0
    _, _, _, created, expires, used = capsys.readouterr().out.splitlines()[1].split()
    assert all(SECOND.fullmatch(time) for time in (created, expires, used))
    assert main(["console", "user", "list", "--store", url]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [SECOND.fullmatch(row[2]) is not None for row in rows] == [True, True]
    assert rows[1][-2] == "disabled"
    assert SECOND.fullmatch(rows[1][-1])
