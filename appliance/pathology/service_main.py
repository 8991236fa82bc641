"""Start-up of ``appliance pathology serve``: open the store and the backend, then serve."""

from __future__ import annotations

import logging
import threading

from appliance import interrupts
from appliance.backoffice.store import StoreError
from appliance.backoffice.storeurl import masked_url, store_url_for
from appliance.config import Config, PathologyConfig
from appliance.pathology.jobstore import open_pathology_store
from appliance.pathology.model import ModelError
from appliance.pathology.preflight import unusable
from appliance.pathology.server import PathologyServer

log = logging.getLogger(__name__)


def serve(config: Config) -> int:
    """Serve until SIGTERM, Ctrl-C or SIGHUP (its terminal closed), whose stop message is said
    under this module's logger (the server's own, as its start line); exit codes as
    ``run_server``. A stop signal that came while the command started stops it here, before it
    opens anything."""
    stop = threading.Event()
    with interrupts.stop_on_signals(stop, log):
        return 0 if stop.is_set() else run_server(config, stop)


def _store_failed(exc: StoreError, stop: threading.Event) -> int:
    """Say why the store could not be opened; the exit code: 0 for a Ctrl-C or SIGTERM that
    came while it waited for the store (a stop, said as one), else 1."""
    if stop.is_set():
        log.info("%s", exc)
        return 0
    log.error("%s", exc)
    return 1


def run_server(config: Config, stop: threading.Event) -> int:
    """Serve until stop is set; 2 on a config or model that cannot work, 3 when the broker
    refuses our credentials, 4 when another server started first with the same client id
    (appliance/pathology/presence.py), 1 on a store error."""
    if not config.pathology.serves_slides:
        log.error("pathology.slide_roots and slide_roots_by_login are empty: every job would "
                  "be refused; name the "
                  "folders the server may read slides from in the config's pathology section "
                  "(pathology: {slide_roots: [/srv/slides]}; README.md, Pathology server, has "
                  "an example) or in APPLIANCE__PATHOLOGY__SLIDE_ROOTS='[/srv/slides]'")
        return 2
    refused = unusable(config.pathology)  # what `appliance config check` refuses too
    if refused:
        log.error("the pathology server cannot use its config: %s", "; ".join(refused))
        return 2
    url = store_url_for(config.store.url, config.state_dir)
    try:
        store = open_pathology_store(url, stop=stop)  # a stop cuts a hung store's wait
    except StoreError as exc:
        return _store_failed(exc, stop)
    try:
        server = PathologyServer(config, store)
    except ModelError as exc:
        log.error("%s", exc)
        store.close()
        return 2
    log.info("pathology server %s: store %s, backend %s, slide roots %s%s", server.server_id,
             masked_url(url), server.backend.settings, config.pathology.slide_roots,
             _by_login(config.pathology))
    try:
        server.run(stop)
    finally:
        store.close()
    if server.failed:
        log.error("%s", server.failed)
        # the broker refuses us, or a rival has our name: restarting cannot help
        return server.exit_code
    return 0


def _by_login(settings: PathologyConfig) -> str:
    """The logins' own slide roots, for the start line (empty where none has its own)."""
    if not settings.slide_roots_by_login:
        return ""
    unlisted = "slide roots" if settings.unlisted_logins_use_slide_roots else "refused"
    return f", by login {settings.slide_roots_by_login} (other logins: {unlisted})"
