"""``appliance demo``: the whole system on one machine, leaving its results to explore.

A private mosquitto on a free port, the back office, and edge daemons as child processes on
synthetic frames with ``camera.limit``. Each result is printed as the back office commits it.
The results go to the store the back-office commands read by default (so ``appliance fleet``,
``results query`` and ``report cohort`` show them afterwards), or to a temporary SQLite store
when no store URL is given (a throw-away run). Whatever happens (success, an edge failing,
Ctrl-C, SIGTERM, SIGHUP as its terminal closes), the edges and the broker are stopped and the
temporary folder is removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from appliance.backoffice.demo_kiosk import Kiosk, KioskCustomers, cohort_lines
from appliance.backoffice.export import NOT_MEASURED_NOTE
from appliance.backoffice.fleet import fleet_table
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.report import report_files
from appliance.backoffice.store import Store, StoreError, open_store
from appliance.backoffice.storeurl import masked_url
from appliance.config import config_from_mapping
from appliance.diskspace import full_disk_hint
from appliance.edge.grade_margin import between_words, grade_between
from appliance.edge.reasons import grade_withheld
from appliance.outfile import replacing_refusal
from appliance.shellname import shell_command
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.transport.broker import PrivateBroker, free_port
from appliance.transport.payloads import Result

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = shipped_path(SKIN_MODEL)
EDGE_COMMAND = (sys.executable, "-m", "appliance", "edge", "--config")
STOP_GRACE_S = 15.0
# A demo's edges are numbered below this (its --devices bound): the camera seeds of one run are
# first_camera_seed(...) + index, a block of their own for each count of results already stored.
SEEDS_PER_RUN = 32
LOG_TAIL_CHARS = 1500
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM and SIGHUP: 143 and 129 (the command says which)


class DemoError(RuntimeError):
    """The demo could not finish; the text says which part failed and shows its log."""


@dataclass
class Edge:
    """One edge daemon child process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    screen_port: int | None = None
    camera_seed: int = 1

    def log_tail(self) -> str:
        """The end of its log, for error messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-LOG_TAIL_CHARS:].strip() or "(no output)"


class ResultPrinter:
    """Prints each stored result (called from the back office's writer thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.per_device: Counter[str] = Counter()
        self.kime_scores: list[float] = []  # measured ones only
        self.not_measured = 0  # results with any feature outside the validated range

    def __call__(self, results: list[Result]) -> None:
        with self.lock:
            for result in results:
                self.per_device[f"{result.site}/{result.device_id}"] += 1
                print(self._line(result), flush=True)

    def _line(self, result: Result) -> str:
        """One stored result; ``n/m`` for a number outside the validated range (lock held)."""
        outside = set(result.not_validated)
        features = result.features
        if "kime_score" not in outside:
            self.kime_scores.append(features.kime_score)
        self.not_measured += bool(outside)
        kime = "  n/m" if "kime_score" in outside else f"{features.kime_score:5.1f}"
        pores = "n/m" if "pore_count" in outside else f"{features.pore_count:3d}"
        band = result.subject.age_band if result.subject else None
        return (f"stored  {result.site}/{result.device_id}  kime {kime}  pores {pores}  "
                f"grade {_grade(result)}  age band {band or '-'}")

    @property
    def stored(self) -> int:
        """Results stored so far."""
        with self.lock:
            return sum(self.per_device.values())


def _grade(result: Result) -> str:
    """The grade ("between A and B" for a near-tie, edge/grade_margin.py), "not given" when
    the kiosk withheld it (the reason names what it needed)."""
    if result.classification is not None:
        between = grade_between(result.classification.probabilities)
        return result.classification.label if between is None else between_words(between)
    return "not given" if grade_withheld(result.quality.reasons) is not None else "-"


def first_camera_seed(stored_results: int) -> int:
    """The camera seed of a demo's first edge on a store holding ``stored_results``: 1 on an
    empty store (a first or throw-away demo meets the same customers every time), and a block
    of seeds never used before after each demo that stored something, so a repeated demo meets
    new customers instead of storing the same skins again under new ids."""
    return 1 + SEEDS_PER_RUN * stored_results


def edge_config(
    index: int, port: int, count: int, state_dir: Path, screen_port: int | None = None, *,
    first_seed: int = 1,
) -> dict[str, object]:
    """The config of demo edge ``index`` (synthetic camera seeded ``first_seed + index``,
    ``count`` results, private broker, its kiosk screen on ``screen_port``)."""
    return {
        "screen": {"port": screen_port, "language": "en"},
        "device": {"id": f"kiosk-demo-{index + 1}", "site": "demo"},
        "camera": {"source": "synthetic", "limit": count, "seed": first_seed + index},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "state_dir": str(state_dir),
        "model": {"path": str(SHIPPED_MODEL) if SHIPPED_MODEL.is_file() else None},
    }


def _grader_words() -> str:
    """The model the demo's kiosks grade with, by name and version as the fleet table says it
    (its file's name where it cannot be read: the edges then say why)."""
    if not SHIPPED_MODEL.is_file():
        return "no model (not built)"
    from appliance.inference.classifier import ModelError, SkinClassifier  # noqa: PLC0415 (onnxruntime)

    try:
        model = SkinClassifier.load(SHIPPED_MODEL)
    except ModelError:
        return SHIPPED_MODEL.name
    return f"grading with {model.name} {model.version}"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def start_edges(
    workdir: Path, port: int, devices: int, count: int, command: Sequence[str], *,
    first_seed: int = 1,
) -> list[Edge]:
    """Write each edge's config (cameras seeded from ``first_seed`` on) and start it as a child
    process."""
    edges = []
    for index in range(devices):
        folder = workdir / f"edge-{index + 1}"
        folder.mkdir()
        config_path = folder / "config.yaml"
        screen_port = free_port()
        config_path.write_text(
            yaml.safe_dump(edge_config(index, port, count, folder / "state", screen_port,
                                       first_seed=first_seed))
        )
        log_path = folder / "edge.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                env=_child_env(), cwd=folder,
            )
        edges.append(Edge(f"kiosk-demo-{index + 1}", process, log_path, screen_port,
                          first_seed + index))
    return edges


