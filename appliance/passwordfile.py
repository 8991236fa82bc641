"""A password read from a file named on the command line (its first line), never from the
command line itself, where ``ps`` shows it to every user, nor from the environment, which
``ps e`` shows to its owner and every program the command starts inherits.

``console user add --password-file`` reads it here, and so does every command that logs in to
the broker as an operator (``fleet resend``, ``models deploy|rollback|halt|status``,
``pathology job submit|list|cancel``: ``add_login_password_option`` and ``login_password``). A
login's password copied from the broker host (``credentials/rollout.password``) is for its
owner alone: ``owner_only`` refuses a file its group or everyone may read, by name, and, as
OpenSSH judges its ssh_config ("Bad owner or permissions"), one (after its links) that
neither the user running the command nor root owns, or that its group or everyone may write:
``sudo appliance ... --password-file`` naming another user's file, or a link planted to one,
does not quietly lend that user's secret. Under ``sudo`` the refusal of the file of the user
who ran it (SUDO_UID) says so, and the two ways out: without sudo, or the file given to root.

A FIFO is read while a program holds it open for writing (``<(pass show rollout)``), for
FIFO_WAIT_S at most: a writer that never writes nor closes it would hang the command for ever.
"""

from __future__ import annotations

import argparse
import math
import os
import pwd
import select
import stat
import time
from pathlib import Path

from appliance.logsafe import escape_controls

MAX_PASSWORD_FILE_BYTES = 4096
# the login of ``fleet resend`` and ``models deploy|rollback|halt|status`` on the shipped broker
ROLLOUT_LOGIN = "the rollout login's (the broker host's credentials/rollout.password)"
# how long a FIFO's writer has to send the password and close it: ``pass show`` asking for
# its GPG passphrase is answered in seconds; a writer that holds it open without writing is
# told apart from one that is slow
FIFO_WAIT_S = 30.0


def password_from_file(file: Path, option: str, *, owner_only: bool = False) -> str:
    """The first line of the file ``option`` names; ValueError naming the option, the file,
    what is wrong and what to do (a folder, a missing or unreadable file, a FIFO no program
    writes to or whose writer sends nothing within FIFO_WAIT_S, one not UTF-8 text or
    starting with a byte order mark, and with ``owner_only`` one its group or everyone may
    read or write, or that neither the user running the command nor root owns)."""
    where = f"{option} {escape_controls(str(file))}"
    data = _read_at_most(file, MAX_PASSWORD_FILE_BYTES + 1, where, owner_only=owner_only)
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"{where}: larger than {MAX_PASSWORD_FILE_BYTES} bytes; "
                         "not a password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (byte {exc.start}); save the password as "
                         "UTF-8 text") from exc
    if text.startswith("\ufeff"):  # Notepad's "UTF-8 with BOM": no one types it at a login
        raise ValueError(f"{where}: starts with a byte order mark (U+FEFF, an editor's); save "
                         "it as UTF-8 without one")
    # its first line ends at a newline alone: str.splitlines would also end it at a form
    # feed, U+0085 or U+2028, cutting a password that holds one short without a word
    return text.split("\n", 1)[0].removesuffix("\r")


def add_login_password_option(parser: argparse.ArgumentParser, login: str) -> None:
    """Add ``--password-file PATH`` for the broker login ``login`` (e.g. "the rollout login's")
    to a command that logs in to the broker as an operator."""
    parser.add_argument("--password-file", metavar="PATH",
                        help=f"read {login} password from this file's first line (a file its "
                        "owner alone may read: chmod 600), not from $APPLIANCE_MQTT_PASSWORD")


def login_password(path: str | None, username: str | None,
                   example: str = "APPLIANCE__MQTT__USERNAME=rollout") -> str | None:
    """The broker password ``--password-file`` holds, for the login ``username`` (None without
    the option: the config's, from $APPLIANCE_MQTT_PASSWORD or systemd credentials);
    ValueError saying what is wrong (no login to use it with, a file others may read, a
    blank first line, and what ``password_from_file`` refuses); ``example``: how to name the
    login, for the refusal without one."""
    if path is None:
        return None
    if username is None:
        raise ValueError("--password-file: no login to use it with; name it with mqtt.username "
                         f"({example})")
    # without the white space around it, as the broker's provision.py and the systemd
    # credential mqtt-password read the same file: an editor's trailing blank is no password's
    password = password_from_file(Path(path), "--password-file", owner_only=True).strip()
    if not password:
        raise ValueError(f"--password-file {escape_controls(path)}: its first line is empty "
                         "(or blank); it is the login's password")
    return password


def _refuse_foreign(fd: int, status: os.stat_result, file: Path, where: str) -> None:
    """ValueError when the regular file or FIFO opened as ``fd`` is owned by neither the user
    running the command nor root, or its group or everyone may write it (OpenSSH's rule for
    its ssh_config): root may read any user's file, which is no reason to use it."""
    mode = status.st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        return  # a terminal or a device (/dev/stdin): no one's file planted there
    runner = os.geteuid()
    rule = ("a login's password file must be owned by the user running the command or by "
            "root, and written by its owner alone")
    if status.st_uid not in (runner, 0):
        raise ValueError(_foreign_owner(fd, status.st_uid, file, where, rule))
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        writers = "everyone" if mode & stat.S_IWOTH else "its group"
        raise ValueError(f"{where}: {writers} may write it (mode {stat.S_IMODE(mode):04o}); "
                         f"{rule}: chmod 600 {escape_controls(str(file))}")


