"""Shared fixtures: the running mosquitto, a private broker, per-test topics; and guards that
fail a test leaving the process's signal handlers or masks changed (tests/signal_state.py) or
a kiosk's pipeline thread running (tests/kiosk_threads.py)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.browser import chromium, page_in
from appliance.transport.broker import PrivateBroker, port_open
from tests.kiosk_threads import left_running, pipeline_threads
from tests.signal_state import changes, restore, signal_state

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = [
    "tests.report_text",  # reports that xdist can send (surrogates escaped)
    "tests.worker_crash",  # a crashed xdist worker reported with how its process ended
    "tests.self_signals",  # a signal sent to this process that ends it is said first
]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the commands the tests start as it would from a terminal, however the
    suite was started. A shell starts a background job (``./dev test &``, a CI runner's script)
    with SIGINT ignored, an ignored signal stays ignored across exec, and so every command a
    test started ignored the Ctrl-C the test sent it: the Ctrl-C tests hung until their guard
    (seen under pytest-xdist; in one process an earlier test's leftover handler hid it). A
    Python handler is reset to the default across exec, so the commands start with the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # The same for SIGHUP under ``nohup ./dev test``: every command a test started ignored the
    # hangup the test sent it (the services keep SIGHUP ignored where they find it so, as nohup
    # asks). A handler that does nothing keeps the suite itself deaf to a hangup, as nohup
    # wanted, and is reset to the default across exec.
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _hangup_not_for_the_suite)


def _hangup_not_for_the_suite(signum: int, frame: Any) -> None:
    """SIGHUP to the suite itself (started under nohup): ignored, as nohup asked."""


@pytest.fixture(autouse=True)
def signals_left_as_found() -> Iterator[None]:
    """Fail a test that leaves a stop or reload handler, or the ignored or blocked signals,
    other than it found them; the handlers are put back so the tests after it run as usual."""
    before = signal_state()
    yield
    leaked = changes(before, signal_state())
    if leaked:
        restore(before)
        pytest.fail("the test left the process's signals changed: " + "; ".join(leaked))


@pytest.fixture(autouse=True)
def erasure_journal_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's erasure journal in its own folder (store.erasure_journal by the
    environment, which the commands it runs inherit): the default, in state_dir, is the
    checkout's state/ for a command run with --store alone, where one test's erasures would
    be applied again by another's restore."""
    monkeypatch.setenv("APPLIANCE__STORE__ERASURE_JOURNAL", str(tmp_path / "erasure-journal.jsonl"))


@pytest.fixture(autouse=True)
def kiosk_threads_stopped() -> Iterator[None]:
    """Fail a test that leaves a kiosk's capture, analysis or commit thread running: it would
    work on in this process, spending the CPU of the tests after it, until the process ends."""
    before = pipeline_threads()
    yield
    left = left_running(before, wait_s=10.0)
    if left:
        pytest.fail("the test left a kiosk's pipeline running (" + ", ".join(left) + "); stop "
                    "its daemon and join its thread, or give it a source its stop reaches")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int


@pytest.fixture(scope="session")
def mqtt_broker() -> BrokerAddress:
    """The machine's mosquitto (127.0.0.1:1883, or $APPLIANCE_TEST_BROKER=host:port)."""
    host, _, port = os.environ.get("APPLIANCE_TEST_BROKER", "127.0.0.1:1883").partition(":")
    address = BrokerAddress(host, int(port or 1883))
    if not port_open(address.host, address.port):
        pytest.fail(f"no MQTT broker on {address.host}:{address.port}; start mosquitto first")
    return address


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix no other test (or earlier run) uses, so tests never see each other."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]
    return f"test/{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A started mosquitto on a free port that the test may stop, kill and restart."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """Debian's headless chromium under Playwright, one per test module (appliance/browser.py);
    each test takes its pages from it with ``page_in``, in a context of their own (no cookies,
    storage or cache of another test's), instead of starting a browser of its own (~1 s)."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def browser_page(chromium_browser: Any) -> Iterator[Any]:
    """A Playwright page (1280x800) of the module's chromium, in a context of its own."""
    with page_in(chromium_browser) as page:
        yield page


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Any]:
    """A PostgreSQL server of the module's own, which its tests stop, kill and start again
    (tests/pg_cluster.py); each test makes its own database in it."""
    from tests.pg_cluster import private_cluster

    try:
        with private_cluster() as cluster:
            yield cluster
    except LookupError as missing:
        pytest.skip(f"needs PostgreSQL's server programs: {missing}")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running console on a seeded store, one per test module (tests/console/)."""
    from tests.console.console_helpers import running_console

    with running_console(tmp_path_factory.mktemp("console")) as running:
        yield running
