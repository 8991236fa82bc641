"""An overlong argument named in an error is cut: a 100,000-character ``--device``,
``--since``, ``--repo`` or ``--store`` gives one short line that still says which option was
refused and why, not a screenful of the argument (nor as much in the journal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main

LONG = "a" * 100_000
SHOWN_TAIL = "... (99800 more characters)"
ERROR_LINE_CHARS = 600  # the option, 200 characters of the value, and why it was refused


def _refusal(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """The error line a command refuses ``arguments`` with, exit status 2."""
    try:
        code = main(list(arguments))
    except SystemExit as done:  # argparse's own refusals
        code = done.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.rstrip("\n").splitlines()[-1]


@pytest.mark.parametrize(("arguments", "named", "why"), [
    (("results", "query", "--device", LONG), "--device", "not a device id"),
    (("results", "query", f"--device={LONG}"), "--device", "not a device id"),
    (("results", "query", "--since", LONG), "--since", "not an ISO date"),
    (("results", "query", "--limit", LONG), "--limit", "not a whole number"),
    (("demo", "--count", LONG), "--count", "expected a whole number"),
    (("results", "query", "--format", LONG), "unrecognized arguments: --format", ""),
    ((LONG,), "invalid choice", "choose from"),
    (("models", "status", "--repo", LONG), "models status: aaa", "not a model repository"),
    (("fleet", "--store", LONG), "store url 'aaa", "use sqlite:///PATH"),
    (("results", "query", "--store", LONG), "store url 'aaa", "use sqlite:///PATH"),
])
def test_an_overlong_argument_is_cut_in_the_error_line(
        capsys: pytest.CaptureFixture[str], arguments: tuple[str, ...], named: str,
        why: str) -> None:
    line = _refusal(capsys, *arguments)
    assert len(line) < ERROR_LINE_CHARS, line[:300]
    assert named in line
    assert why in line
    assert SHOWN_TAIL in line


def test_export_names_an_overlong_since_in_one_short_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    line = _refusal(capsys, "results", "export", "--since", LONG, "--out", str(out))
    assert len(line) < ERROR_LINE_CHARS, line[:300]
    assert line.startswith("results export: --since 'aaa")
    assert SHOWN_TAIL in line
    assert not out.exists()


@pytest.mark.parametrize("arguments", [
    ("results", "query", "--device", "\x1b[31m" + LONG),  # a type's refusal: repr quotes it
    ("results", "query", "--s=\x1b[31m" + LONG),  # "ambiguous option": named unquoted, escaped
])
def test_a_cut_argument_keeps_its_controls_escaped(
        capsys: pytest.CaptureFixture[str], arguments: tuple[str, ...]) -> None:
    line = _refusal(capsys, *arguments)
    assert "\x1b" not in line
    assert "\\x1b[31m" in line
    assert "more characters)" in line
    assert len(line) < ERROR_LINE_CHARS, line[:300]


@pytest.mark.parametrize(("arguments", "command"), [
    (("config", "check", LONG), "appliance config check"),
    (("synth", "skin", "--count", "1", "--out", LONG), "appliance synth skin"),
    (("results", "export", "--out", LONG), "appliance results export"),
])
def test_a_path_longer_than_the_system_takes_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], arguments: tuple[str, ...], command: str
) -> None:
    """A path over the system's limits (ENAMETOOLONG) met wherever a command first opens it was
    an uncaught OSError: a traceback echoing the 100,000-character path; now one line, exit 2,
    naming the command as typed (it said "appliance results" for results export)."""
    line = _refusal(capsys, *arguments)
    assert line.startswith(f"{command}: path too long for this system: 'aaa")
    assert line.endswith(SHOWN_TAIL)
    assert len(line) < ERROR_LINE_CHARS


def test_thousands_of_unrecognized_arguments_are_named_a_few_and_counted(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A command line of thousands of overlong arguments (a glob gone wrong, a hostile script)
    is one short line naming the first few, each cut, and how many more there were."""
    extras = [f"{i:04d}" + "b" * 246 for i in range(3000)]
    line = _refusal(capsys, "config", "check", "config.yaml", *extras)
    assert len(line) < 2000, f"{len(line)} characters: {line[:300]}"
    assert line.startswith("appliance config check: error: unrecognized arguments: 0000bbb")
    assert "0004bbb" in line
    assert "0005bbb" not in line
    assert "... (50 more characters)" in line
    assert line.endswith("(and 2995 more)")


@pytest.mark.parametrize(("arguments", "why"), [
    (("console", "token", "revoke", LONG), "16 hex digits expected"),
    (("console", "user", "add", LONG, "--role", "viewer", "--password-file", "PASSWORD"),
     "use 1 to 64 of the ASCII letters"),
    (("console", "user", "remove", LONG), "no console user"),
    (("pathology", "evaluate", "--labels", LONG, "--results", LONG), "File name too long"),
])
def test_a_commands_own_refusal_cuts_an_overlong_argument(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, arguments: tuple[str, ...],
        why: str) -> None:
    """The refusals a command prints itself (not argparse's) name the value they refused: a
    user name, a token id, a path in an OSError. They echoed a 100,000-character one whole."""
    store = ("--store", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    assert main(["store", "migrate", *store]) == 0
    capsys.readouterr()
    password = tmp_path / "password"
    password.write_text("correct horse battery staple\n")
    arguments = tuple(str(password) if a == "PASSWORD" else a for a in arguments)
    line = _refusal(capsys, *arguments, *(store if arguments[0] == "console" else ()))
    assert why in line
    assert SHOWN_TAIL in line
    assert len(line) < ERROR_LINE_CHARS, line[:300]


def test_an_overlong_argument_a_refusal_escaped_is_cut_too(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A command that escapes the controls of what it names (``repo refresh``'s OSError, a log
    record) wrote an overlong argument holding one whole: stderr looked only for it as given."""
    folder = str(tmp_path / "gone" / "\x1b[31m") + "/a" * 1000  # a path the system takes
    line = _refusal(capsys, "models", "repo", "refresh", folder)
    assert line.startswith("models repo refresh: ")
    assert "\x1b" not in line
    assert "\\x1b[31m" in line
    assert f"... ({len(folder) - 200} more characters)" in line
    assert len(line) < ERROR_LINE_CHARS, line[:300]
