"""--password-file's owner, judged as OpenSSH judges a private key file: the file opened (after
its links) must be owned by the user running the command or by root, and written by its owner
alone. Run as root (``sudo appliance models deploy ... --password-file ~bob/x``, or a link
planted in a shared folder), the option read another user's 0600 file and logged in with it.

The tests run as root here: another user's file is made with ``os.chown``, and the unprivileged
user's side runs in a child process under a uid of its own."""

from __future__ import annotations

import json
import os
import pwd
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.passwordfile import login_password

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes files of other users (chown)")

BOB = 4242  # uids no account here has (named by uid in the refusals)
CAROL = 4343


def _secret_of(owner: int, folder: Path, mode: int = 0o600) -> Path:
    file = folder / f"{owner}.password"
    file.write_text(f"secret-of-{owner}\n")
    file.chmod(mode)
    os.chown(file, owner, owner)
    return file


def test_root_refuses_another_user_s_file_naming_it_its_owner_and_the_rule(
        tmp_path: Path) -> None:
    bobs = _secret_of(BOB, tmp_path)
    said = (f"--password-file {bobs}: is owned by uid {BOB}, not by root, who runs this "
            "command; a login's password file must be owned by the user running the command "
            "or by root, and written by its owner alone (use a copy of your own, chmod 600)")
    with pytest.raises(ValueError, match=f"^{re.escape(said)}$"):
        login_password(str(bobs), "rollout")


NOBODY = 65534


@pytest.mark.parametrize(("sudo_uid", "said"), [
    (str(NOBODY), "who ran sudo, not by root, who runs this command; a login's password file "
     "must be owned by the user running the command or by root, and written by its owner alone "
     "(root reading a user's file is what this stops): run the command without sudo (it needs "
     "no root), or give the file to root: sudo chown root {file}"),
    (str(BOB), "not by root, who runs this command; a login's password file must be owned by "
     "the user running the command or by root, and written by its owner alone (use a copy of "
     "your own, chmod 600)"),
], ids=["the-sudoer-s-own-file", "another-user-s-file-under-sudo"])
def test_under_sudo_the_invoking_user_s_own_file_is_refused_naming_the_two_ways_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sudo_uid: str, said: str) -> None:
    """``sudo appliance fleet resend --password-file ~/rollout.password``: root reads no
    user's file (the rule stays), but the user who ran sudo is told why and what to do."""
    mine = _secret_of(NOBODY, tmp_path)
    monkeypatch.setenv("SUDO_UID", sudo_uid)
    whole = f"--password-file {mine}: is owned by {_named(NOBODY)}, {said.format(file=mine)}"
    with pytest.raises(ValueError, match=f"^{re.escape(whole)}$"):
        login_password(str(mine), "rollout")


def _named(uid: int) -> str:
    """A user as the refusals name one: 'nobody (uid 65534)', or 'uid N' without a name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def test_a_link_planted_to_another_user_s_file_is_refused_naming_the_file_it_leads_to(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    planted = shared / "rollout.password"
    planted.symlink_to(_secret_of(BOB, tmp_path))
    with pytest.raises(ValueError, match=(
            rf"^--password-file {planted}: the file {tmp_path}/{BOB}\.password, which it leads "
            rf"to, is owned by uid {BOB}, not by root, who runs this command;")):
        login_password(str(planted), "rollout")


def test_a_file_its_group_or_everyone_may_write_is_refused(tmp_path: Path) -> None:
    for mode, writers in ((0o620, "its group"), (0o602, "everyone")):
        file = tmp_path / f"{mode:o}.password"
        file.write_text("s3cret\n")
        file.chmod(mode)
        with pytest.raises(ValueError, match=(
                rf"^--password-file {file}: {writers} may write it \(mode 0{mode:o}\); a "
                "login's password file must be owned by the user running the command or by "
                rf"root, and written by its owner alone: chmod 600 {file}$")):
            login_password(str(file), "rollout")


def test_root_s_own_file_is_read(tmp_path: Path) -> None:
    """(A pipe, the runner's own, is read in tests/test_passwordfile_reading.py, which runs
    also where the tests do not run as root.)"""
    mine = tmp_path / "rollout.password"
    mine.write_text("root-s-own\n")
    mine.chmod(0o600)
    assert login_password(str(mine), "rollout") == "root-s-own"


def _as_user(uid: int, *files: Path) -> list[str]:
    """What ``login_password`` gives or says for each of ``files``, read by a child process
    running as ``uid`` (neither root nor any capability: setuid drops them). Forked, not
    started afresh: the interpreter may lie where only root may go."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never back into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            said = []
            for file in files:
                try:
                    said.append(login_password(str(file), "rollout"))
                except ValueError as exc:
                    said.append(str(exc))
            os.write(write_end, json.dumps(said).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        told = answer.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, told
    said: list[str] = json.loads(told)
    return said


@pytest.fixture
def bobs_home() -> Iterator[Path]:
    """A folder bob owns and may reach (pytest's tmp_path lies in a folder root alone may)."""
    with tempfile.TemporaryDirectory(prefix="tidy-owner-") as made:
        folder = Path(made)
        folder.chmod(0o755)
        os.chown(folder, BOB, BOB)
        yield folder


def test_an_unprivileged_user_reads_its_own_file_and_root_s_but_not_another_user_s(
        bobs_home: Path) -> None:
    folder = bobs_home
    own = _secret_of(BOB, folder)
    roots = folder / "root.password"
    roots.write_text("root-s\n")
    roots.chmod(0o600)  # bob may not read it
    carols = _secret_of(CAROL, folder, 0o644)  # bob may read it: its owner let everyone
    said = _as_user(BOB, own, roots, carols)
    assert said[0] == f"secret-of-{BOB}"
    assert said[1].startswith(f"--password-file {roots}: cannot read it (Permission denied)")
    assert said[2].startswith(f"--password-file {carols}: is owned by uid {CAROL}, not by uid "
                              f"{BOB} nor by root, who runs this command;")
