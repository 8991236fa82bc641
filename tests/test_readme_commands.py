"""README.md: its "What works today" table names every command the CLI registers, and its
threat model is docs/threat-model.md's."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.cli import build_parser
from appliance.cli_help import leaf_commands

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


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_docs_threat_model_is_the_readme_s_threat_model() -> None:
    """docs/threat-model.md (which code cites) keeps README.md's table row for row."""
    section = README.read_text().split("### Threat model", 1)[1].split("\n## ", 1)[0]
    docs = (README.parent / "docs" / "threat-model.md").read_text()
    assert _table_rows(section)
    assert _table_rows(docs) == _table_rows(section)
