"""What a config is for, as ``appliance config check`` says it: the roles whose sections the
config sets (a kiosk, a back-office worker, the console, a pathology server), each in a few
words, then the broker and state folder every role shares.

One config tree serves every role, so a back office's file is read with a kiosk's defaults
beside its own keys: describing it by its device and camera would describe what it is not.
A file that sets none of the roles' sections (only ``mqtt`` or ``state_dir``, or no file:
the built-in defaults every command without ``--config`` uses) is described for each role
but the pathology server, which needs its own section.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from appliance.backoffice.storeurl import masked_url, store_url_for
from appliance.config import ENV_PREFIX, Config, read_yaml
from appliance.config.mqtt import this_host

KIOSK_SECTIONS = frozenset({"device", "camera", "model", "skin", "screen", "updates", "edge"})


def _kiosk(config: Config) -> str:
    limit = "forever" if config.camera.limit is None else f"limit {config.camera.limit}"
    return (f"kiosk {config.device.site}/{config.device.id}: camera {config.camera.source} "
            f"({limit}), model {config.model.path or 'none'}, {config.skin.um_per_px} um/px")


def _store(config: Config) -> str:
    return masked_url(store_url_for(config.store.url, config.state_dir))


def _back_office(config: Config) -> str:
    return (f"back office: store {_store(config)}, share group "
            f"{config.backoffice.share_group}")


def _console(config: Config) -> str:
    settings = config.console
    plain = settings.allow_plain_http and not this_host(settings.bind)
    return (f"console on {settings.bind} port {settings.port}"
            + (" in plain HTTP (console.allow_plain_http)" if plain else ""))


def _pathology(config: Config) -> str:
    settings = config.pathology
    return (f"pathology server {settings.client_id or '(host name)'}: "
            f"{len(settings.slide_roots)} slide root(s)"
            + (f", its own for {len(settings.slide_roots_by_login)} login(s)"
               if settings.slide_roots_by_login else "") + ", backends "
            f"{', '.join(settings.backends)}, model {settings.model}, store {_store(config)}")


def given_sections(path: str | None, environ: Mapping[str, str] = os.environ) -> set[str]:
    """The top-level sections the config file ``path`` (None: the built-in defaults) and the
    APPLIANCE__ variables set. Read from the file, not the Config: loading makes its relative
    paths absolute, which counts every section holding one as given."""
    from_file = set(read_yaml(Path(path))) if path is not None else set()
    return from_file | {name[len(ENV_PREFIX):].split("__")[0].lower() for name in environ
                        if name.upper().startswith(ENV_PREFIX)}


def _roles(given: set[str]) -> list[Callable[[Config], str]]:
    """The roles whose sections are ``given`` (``store`` beside ``pathology`` is the
    pathology server's); every role but the pathology server's when none is."""
    roles: list[Callable[[Config], str]] = []
    if given & KIOSK_SECTIONS:
        roles.append(_kiosk)
    if "backoffice" in given or ("store" in given and "pathology" not in given):
        roles.append(_back_office)
    if "console" in given:
        roles.append(_console)
    if "pathology" in given:
        roles.append(_pathology)
    return roles or [_kiosk, _back_office, _console]


def role_summary(config: Config, given: set[str]) -> str:
    """One line: each role whose sections are ``given``, described from ``config``, then the
    broker and state folder."""
    tls = "tls" if config.mqtt.tls.enabled else "plain"
    shared = (f"broker {config.mqtt.host}:{config.mqtt.port} ({tls}), prefix "
              f"{config.mqtt.topic_prefix}, state {config.state_dir}")
    return "; ".join([*(describe(config) for describe in _roles(given)), shared])
