"""README.md: its "What works today" table names every command the CLI registers, its
command lines give the arguments each command requires, its threat model is
docs/threat-model.md's, and git ignores what its examples write here."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.cli_help import leaf_commands
from appliance.cli_help_text import COMMAND_HELP

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented() -> set[tuple[str, ...]]:
    """(command,) and (command, subcommand) pairs named in the table's code spans."""
    section = README.read_text().split("## What works today", 1)[1].split("\n#", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named: set[tuple[str, ...]] = set()
    for span in re.findall(r"`([^`]+)`", table):
        words = span.removeprefix("appliance ").split()
        named.add((words[0],))
        if len(words) > 1 and not words[1].startswith(("-", "[", "IMG")):
            named |= {(words[0], sub) for sub in words[1].split("\\|")}
    return named


def test_the_readme_table_names_every_command_and_subcommand() -> None:
    registered = {tuple(path.split()[:2]) for path in leaf_commands(build_parser())}
    missing = sorted(" ".join(path) for path in registered - _documented())
    assert not missing, f"README.md 'What works today' does not name: {missing}"


def _as_typed(span: str) -> list[str]:
    """The words a reader types for a README command line: ``[...]`` options left out, the
    first of ``a|b`` alternatives taken, ``SLIDE...`` given once."""
    words = " ".join(span.split())
    while (bare := re.sub(r"\[[^\[\]]*\]", "", words)) != words:
        words = bare
    words = re.sub(r"(\S+?)(?:\\?\|\S+)+", r"\1", words).replace("...", "")
    return shlex.split(words)[1:]


def _required_missing(words: list[str]) -> str:
    """argparse's complaint when ``words`` leave out a required argument, else ''."""
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(words)
    except SystemExit:
        said = complaint.getvalue()
        if "arguments are required" in said or re.search(r"one of the arguments .* is required",
                                                          said):
            return said.strip().splitlines()[-1]
    return ""


def test_every_readme_command_line_gives_the_arguments_its_command_requires() -> None:
    """"to try a build, `appliance models build-skin --out DIR` writes a new folder" was
    answered "the following arguments are required: --data". Each code span that runs a
    command with options (placeholders such as DIR or U stand for values) must name every
    argument that command requires."""
    spans = set(re.findall(r"`(appliance [^`]*--[^`]*)`", README.read_text()))
    assert len(spans) > 30
    missing = {span: said for span in sorted(spans) if (said := _required_missing(
        _as_typed(span)))}
    assert not missing, f"README.md command lines lack required arguments: {missing}"


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_docs_threat_model_is_the_readme_s_threat_model() -> None:
    """docs/threat-model.md (which code cites) keeps README.md's table row for row."""
    section = README.read_text().split("### Threat model", 1)[1].split("\n## ", 1)[0]
    docs = (README.parent / "docs" / "threat-model.md").read_text()
    assert _table_rows(section)
    assert _table_rows(docs) == _table_rows(section)


# a file or folder of this repository named in the README; one under /etc, /srv or /opt is
# the installed system's, not the repository's
REPOSITORY_PATH = re.compile(
    r"(?<![\w/.-])((?:docs|deploy|benchmarks|appliance|tests|models)/[\w./@()-]*[\w)])")


def _named_paths(text: str) -> set[str]:
    """The repository paths named in ``text``; ``x(.int8).onnx`` names ``x.onnx``."""
    named = set()
    for found in REPOSITORY_PATH.finditer(text):
        path = found.group(1)
        while path.endswith(")") and path.count(")") > path.count("("):
            path = path[:-1]  # the parenthesis around the path, not part of it
        named.add(re.sub(r"\([^)]*\)", "", path).rstrip("."))
    return named


def test_every_repository_path_the_readme_names_is_there() -> None:
    """A newcomer follows the README's paths (docs, scripts, tests, modules, units): a file
    renamed or removed left the README pointing at nothing."""
    named = _named_paths(README.read_text())
    assert len(named) > 50
    missing = sorted(path for path in named if not (README.parent / path).exists())
    assert not missing, f"README.md names paths that are not in the repository: {missing}"


def test_the_benchmarks_section_names_every_script_in_benchmarks() -> None:
    """Eleven scripts of benchmarks/ went unnamed under "Each script in `benchmarks/` prints
    one JSON object of figures", so a newcomer listing the folder could not tell what they
    measure or where their figures are."""
    section = README.read_text().split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    scripts = sorted(path.name for path in (README.parent / "benchmarks").glob("*.py"))
    assert scripts
    unnamed = [name for name in scripts if f"`{name}`" not in section]
    assert not unnamed, f"README.md 'Benchmarks' does not name: {unnamed}"


def _tour_lines() -> list[str]:
    """The shell lines of README.md "A tour", comments dropped."""
    section = README.read_text().split("### A tour", 1)[1].split("\n#", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].rstrip() for line in block.splitlines() if line.strip()]


