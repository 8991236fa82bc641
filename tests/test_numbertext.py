"""Numbers typed on the command line: "-inf" reaches the option's own range check (argparse
took it for an option: "expected one argument"), and digits that are not ASCII ("１０", which
float() reads as 10) or "1_0" are refused as not a number, on every float option that reads
a quantity."""

from __future__ import annotations

import pytest

from appliance.cli import main
from appliance.numbertext import decimal_number, whole_number

ANALYZE = ("analyze", "x.jpg", "--um-per-px")
CALIBRATE = ("calibrate", "x.png", "--mm")
PATHOLOGY = ("pathology", "run", "slides", "--out", "results", "--um-per-px")
TOKEN = ("console", "token", "create", "bob", "--days")


@pytest.mark.parametrize(("command", "value", "refusal"), [
    (ANALYZE, "-inf", "must be a finite number (ASCII digits) of micrometres per pixel"),
    (ANALYZE, "１０", "must be a finite number (ASCII digits) of micrometres per pixel"),
    (CALIBRATE, "-inf", "must be a finite positive number in ASCII digits"),
    (CALIBRATE, "０.1", "must be a finite positive number in ASCII digits"),
    (PATHOLOGY, "-inf", "-inf µm/px is not a plausible slide resolution"),
    (PATHOLOGY, "０.５", "'０.５' is not a number of µm per pixel in ASCII digits"),
    (TOKEN, "-nan", "'-nan': a number of days in ASCII digits, more than 0"),
    (TOKEN, "３０", "'３０': a number of days in ASCII digits, more than 0"),
])
def test_a_float_option_refuses_minus_inf_and_other_scripts_digits_with_its_message(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], value: str, refusal: str,
) -> None:
    with pytest.raises(SystemExit) as ended:
        main([*command, value])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert refusal in err
    assert "expected one argument" not in err


@pytest.mark.parametrize(("text", "value"), [
    ("9.6", 9.6), ("+1e3", 1000.0), (".5", 0.5), ("5.", 5.0), ("-1E-2", -0.01),
    ("-Infinity", float("-inf")),
])
def test_ascii_decimal_notation_is_read_as_float_reads_it(text: str, value: float) -> None:
    assert decimal_number(text) == value


@pytest.mark.parametrize("text", ["１０", "1_0", " 9.6", "9.6\n", "٣", "0x10", "", "e5", "."])
def test_other_notations_float_would_read_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a number in ASCII decimal notation"):
        decimal_number(text)


@pytest.mark.parametrize("text", ["１０", "1_0", " 5", "٣", "5.0", ""])
def test_a_whole_number_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError, match="not a whole number in ASCII digits"):
        whole_number(text)
    assert whole_number("-12") == -12
    assert whole_number("+7") == 7


def test_a_limit_in_full_width_digits_is_refused_naming_the_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["results", "query", "--limit", "２０"])
    assert ended.value.code == 2
    assert "'２０': not a whole number in ASCII digits" in capsys.readouterr().err