def stop_edges(edges: list[Edge]) -> None:
    """SIGTERM every edge still running, then SIGKILL what does not stop in time."""
    for edge in edges:
        if edge.process.poll() is None:
            edge.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for edge in edges:
        try:
            edge.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            edge.process.kill()
            edge.process.wait()


def wait_for_results(
    edges: list[Edge], printer: ResultPrinter, expected: int, stop: threading.Event,
    timeout_s: float, *, disks: Sequence[Path] = (),
) -> None:
    """Return once every edge exited 0 and all ``expected`` results are stored; else DemoError.

    ``disks``: files whose disk must have room (the store, the edges' outboxes): on a full one
    the back office retries its commits for ever, so the demo stops at once and says so rather
    than waiting out ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    finished_at: float | None = None
    while not stop.wait(0.2):
        if full := next(filter(None, map(full_disk_hint, disks)), ""):
            raise DemoError(f"{full}; the demo cannot store its results "
                            f"({printer.stored} of {expected} stored)")
        failed = [e for e in edges if e.process.poll() not in (None, 0)]
        if failed:
            edge = failed[0]
            raise DemoError(f"edge daemon {edge.name} exited with code "
                            f"{edge.process.returncode}; its log ends:\n{edge.log_tail()}")
        if all(e.process.poll() == 0 for e in edges):
            if printer.stored >= expected:
                return
            finished_at = finished_at or time.monotonic()
            if time.monotonic() - finished_at > STOP_GRACE_S:
                raise DemoError(f"the edges delivered everything but the back office stored "
                                f"only {printer.stored} of {expected} results")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s with {printer.stored} of "
                            f"{expected} results stored (raise --timeout-s on a slow machine)")
    raise DemoError("interrupted (Ctrl-C, SIGTERM or SIGHUP); everything was stopped")


def _summary(store: Store, printer: ResultPrinter, elapsed_s: float) -> str:
    kime = printer.kime_scores
    mean = f"{sum(kime) / len(kime):.1f}" if kime else "-"
    devices = ", ".join(f"{name} {n}" for name, n in sorted(printer.per_device.items()))
    note = f"{NOT_MEASURED_NOTE}\n" if printer.not_measured else ""
    return (
        f"demo: {printer.stored} result(s) stored in {elapsed_s:.1f} s ({devices}); "
        f"mean kime score {mean}; {store.count_dead_letters()} dead letter(s)\n"
        f"{note}{fleet_table(store)}\n{cohort_lines(store)}"
    )


def next_steps(store_url: str | None, store_option: str = "", *, stopped_with: int = 0) -> str:
    """What to run next, as the user's shell calls this program; a throw-away run has none.
    ``store_option`` (`` --store URL`` or `` --config F``, as the demo was given it) goes on
    each command, so that it reads the demo's store, not the default one. ``stopped_with``:
    the results a demo that did not finish (Ctrl-C, a failed edge) had stored, which stay."""
    if store_url is None:
        return "demo: throw-away run; its store was deleted"
    run, opt = shell_command(), store_option
    kept = (f"the {stopped_with} result(s) stored before it stopped are kept"
            if stopped_with else "results kept")
    export = _replacing("results.csv", [Path("results.csv")])
    report = _replacing("report", report_files(Path("report")),
                        "every feature by age band, with plots: report/index.html")
    return (
        f"demo: {kept} in {masked_url(store_url)}; explore them with\n"
        f"  {run} fleet{opt}\n  {run} results query{opt}\n"
        f"  {run} results export --format csv --out results.csv{opt}{export}\n"
        f"  {run} report cohort --out report{opt}{report}\n"
        f"  {run} console user add NAME --role operator{opt}, then {run} console{opt} (the web "
        "console; it prints its address)"
    )


def _replacing(what: str, files: list[Path], note: str = "") -> str:
    """`` --force`` and what it replaces, where an earlier export or report (the tour's, a
    demo's before) left ``files`` in the working folder: suggested without it, the command
    is refused, exit 2. ``note`` (what the command makes) is added in the parentheses."""
    if replacing_refusal(files, force=False) is None:
        return f" ({note})" if note else ""
    return f" --force (replaces the {what} here{'; ' if note else ''}{note})"


def _backoffice(
    workdir: Path, port: int, printer: ResultPrinter, store_url: str | None,
    stop: threading.Event | None = None,
) -> tuple[IngestWorker, Store]:
    """The demo's back office on ``store_url`` (None: a SQLite store in ``workdir``); once
    ``stop`` is set (a Ctrl-C, which stops the broker too) losing the broker is no warning."""
    url = store_url or f"sqlite:///{workdir / 'backoffice.sqlite3'}"
    config = config_from_mapping(
        {"mqtt": {"port": port}, "state_dir": str(workdir),
         "backoffice": {"client_id": "demo-backoffice"}},
        "demo", environ={},
    )
    store = open_store(url)
    worker = IngestWorker(config, store, on_stored=printer, stopping=stop)
    worker.start()
    print(f"demo: mosquitto on 127.0.0.1:{port}, back office on {masked_url(url)}", flush=True)
    return worker, store


def _run(
    workdir: Path, port: int, worker: IngestWorker, printer: ResultPrinter, *,
    devices: int, count: int, timeout_s: float, edge_command: Sequence[str],
    stop: threading.Event, disks: Sequence[Path] = (), stored_before: int = 0,
) -> list[Edge]:
    if not worker.subscribed.wait(15):
        raise DemoError(f"the back office could not subscribe on port {port}: "
                        f"{worker.failed or 'no answer from the broker'}")
    first_seed = first_camera_seed(stored_before)
    edges = start_edges(workdir, port, devices, count, edge_command, first_seed=first_seed)
    print(f"demo: {devices} edge daemon(s), {count} synthetic customer(s) each, "
          f"{_customers_note(first_seed, devices, stored_before)}, {_grader_words()}; "
          "waiting for results...", flush=True)
    customers_done = threading.Event()
    customers = KioskCustomers(
        [Kiosk(e.name, e.screen_port, e.camera_seed, number)
         for number, e in enumerate(edges) if e.screen_port],
        customers_done,
    )
    customers.start()  # the simulated people choose age band and consent on each screen
    try:
        wait_for_results(edges, printer, devices * count, stop, timeout_s, disks=disks)
    except BaseException:
        stop_edges(edges)
        raise
    finally:
        customers_done.set()
    return edges


def _customers_note(first_seed: int, devices: int, stored_before: int) -> str:
    """Which customers the cameras show: new ones after the results the store already held."""
    seeds = f"{first_seed}" if devices == 1 else f"{first_seed}-{first_seed + devices - 1}"
    after = (f": new customers, after the {stored_before} result(s) the store holds"
             if stored_before else "")
    return f"camera seed(s) {seeds}{after}"


def run_demo(
    devices: int = 2,
    count: int = 2,
    timeout_s: float = 900.0,
    *,
    edge_command: Sequence[str] = EDGE_COMMAND,
    stop: threading.Event | None = None,
    store_url: str | None = None,
    store_option: str = "",
) -> int:
    """Run broker, back office and edges until all results are stored; returns the exit code.

    Results go to ``store_url`` (kept), or to a temporary store when it is None;
    ``store_option`` names it on the commands suggested at the end (next_steps)."""
    stop = stop or threading.Event()
    started_s = time.monotonic()
    with (tempfile.TemporaryDirectory(prefix="appliance-demo-") as tmp,
          PrivateBroker(workdir=Path(tmp) / "broker") as broker):
        printer = ResultPrinter()
        try:
            worker, store = _backoffice(Path(tmp), broker.port, printer, store_url, stop)
        except StoreError as exc:  # a Ctrl-C while it waited for the store: a stop
            print(f"demo {'' if stop.is_set() else 'failed: '}{exc}", file=sys.stderr,
                  flush=True)
            return EXIT_INTERRUPTED if stop.is_set() else 1
        try:
            edges = _run(
                Path(tmp), broker.port, worker, printer, devices=devices, count=count,
                timeout_s=timeout_s, edge_command=edge_command, stop=stop,
                disks=_disks(Path(tmp), store), stored_before=store.count_results(),
            )
            stop_edges(edges)
            worker.stop()
            return _finished(store, printer, time.monotonic() - started_s, store_url,
                             store_option)
        except DemoError as exc:
            return _failed(exc, printer, stop, store_url, store_option)
        finally:
            worker.stop()
            store.close()


def _disks(workdir: Path, store: Store) -> list[Path]:
    """Where a full disk ends the demo: the edges' outboxes and a SQLite store's own disk."""
    if store.postgres:
        return [workdir]
    return [workdir, Path(store.url.removeprefix("sqlite:///"))]


def _finished(store: Store, printer: ResultPrinter, elapsed_s: float, store_url: str | None,
              store_option: str) -> int:
    """Say what the demo stored and what to run next; exit code 0."""
    print(_summary(store, printer, elapsed_s), flush=True)
    print(next_steps(store_url, store_option), flush=True)
    return 0


def _failed(exc: DemoError, printer: ResultPrinter, stop: threading.Event,
            store_url: str | None, store_option: str) -> int:
    """Say why the demo stopped and what it had stored; the exit code (130 when stopped)."""
    print(f"demo {'stopped' if stop.is_set() else 'failed'}: {exc}", file=sys.stderr, flush=True)
    if not printer.stored:
        print("demo: no result was stored before it stopped", flush=True)
    elif store_url is not None:
        print(next_steps(store_url, store_option, stopped_with=printer.stored), flush=True)
    return EXIT_INTERRUPTED if stop.is_set() else 1
