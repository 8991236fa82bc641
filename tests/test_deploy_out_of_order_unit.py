"""The unit that shows the kiosk as out of order once the edge daemon has failed for good."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_deploy_units import DEPLOY, analyze, local_copy, service_settings

UNIT = "appliance-kiosk-out-of-order.service"
EDGE = "appliance-edge.service"


def test_the_edge_failed_for_good_starts_the_out_of_order_screen_and_a_new_start_stops_it(
) -> None:
    """The edge unit had no OnFailure=: failed for good (exit 2 or 3, which it does not
    restart) nothing served the kiosk screen's port, and the page said "starting again" for
    as long as it stayed failed."""
    assert service_settings(EDGE, "Unit").get("OnFailure") == [UNIT]
    # the edge's start stops it first, so the daemon finds its port free; a failure of that
    # stop never keeps the daemon from starting ("-")
    assert f"-+/usr/bin/systemctl stop {UNIT}" in service_settings(EDGE)["ExecStartPre"]
    # no Conflicts= either way: the stop job it adds for the failed edge would be handed on
    # to the kiosk screen (PartOf=), ending Chromium instead of showing the page
    for name in (EDGE, UNIT):
        assert "Conflicts" not in service_settings(name, "Unit"), name
    assert EDGE in service_settings("appliance-kiosk-screen.service", "Unit")["PartOf"]
    assert "[Install]" not in (DEPLOY / UNIT).read_text()  # never enabled: OnFailure= starts it
    (command,) = service_settings(UNIT)["ExecStart"]
    screen = (DEPLOY / "appliance-kiosk-screen.service").read_text()
    port = re.search(r"--screen-port (\d+)", command)
    assert port
    assert f"http://127.0.0.1:{port.group(1)}/" in screen  # the page Chromium shows
    assert command.endswith(f"--screen-port {port.group(1)}")
    # the page starts in the language the kiosk's config sets: the unit names the edge's config
    (edge_command,) = service_settings(EDGE)["ExecStart"]
    edge_config = re.search(r" --config (\S+)", edge_command)
    assert edge_config
    assert re.search(rf"edge --out-of-order --config {re.escape(edge_config.group(1))} ", command)
    assert UNIT in (DEPLOY / "install.sh").read_text()  # installed with the edge's unit


def test_the_out_of_order_unit_passes_verify_with_low_exposure(tmp_path: Path) -> None:
    unit = local_copy(tmp_path, UNIT, UNIT)
    edge = local_copy(tmp_path, EDGE, EDGE)
    done = analyze("verify", str(unit), str(edge))
    assert done.returncode == 0, done.stderr
    assert [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line] == []
    done = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    assert float(found.group(1)) <= 2.0