def test_the_tour_as_typed_finds_the_appliance_command_in_every_folder(tmp_path: Path) -> None:
    """The tour typed `appliance ...` after set-up, which puts the command in .venv/bin and
    not on PATH ("appliance: command not found"), and `cd /some/other/folder` went nowhere.
    Its lines run here in a fresh bash from the repository, each `appliance` line replaced by
    a look-up of the command that line would run."""
    venv_command = README.parent / ".venv" / "bin" / "appliance"
    if not venv_command.exists():
        pytest.skip("no .venv here (./dev makes it)")
    script = ["set -e"] + [
        "command -v appliance || { echo \"appliance: command not found\" >&2; exit 9; }"
        if line.startswith("appliance ") else line
        for line in _tour_lines()]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=README.parent, capture_output=True, text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
             "TMPDIR": str(tmp_path)}, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    found = done.stdout.split()
    assert len(found) == sum(line.startswith("appliance ") for line in _tour_lines()) > 5
    assert {Path(path).resolve() for path in found} == {venv_command.resolve()}


# an example's output named as a file or folder of the working folder ("--out results.csv");
# capitals are placeholders ("--out DIR")
EXAMPLE_OUTPUT = re.compile(r"appliance [^`\n]*?--out ([a-z][\w.-]*)(?=[\s`])")


def test_git_ignores_every_file_the_readme_s_examples_write_in_the_repository() -> None:
    """`appliance console reference --out ranges.json`, run in the repository as README
    says, left a ranges.json that `git status` showed as a new file of the project. The tour's
    commands after its `cd "$(mktemp -d)"` write in another folder."""
    text = README.read_text()
    before_cd, after_cd = text.split('cd "$(mktemp -d)"', 1)
    in_repository = before_cd + after_cd.split("```", 1)[1]
    named = sorted(set(EXAMPLE_OUTPUT.findall(in_repository)))
    assert {"ranges.json", "report"} <= set(named)
    lines = (README.parent / ".gitignore").read_text().splitlines()
    ignored = {line.strip("/") for line in lines if not line.startswith("#")}  # "/report/"
    assert [name for name in named if name not in ignored] == []


def test_git_ignores_what_the_help_examples_write_in_the_working_folder() -> None:
    """`appliance synth skin --help`'s example, run in the repository, left a frames/ folder
    that `git status` showed as new files of the project (as did the examples' cohort/,
    results/, table.parquet, micrometer.png and reference.json, and `analyze --help`'s
    `--overlay overlays`)."""
    lines = (README.parent / ".gitignore").read_text().splitlines()
    ignored = {line.strip("/") for line in lines if not line.startswith("#")}
    written = {found.split("/", 1)[0] for _, examples in COMMAND_HELP.values()
               for example in examples
               for found in re.findall(r"--(?:out|overlay) ([\w./-]+)", example)}
    assert {"frames", "cohort", "ranges.json", "overlays"} <= written
    assert sorted(written - {"-"} - ignored) == []


def test_git_ignores_the_default_store_of_a_demo_run_in_any_folder_of_the_checkout() -> None:
    """`appliance demo` run in docs/ (no config.yaml there: the built-in defaults, state_dir
    ./state) made docs/state/, which `git status` listed: .gitignore had /state/ only."""
    lines = [line.strip() for line in (README.parent / ".gitignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    # a pattern with no slash but a trailing one matches a folder at any level (gitignore(5))
    assert any(line.rstrip("/") == "state" and "/" not in line.rstrip("/") for line in patterns)
