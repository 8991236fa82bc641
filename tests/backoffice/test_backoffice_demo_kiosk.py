"""The demo's simulated customers choose age band and consent on the kiosk screens."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice import commands_demo, demo
from appliance.backoffice.demo_kiosk import customer_choice
from appliance.backoffice.store import open_store
from appliance.edge.screen_state import ScreenState

FAST_EDGE = (sys.executable, "-m", "appliance.edge.testing")


def test_simulated_people_choose_the_band_their_camera_states() -> None:
    from appliance.synthetic.camera import stated_age_band

    stated = stated_age_band(1)
    assert [customer_choice(1, i, "r")["age_band"] for i in range(3)] == [
        stated(i) for i in range(3)
    ]
    choices = [customer_choice(1, index, "run-1") for index in range(10)]
    assert [c["consent"] for c in choices].count(False) == 2  # every fifth person declines
    assert all(c["measurement"] == i for i, c in enumerate(choices))
    assert all(c["run"] == "run-1" for c in choices)  # the screen refuses a choice without
    assert len({c["age_band"] for c in choices}) > 1  # the generator's ages vary


def test_the_default_demo_meets_one_customer_who_declines() -> None:
    """Every fifth person of each kiosk declined, counting from each kiosk's first: the
    default demo, two kiosks of two customers, showed no decline at all."""
    from appliance.cli import build_parser

    given = build_parser().parse_args(["demo"])
    assert given.devices <= 4  # the demo's default stays small
    choices = [customer_choice(kiosk + 1, index, "r", kiosk)
               for kiosk in range(given.devices) for index in range(given.count)]
    assert [c["consent"] for c in choices].count(False) == 1
    for kiosk in range(commands_demo.MAX_DEMO_DEVICES):  # each kiosk: every fifth declines
        declined = [not customer_choice(1, index, "r", kiosk)["consent"] for index in range(20)]
        assert declined.count(True) == 4, kiosk


# the demo's edges, each customer stepping up to the scope once its choice is on the screen
CHOOSING_EDGE = (sys.executable, "-m", "tests.demo_edges")


@pytest.mark.broker
@pytest.mark.slow
def test_the_default_demo_s_kiosks_post_one_decline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each kiosk's customers choose as their kiosk's number says (a decline leaves no subject
    in the result). The choices the kiosks took are counted, each customer waiting for its
    own (tests/demo_edges.py): a customer measured before its choice arrived made none, and
    on a busy machine that could be the one who declines."""
    from appliance.backoffice import demo_kiosk

    real_call = demo_kiosk._call  # noqa: SLF001 - the driver's one way to the screens
    taken: dict[tuple[int, int], bool] = {}  # (screen port, measurement) -> consent

    def recorded(port: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = real_call(port, path, body)
        if path == "/subject" and body is not None:  # the screen took it (else: HTTPError)
            taken[(port, body["measurement"])] = body["consent"]
        return answer

    monkeypatch.setattr(demo_kiosk, "_call", recorded)
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    assert demo.run_demo(devices=2, count=2, timeout_s=120, edge_command=CHOOSING_EDGE,
                         store_url=url) == 0
    measured = {key: consent for key, consent in taken.items() if key[1] < 2}
    assert len(measured) == 4  # every customer of the two kiosks chose before being measured
    assert list(measured.values()).count(False) == 1


def test_a_choice_for_a_measurement_already_started_is_refused() -> None:
    state = ScreenState(burst_frames=5, idle_s=60, language="en")
    state.take_subject()  # measurement 0 starts without a choice
    with pytest.raises(ValueError, match="the measurement chosen for already started"):
        state.set_subject("40-49", True, measurement=0)
    state.set_subject("40-49", True, measurement=1)
    subject = state.take_subject()
    assert subject is not None
    assert subject.age_band == "40-49"


@pytest.mark.broker
@pytest.mark.slow
def test_demo_results_carry_the_age_bands_chosen_on_the_kiosk_screen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    assert demo.run_demo(devices=1, count=5, timeout_s=120, edge_command=FAST_EDGE,
                         store_url=url) == 0
    out = capsys.readouterr().out
    bands = [line.rsplit("age band ", 1)[1] for line in out.splitlines()
             if line.startswith("stored ")]
    assert len(bands) == 5
    chosen = [customer_choice(1, index, "") for index in range(5)]
    for band, choice in zip(bands, chosen, strict=True):
        # a person measured before the first choice arrived has none; a decliner never has one
        assert band in ({choice["age_band"], "-"} if choice["consent"] else {"-"})
    assert sum(band != "-" for band in bands) >= 3
    assert "stored result(s) with an age band (chosen on the kiosk screens)" in out
    store = open_store(url)
    try:
        subjects = [json.loads(row[0]).get("subject")
                    for row in store.select_results(("payload",))]
    finally:
        store.close()
    consented = [s for s in subjects if s and s.get("consent") is True]
    assert len(consented) >= 3  # entered on the screen's page, with the consent it records


SEED_RECORDING_EDGE = (
    sys.executable, "-c",
    "import os, runpy, sys, yaml\n"
    "seed = yaml.safe_load(open(sys.argv[1]))['camera']['seed']\n"
    "open(os.environ['DEMO_SEED_RECORD'], 'a').write(f'{seed}\\n')\n"
    "runpy.run_module('appliance.edge.testing', run_name='__main__')\n",
)


@pytest.mark.broker
@pytest.mark.slow
def test_a_second_demo_on_the_same_store_meets_new_customers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cameras' seeds were fixed (1, 2, ...), so every demo on a store stored the same
    simulated skins again under new ids, inflating the cohort's n and narrowing its
    intervals. A first demo (an empty store) stays as it was: seeds 1, 2."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    record = tmp_path / "seeds.txt"
    monkeypatch.setenv("DEMO_SEED_RECORD", str(record))
    seeds_of_run = []
    for _ in range(2):
        record.unlink(missing_ok=True)
        assert demo.run_demo(devices=2, count=2, timeout_s=120,
                             edge_command=SEED_RECORDING_EDGE, store_url=url) == 0
        seeds_of_run.append(sorted(int(line) for line in record.read_text().split()))
    first, second = seeds_of_run
    assert first == [1, 2]
    assert len(second) == 2
    assert not set(first) & set(second)
    out = capsys.readouterr().out
    assert "new customers, after the 4 result(s) the store holds" in out
    assert demo.SEEDS_PER_RUN >= commands_demo.MAX_DEMO_DEVICES  # one run's block of seeds
