"""Text from outside is shown with every character that draws nothing or moves other text as a
visible escape (logsafe.escape_controls): in the commands' tables and on the console's pages.
A word joiner, a tag or a Hangul filler is as invisible as U+202E: "1.2.0\\u2060" read as
"1.2.0", another version than the one sent."""

from __future__ import annotations

import random
import sys
import unicodedata
from pathlib import Path

import pytest

from appliance.backoffice.fleet import fleet_table
from appliance.backoffice.schema import DeadLetter, device_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.logsafe import escape_controls
from appliance.synthetic import fleet
from appliance.transport.payloads import ModelInfo

UNSHOWN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"
# what the escapes of main's list missed: a soft hyphen, a word joiner, an invisible times, a
# deprecated format character, tag letters, a Hangul filler, zero width (non-)joiners
HIDDEN = "\xad\u2060\u2062\u206a\U000e0001\U000e0041\u3164\u200c\u200d"
HIDDEN_SHOWN = "\\u00ad\\u2060\\u2062\\u206a\\U000e0001\\U000e0041\\u3164\\u200c\\u200d"


def test_every_control_format_and_separator_character_is_shown_as_an_escape() -> None:
    unshown = [chr(code) for code in range(sys.maxunicode + 1)
               if unicodedata.category(chr(code)) in UNSHOWN_CATEGORIES]
    unshown += HANGUL_FILLERS
    left = [f"U+{ord(char):04X}" for char in unshown if escape_controls(char) == char]
    assert not left, f"{len(left)} shown as they are: {left[:20]}"
    for char in unshown:
        shown = escape_controls(char)
        assert shown.isascii()
        assert shown.isprintable()


def test_an_escape_past_u_ffff_reads_back_as_the_one_character_it_was() -> None:
    """'\\ue0041' would read as U+E004 and a '1'."""
    text = "a\U000e0041b\u2060"
    assert escape_controls(text) == "a\\U000e0041b\\u2060"
    assert escape_controls(text).encode().decode("unicode_escape") == text
    assert escape_controls("é 日本 \u00e9\u0301 ١٢") == "é 日本 \u00e9\u0301 ١٢"  # drawn: as is


def test_the_fleet_table_shows_a_stored_version_s_invisible_characters_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.sqlite3'}"
    store = open_store(url)
    # stored before the contract refused such names (payloads.Drawn), kept as they were sent
    model = ModelInfo.model_construct(name="grader" + HIDDEN, version="2" + HIDDEN)
    status = fleet.online_status("lab", "k1", 4).model_copy(update={
        "software_version": "1.2.0" + HIDDEN, "model": model})
    store.write_batch(Batch(statuses=[device_row(status, "2026-11-26T00:00:01.000000Z")]), 10)
    table = fleet_table(store)
    store.close()
    assert not set(table) & set(HIDDEN)
    assert f"1.2.0{HIDDEN_SHOWN}" in table
    assert f"grader{HIDDEN_SHOWN} 2{HIDDEN_SHOWN}" in table
    assert main(["fleet", "--store", url]) == 0
    printed = capsys.readouterr().out
    assert not set(printed) & set(HIDDEN)
    assert f"1.2.0{HIDDEN_SHOWN}" in printed


def test_dead_letters_show_invisible_characters_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'letters.sqlite3'}"
    store = open_store(url)
    result = fleet.sample_result(random.Random(3), "lab", "k1", 0)
    refused = result.to_json().replace(b'"site":"lab"', f'"site":"lab{HIDDEN}"'.encode(), 1)
    letter = DeadLetter("2026-11-26T00:00:02.000000Z", "appliance/lab/k1/result",
                        f"site: String should match pattern ({HIDDEN})", len(refused),
                        refused, None)
    store.write_batch(Batch(dead_letters=[letter]), 10)
    store.close()
    assert main(["results", "dead-letters", "--store", url]) == 0
    printed = capsys.readouterr().out
    assert not set(printed) & set(HIDDEN)
    assert f"({HIDDEN_SHOWN})" in printed
