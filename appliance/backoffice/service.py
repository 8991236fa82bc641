"""``appliance backoffice``: the ingest worker as a long-running service with clean shutdown."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

from appliance import interrupts
from appliance.backoffice.ingest import IngestWorker, default_client_id
from appliance.backoffice.journal_start import JournalRefusedError, journal_applied_at_start
from appliance.backoffice.kiosk_forgets import ForgetPublisher
from appliance.backoffice.metrics import serve_metrics
from appliance.backoffice.retention import RetentionPruner
from appliance.backoffice.store import Store, StoreError, open_store
from appliance.backoffice.storeerrors import STORE_ERRORS, explained
from appliance.backoffice.storeurl import store_name, store_url_for
from appliance.config import Config
from appliance.statelock import StateDirError, StateLock, StateLockError

log = logging.getLogger(__name__)
STATS_EVERY_S = 30.0
STOP_PRUNER_S = 10.0  # a prune batch under way ends its transaction; the rest waits a run
EXIT_BROKER_REFUSED = 3  # the broker refused our login or subscriptions: restarting cannot help


def stop_on_signals(stop: threading.Event,
                    received: list[int] | None = None) -> AbstractContextManager[None]:
    """For the length of the block SIGTERM, SIGINT and SIGHUP (a terminal closed) set ``stop``,
    said under the back office's logger, also one that came while the command started
    (appliance/interrupts.py); each one's number is added to ``received`` when given (a
    command's exit code names it: 128 + the number). The handlers before it are back after it."""
    return interrupts.stop_on_signals(stop, log, received)


def run_backoffice(config: Config, stop: threading.Event) -> int:
    """Ingest until ``stop`` is set or the broker refuses us; returns the exit code
    (1: the store cannot be opened, or this worker runs already; 2: a TLS file that cannot be
    used, a state_dir that is no folder, or an erasure journal that cannot be used:
    journal_start.py; 3: the broker refused us)."""
    client_id = config.backoffice.client_id or default_client_id()
    try:  # two workers with one client id would knock each other off the broker
        lock = StateLock(Path(config.state_dir) / f"backoffice-{client_id}.lock",
                         f"back office {client_id}",
                         "give this one its own backoffice.client_id")
    except StateLockError as exc:
        log.error("%s", exc)
        return 2 if isinstance(exc, StateDirError) else 1
    try:
        return _ingest(config, stop)
    finally:
        lock.release()


def _recount_dead_letters(store: Store) -> None:
    """Set the store's running total of dead letters right (``recount_letter_totals``),
    saying so when it had drifted."""
    (letters, letter_bytes), (kept, kept_bytes) = store.recount_letter_totals()
    if (letters, letter_bytes) != (kept, kept_bytes):
        log.warning("the dead-letter totals said %d letters of %d bytes, but %d of %d bytes "
                    "are kept (a back-office worker older than store migration 15 kept or "
                    "pruned some: before 13 workers kept no total, before 15 they counted "
                    "characters, not bytes); recounted", letters, letter_bytes, kept, kept_bytes)


def _start_pruner(config: Config, url: str, client_id: str) -> RetentionPruner | None:
    """The retention pruner beside the worker, started (None: results are kept for ever)."""
    if (days := config.backoffice.retention_days) is None:
        return None
    pruner = RetentionPruner(url, days, f"back office {client_id}", threading.Event())
    pruner.start()
    return pruner


def _store_readied(store: Store, config: Config) -> int | None:
    """The dead-letter totals set right and the erasure journal's lines the store lacks
    applied (journal_start.py), before the worker takes any message; None, else the exit
    code after saying why (2: a journal that cannot be used; 1: the store failed)."""
    try:
        _recount_dead_letters(store)
        journal_applied_at_start(store, config)
    except JournalRefusedError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except STORE_ERRORS as exc:
        log.error("the %s failed as the worker started: %s", store_name(store.url),
                  explained(exc))
        return 1
    return None


def _ingest(config: Config, stop: threading.Event) -> int:
    url = store_url_for(config.store.url, config.state_dir)
    try:
        store = open_store(url)
    except StoreError as exc:
        if stop.is_set():  # a Ctrl-C while it waited for the store: a stop, said as one
            log.info("%s", exc)
            return 0
        log.error("%s", exc)
        return 1
    if (refused := _store_readied(store, config)) is not None:
        store.close()
        return refused
    try:
        worker = IngestWorker(config, store)
    except ValueError as exc:  # a TLS file that cannot be used: the message names it
        log.error("cannot start: %s", exc)
        store.close()
        return 2
    log.info("back office %s storing to the %s", worker.client_id, store_name(url))
    worker.start()
    metrics = serve_metrics(worker, config.backoffice.metrics_port)
    pruner = _start_pruner(config, url, worker.client_id)
    forgets = ForgetPublisher(url, config.mqtt.topic_prefix, config.edge.keep_confirmed_h,
                              worker.publish_command, threading.Event(),
                              statuses_stored=worker.statuses_stored)
    forgets.start()  # the kiosks' kept copies of erased results
    next_stats = time.monotonic() + STATS_EVERY_S
    try:
        while not stop.wait(0.5):
            if worker.failed:
                log.error("%s", worker.failed)
                return EXIT_BROKER_REFUSED
            if time.monotonic() >= next_stats:
                log.info("ingest: %s", worker.stats.in_words())
                next_stats += STATS_EVERY_S
    finally:
        if metrics is not None:
            metrics.close()
        forgets.halt(STOP_PRUNER_S)
        worker.stop()
        if pruner is not None:  # it ends with the worker
            pruner.halt(STOP_PRUNER_S)
        store.close()
        log.info("stopped; ingest: %s", worker.stats.in_words())
    return 0
