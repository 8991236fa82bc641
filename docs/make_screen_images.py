"""Write the README's screenshots of the kiosk screen (Japanese, English) and the console.

Run from the repository root with mosquitto on 127.0.0.1:1883:
``.venv/bin/python docs/make_screen_images.py``. It measures 80 synthetic customers with the
real skin analysis and model into a temporary store (their age bands from the generator), writes
the age-band reference ranges from that cohort (``appliance console reference``), runs a real
edge daemon on the synthetic camera with its kiosk screen, chooses an age band and consent on
the page in headless Debian chromium, and photographs the result; then it serves the console
on the same store and photographs its fleet, results and cohort pages. ``--only`` names the
pictures to write (``kiosk``, ``fleet``, ``results``, ``cohort``, or ``console`` for its three
pages) and leaves the others' files as they are, so a change that shows on one page rewrites
that page's picture alone (every picture carries the day it was made); ``--out DIR`` writes
them elsewhere, to compare with the committed ones first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import expect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.backoffice.schema import device_row, iso_utc, result_row  # noqa: E402
from appliance.backoffice.store import Batch, Store, open_store  # noqa: E402
from appliance.browser import chromium_page  # noqa: E402
from appliance.capture.quality import FrameQuality  # noqa: E402
from appliance.cli import main as cli  # noqa: E402
from appliance.config import ConsoleConfig, config_from_mapping  # noqa: E402
from appliance.console.auth import add_user  # noqa: E402
from appliance.console.db import StorePool  # noqa: E402
from appliance.console.server import ConsoleThread  # noqa: E402
from appliance.edge.measure import measure_frame, skin_measurement  # noqa: E402
from appliance.edge.service import build_daemon  # noqa: E402
from appliance.inference.classifier import SkinClassifier  # noqa: E402
from appliance.shipped import SKIN_MODEL, shipped_path  # noqa: E402
from appliance.synthetic.camera import age_band_of  # noqa: E402
from appliance.synthetic.skin import synthetic_frame  # noqa: E402
from appliance.transport import payloads  # noqa: E402
from appliance.transport.broker import free_port  # noqa: E402

IMAGES = REPO / "docs" / "images"
CONSOLE_PAGES = {"fleet": "/fleet", "results": "/results?limit=25", "cohort": "/cohort"}
MODEL = shipped_path(SKIN_MODEL)
CUSTOMERS = 80


def measured_cohort(store: Store) -> None:
    """Measure synthetic customers as a kiosk does (its grade withheld where the model reads a
    feature that was not measured) and store them as results of three kiosks."""
    model = SkinClassifier.load(str(MODEL))
    start = datetime.now(UTC) - timedelta(days=3)
    rows = []
    for index in range(CUSTOMERS):
        skin = synthetic_frame(11, index)
        measured = measure_frame(skin.image_rgb, skin.um_per_px, FrameQuality("ok", ()),
                                 skin_measurement, model)
        result = payloads.Result(
            measurement_id=payloads.new_measurement_id(), device_id=f"kiosk-{index % 3 + 1}",
            site=("ginza", "shibuya", "umeda")[index % 3],
            captured_at=start + timedelta(minutes=50 * index), software_version="0.1.0",
            quality=measured.quality, features=measured.features,
            classification=measured.classification,
            subject=payloads.Subject(age_band=age_band_of(skin.params.age_years), consent=True),
            not_validated=list(measured.not_validated))
        received = iso_utc(result.captured_at + timedelta(seconds=1))
        rows.append(result_row(result, received, result.to_json().decode()))
    store.write_batch(Batch(results=rows, statuses=_statuses(model)), 100)


def _statuses(model: SkinClassifier) -> list[tuple[object, ...]]:
    """Three kiosks online (the second not measuring: its disk is full; the fourth keeping its
    results in the repaired copy of a damaged outbox), one offline since its last status two
    hours ago."""
    now = datetime.now(UTC)
    serving = payloads.ModelInfo(name=model.name, version=model.version)
    rows = []
    for i, site, state, depth, oldest_s, age, paused, outbox in (
            (1, "ginza", "online", 0, None, 15, None, None),
            (2, "shibuya", "online", 2, 3.5, 15, "disk_full", None),
            (3, "umeda", "offline", 14, 5400.0, 7200, None, None),
            (4, "ginza", "online", 0, None, 20, None, "repaired_copy")):
        at = now - timedelta(seconds=age)
        status = payloads.Status(device_id=f"kiosk-{i}", site=site, state=state, at=at,
                                 software_version="0.1.0", model=serving, camera="online",
                                 outbox_depth=depth, outbox_oldest_age_s=oldest_s,
                                 measuring_paused=paused, outbox_in_use=outbox)
        rows.append(device_row(status, iso_utc(at)))
    return rows


def kiosk_shots(reference: Path, workdir: Path, out: Path) -> None:
    """The kiosk screen after a measurement, in Japanese and in English, at 1280x800 (the
    screen its layout fits unscrolled)."""
    config = config_from_mapping({
        "camera": {"source": "synthetic", "seed": 5},
        "mqtt": {"topic_prefix": f"docs/{uuid.uuid4().hex[:8]}"},
        "state_dir": str(workdir / "state"), "model": {"path": str(MODEL)},
        "edge": {"synthetic_fps": 5},  # customers hold the scope still for 1.6 s
        "screen": {"port": free_port(), "language": "ja", "reference_file": str(reference)},
    }, "docs", environ={})
    daemon = build_daemon(config)
    threading.Thread(target=daemon.run, daemon=True).start()
    time.sleep(1.0)
    with chromium_page(1280, 800) as page:
        page.goto(f"http://127.0.0.1:{config.screen.port}/")
        page.click("#lang-en")
        page.click("#bands button[data-band='40-49']")
        page.click("#consent-yes")
        expect(page.locator("#features")).to_contain_text("people aged 40-49", timeout=60_000)
        daemon.pipeline_stop.set()  # the camera stops: the next synthetic customer waits
        expect(page.locator("#overlay")).to_be_visible()
        time.sleep(0.5)
        page.screenshot(path=str(out / "kiosk-result-en.jpg"), type="jpeg", quality=80)
        page.click("#lang-ja")
        expect(page.locator("h1")).to_have_text("肌のキメチェック")
        page.screenshot(path=str(out / "kiosk-result-ja.jpg"), type="jpeg", quality=80)
    daemon.request_stop()


def console_shots(url: str, pages: list[str], out: Path) -> None:
    """The console's pages named in ``pages`` (fleet, results, cohort)."""
    settings = ConsoleConfig(port=free_port())
    pool = StorePool(url)
    server = ConsoleThread(settings, pool)
    server.start()
    server.wait_started()
    base = f"http://127.0.0.1:{settings.port}"
    with chromium_page(1280, 900) as page:
        page.goto(base + "/login")
        page.fill("input[name=user]", "alice")
        page.fill("input[name=password]", "documentation only")
        page.click("button[type=submit]")
        for name in pages:
            page.goto(base + CONSOLE_PAGES[name])
            page.screenshot(path=str(out / f"console-{name}.png"))
    server.stop()
    pool.close()


def main(argv: list[str]) -> None:
    """Write docs/images/kiosk-result-{ja,en}.jpg and console-{fleet,results,cohort}.png (or
    those named by ``--only``)."""
    parser = argparse.ArgumentParser(description="Write the README's screenshots.")
    parser.add_argument("--only", nargs="+", choices=("kiosk", "console", *CONSOLE_PAGES),
                        help="write only these pictures (console: its three pages)")
    parser.add_argument("--out", type=Path, default=IMAGES,
                        help="folder to write them in (default: docs/images)")
    args = parser.parse_args(argv)
    only = set(args.only or ("kiosk", "console"))
    pages = [name for name in CONSOLE_PAGES if name in only or "console" in only]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="appliance-docs-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'backoffice.sqlite3'}"
        store = open_store(url)
        measured_cohort(store)
        add_user(store, "alice", "operator", "documentation only")
        store.close()
        reference = Path(tmp) / "reference.json"
        cli(["console", "reference", "--store", url, "--out", str(reference)])
        if "kiosk" in only:
            kiosk_shots(reference, Path(tmp), args.out)
        if pages:
            console_shots(url, pages, args.out)
    print(f"wrote screenshots to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
