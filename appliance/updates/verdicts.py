"""What a kiosk's newest model report says about a rollout: installed and healthy, failed, or
nothing yet.

One rule for every look at the fleet: the deploy (``rollout.Rollout``) hears each device of a
wave by it, and so does a halt's last look, whether the deploy halts or ``appliance models
halt`` halts a rollout whose deploy is gone (``halting.halt_stopped``). A kiosk that installed
the release since the look before keeps it however the rollout is halted; the halt of a
killed deploy put its older assignment back, a downgrade the kiosk refused (or, put back as a
signed rollback, carried out). So does one whose newest report says it serves the release,
healthy or still in its health check, whatever its wave recorded (``serves_through_halt``):
a halt freezes the rollout where it is, it takes no kiosk back.
"""

from __future__ import annotations

from appliance.transport import payloads
from appliance.updates.fleetwatch import DeviceView

FAILED_STATES = ("rejected", "rolled_back")
KEPT = "kept"  # a device's record: it served the release as the rollout halted, and keeps it


def verdict(
    view: DeviceView | None, release: tuple[str, str], rollout_id: str, started_s: float | None
) -> tuple[str, str] | None:
    """("installed" | a failed state, reason) once the device (``view``: as a watcher sees it)
    reported on ``release`` (name, version) of ``rollout_id``, which started at ``started_s``
    on the watcher's clock (None: not known, as for a rollout whose deploy is gone)."""
    report = view.state if view is not None else None
    if view is None or report is None:
        return None
    if already_serves(report, release):  # a kiosk that has it reports nothing new
        return "installed", (f"already serving it: went back to it by itself from "
                             f"{report.model.name} {report.model.version}"
                             if report.state == "rolled_back" and report.model is not None
                             else "already serving it, healthy")
    if not about_rollout(report, view.state_heard_s, rollout_id, started_s):
        return None
    about = report.model
    ours = about is not None and (about.name, about.version) == release
    if report.state in FAILED_STATES and (ours or about is None):
        return report.state, report.reason or report.state
    if ours and report.state == "installed" and report.healthy:
        return "installed", report.reason or "healthy"
    return None


def about_rollout(
    report: payloads.ModelState, heard_s: float | None, rollout_id: str, started_s: float | None
) -> bool:
    """A report naming the rollout's assignment, whatever the kiosk's clock says; one naming
    none (refused before the assignment was read) only when the watcher knows it reached the
    broker since the start (``heard_s``, its clock: heard live, or replayed after a reconnect
    of the watcher that dropped since the start, and newer than the report held). Its own time
    cannot say so: a kiosk clock running ahead dates a refusal retained from an earlier
    rollout after this one's start, which halted it before the kiosk could read its
    assignment. Without a start (``started_s`` None) no such report is about the rollout."""
    if report.rollout is not None:
        return report.rollout == rollout_id
    return heard_s is not None and started_s is not None and heard_s >= started_s


def already_serves(report: payloads.ModelState, release: tuple[str, str]) -> bool:
    """The device's newest report: ``release`` installed, healthy and serving (by an earlier
    rollout of it, as when a deploy is run again after it was killed), or serving after the
    kiosk went back to it by itself from another release (``rolled_back``: that one failed its
    health check, or was withdrawn). Such a kiosk, assigned the release it serves (the
    `models rollback --to` that `models yank` suggests), reports nothing new: a rollback
    waited out its timeout for it and halted, saying no device served the release."""
    about, running = report.model, report.running
    if running is None or (running.name, running.version) != release or about is None:
        return False
    if report.state == "rolled_back":
        return (about.name, about.version) != release
    return (report.state == "installed" and report.healthy is True
            and (about.name, about.version) == release)


def serves_through_halt(view: DeviceView | None, release: tuple[str, str]) -> str | None:
    """Why a device keeps ``release`` (name, version) through a halt, or None: its newest
    report says it serves the release, healthy or with its health check still running (not
    rolled back). A halt that put its older assignment back on it anyway (one still in its
    health check, one that installed after its wave stopped waiting for it) had it refuse a
    plain downgrade, or carry out a signed rollback it was never asked for."""
    report = view.state if view is not None else None
    if report is None or report.state == "rolled_back":
        return None
    running = report.running
    if running is None or (running.name, running.version) != release:
        return None
    if report.healthy is True:
        return "serving it, healthy"
    if report.state == "installed" and report.healthy is None:
        return "serving it, its health check still running"
    return f"serving it (its last report: {report.state})"