def _foreign_owner(fd: int, owner: int, file: Path, where: str, rule: str) -> str:
    """The refusal of the file opened as ``fd``, owned by ``owner``, neither the runner nor
    root; under ``sudo``, of the file of the user who ran it, with the two ways to a file the
    rule lets through."""
    runner = os.geteuid()
    said = f"{where}: {_opened(fd, file)}is owned by {_user(owner)}"
    if runner == 0 and owner == _sudo_uid():
        return (f"{said}, who ran sudo, not by root, who runs this command; {rule} (root "
                "reading a user's file is what this stops): run the command without sudo (it "
                "needs no root), or give the file to root: sudo chown root "
                f"{escape_controls(str(file))}")
    owners = "root" if runner == 0 else f"{_user(runner)} nor by root"
    return (f"{said}, not by {owners}, who runs this command; {rule} (use a copy of your own, "
            "chmod 600)")


def _sudo_uid() -> int | None:
    """The uid of the user who ran ``sudo`` (its SUDO_UID), None where there is none. It only
    words the refusal: a forged one gets no file read."""
    try:
        return int(os.environ["SUDO_UID"])
    except (KeyError, ValueError):
        return None


def _opened(fd: int, file: Path) -> str:
    """'the file X, which it leads to, ' when the file opened as ``fd`` is not ``file`` by
    that name (a link's target); else empty."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")  # Linux: the path of what was opened
    except OSError:
        return ""
    if target == os.path.abspath(file):
        return ""
    return f"the file {escape_controls(target)}, which it leads to, "


def _user(uid: int) -> str:
    """A user by name and uid ('bob (uid 1001)'), or by uid alone where it has no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refuse_shared(mode: int, file: Path, where: str) -> None:
    """ValueError when ``mode`` is a regular file's that its group or everyone may read."""
    if stat.S_ISREG(mode) and mode & (stat.S_IRGRP | stat.S_IROTH):
        readers = "everyone" if mode & stat.S_IROTH else "its group"
        raise ValueError(f"{where}: {readers} may read it (mode {stat.S_IMODE(mode):04o}); a "
                         "login's password is for its owner alone: chmod 600 "
                         f"{escape_controls(str(file))}")


def _read_at_most(file: Path, limit: int, where: str, *, owner_only: bool) -> bytes:
    """Up to ``limit`` bytes of ``file``, opened once and judged by what was opened (a file
    swapped after a look would pass the look's verdict), read, not sized first: a pipe
    (``<(...)``) or a device has no size to check, and /dev/zero would be read without end.
    Opened without waiting, as an open of a FIFO no program writes to waits for ever."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise ValueError(f"{where}: file not found; check the path") from exc
    except OSError as exc:
        raise ValueError(_unreadable(where, exc)) from exc
    try:
        status = os.fstat(fd)
        mode = status.st_mode
        if stat.S_ISDIR(mode):
            raise ValueError(f"{where}: a folder; name the file whose first line is the password")
        if owner_only:
            _refuse_foreign(fd, status, file, where)
            _refuse_shared(mode, file, where)
        if stat.S_ISFIFO(mode):
            return _read_fifo(fd, limit, where)
        os.set_blocking(fd, True)
        return _read_all(fd, limit)
    except OSError as exc:
        raise ValueError(_unreadable(where, exc)) from exc
    finally:
        os.close(fd)


def _read_all(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of the blocking descriptor ``fd``, to its end."""
    data = b""
    while len(data) < limit and (chunk := os.read(fd, limit - len(data))):
        data += chunk
    return data


def _read_fifo(fd: int, limit: int, where: str) -> bytes:
    """Up to ``limit`` bytes of the FIFO ``fd`` opened without waiting, to its writer's close:
    one empty with no writer (its end, at once) is refused, one whose writer has yet to write
    (``<(...)``) is waited for, FIFO_WAIT_S at most, then refused."""
    try:
        data = os.read(fd, limit)
    except BlockingIOError:
        data = b""  # a program holds it open for writing: its password comes
    else:
        if not data:
            raise ValueError(f"{where}: a FIFO that no program writes to; name the file "
                             "whose first line is the password")
    deadline = time.monotonic() + FIFO_WAIT_S
    while len(data) < limit:
        if not _wait_readable(fd, deadline - time.monotonic()):
            raise ValueError(_fifo_unfinished(where, len(data)))
        try:
            chunk = os.read(fd, limit - len(data))
        except BlockingIOError:
            continue  # woken with nothing to read: wait on
        if not chunk:
            break  # its writer closed it: the whole password came
        data += chunk
    return data


def _wait_readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has bytes to read or its writer closed it within ``timeout_s``."""
    if timeout_s <= 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(math.ceil(timeout_s * 1000)))


def _fifo_unfinished(where: str, received: int) -> str:
    """The refusal of a FIFO whose writer did not write the password and close it in time."""
    sent = (f"sent {received} byte(s) and did not close it" if received else
            "holds it open and sent nothing")
    return (f"{where}: a FIFO whose writer {sent} within {FIFO_WAIT_S:g} s; have the program "
            "write the password and close it, or name a file whose first line is the "
            "password")


def _unreadable(where: str, exc: OSError) -> str:
    return (f"{where}: cannot read it ({exc.strerror or exc}); check the file and its "
            "permissions")
