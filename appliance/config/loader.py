"""Reading config.yaml: the file, the environment overrides, validation and error messages.

Environment variables override any key: ``APPLIANCE__<SECTION>__<KEY>=value`` (double
underscores separate the path, case-insensitive, values parsed as YAML scalars), e.g.
``APPLIANCE__MQTT__PORT=1884``. Every error names the file, the key path (and the variable
that set it), the bad value and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from appliance.config.backoffice import STORE_URL_PATTERN
from appliance.config.mqtt import TOPIC_PREFIX_PATTERN
from appliance.config.tree import Config
from appliance.config.updates import UPDATES_URL_PATTERN
from appliance.configname import DEFAULT_CONFIG_FILE, ENV_PREFIX
from appliance.filekind import link_to_nothing, not_a_file
from appliance.logsafe import escape_controls, shorten
from appliance.safeyaml import YamlLimitError, safe_load_limited
from appliance.tlsfiles import TlsFileError, client_tls_context
from appliance.transport.payloads import IDENTIFIER_PATTERN, IDENTIFIER_WORDS

MAX_CONFIG_BYTES = 1_000_000
SQLITE_URL_PREFIX = "sqlite:///"  # then the file's path: relative (store.db) or absolute (/x)
# what each pattern a key must match takes, in words: the pattern itself ("String should match
# pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'") is no answer for whoever typed a shop's name
PATTERN_WORDS = {
    IDENTIFIER_PATTERN: IDENTIFIER_WORDS,
    TOPIC_PREFIX_PATTERN: "topic levels without # or + and without spaces, not starting with /",
    STORE_URL_PATTERN: "sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE",
    UPDATES_URL_PATTERN: "an http:// or https:// URL",
}


class ConfigError(Exception):
    """A configuration problem, with the file and every bad key path in its message."""


def _shown(value: Any, limit: int = 80) -> str:
    """repr of a bad value, cut so a hostile one cannot flood the error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _shown_key(key: object, limit: int = 80) -> str:
    """A key of the config named in an error: controls escaped, cut (a YAML key may be as long
    as the file)."""
    return shorten(str(key), limit)


def _format_errors(exc: ValidationError, environ: Mapping[str, str]) -> list[str]:
    problems = []
    env_names = _env_names(environ)
    for err in exc.errors():
        key_path = ".".join(_shown_key(p) for p in err["loc"]) or "(top level)"
        path = key_path + _env_note(key_path, err["type"], env_names, environ)
        if err["type"] == "extra_forbidden":
            value = _shown(err["input"])
            problems.append(f"{path}: unknown key (value {value}); check the spelling")
        elif err["type"] == "value_error":
            problems.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            # "String should have at least 1 character": the value is named already
            expected = re.sub(r"^(Input|String|List|Dictionary|Value) should (be |have )?", "",
                              err["msg"])
            if err["type"] == "string_pattern_mismatch":
                expected = PATTERN_WORDS.get(err.get("ctx", {}).get("pattern", ""), expected)
            problems.append(f"{path}: got {_shown(err['input'])}; expected {expected}"
                            + _unquoted_note(err["type"], err["input"], key_path, environ))
    return problems


def _unquoted_note(kind: str, value: Any, key_path: str, environ: Mapping[str, str]) -> str:
    """Why a key taking text got a number, a truth value or a date: YAML reads an unquoted
    ``0042`` as the number 34, ``no`` as false, ``2026-01-01`` as a date; the error showed
    only what YAML made of it (``got 34`` for a site written 0042)."""
    if kind != "string_type" or isinstance(value, str | dict | list) or value is None:
        return ""
    variable = _env_names(environ).get(key_path)
    if variable is None:
        return (" (YAML reads an unquoted 0042 as the number 34, no as false, 2026-01-01 as a "
                "date: put the value in quotes, '0042')")
    text = _shown(environ[variable], 40)
    return (f" (YAML reads the variable's text {text} as {_shown(value, 40)}: put it in quotes "
            f"inside the variable, {variable}=\"{text}\")")


def _env_note(path: str, kind: str, env_names: Mapping[str, str],
              environ: Mapping[str, str]) -> str:
    """The APPLIANCE__ variable(s) behind an error at ``path``, as a note after it: the one
    that set it (and that it is empty, read as null: "got None" alone left a script's unset
    ``$PORT`` to be guessed); for an unknown key (a whole unknown section) every one beneath
    it; for a section's rule over several keys (mqtt: a login to another host with TLS off)
    every one that set a key of the section, which the file may not hold."""
    if path in env_names:
        empty = ", set but empty: read as null" if environ[env_names[path]] == "" else ""
        return f" (from environment variable {env_names[path]}{empty})"
    if kind not in ("extra_forbidden", "value_error"):
        return ""
    under = ", ".join(sorted(n for p, n in env_names.items() if p.startswith(f"{path}.")))
    if not under:
        return ""
    if kind == "extra_forbidden":
        return f" (from environment variable {under})"
    return f" (environment variables set under it: {under})"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The APPLIANCE__ variables as a tree of overrides; ValueError naming the variable(s) for
    one that names no key (``APPLIANCE__``) and for two that set the same key, or a key and a
    key under it (``APPLIANCE__MQTT`` and ``APPLIANCE__MQTT__PORT``): which one would win is
    no choice to make silently."""
    tree: dict[str, Any] = {}
    set_by: dict[tuple[str, ...], str] = {}  # key path -> the variable that set it
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            _refuse_a_near_miss(name)
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p)
        if not parts:
            raise ValueError(f"environment variable {name} names no config key; write "
                             "APPLIANCE__SECTION__KEY (e.g. APPLIANCE__MQTT__PORT=1884) or "
                             "unset it")
        for depth in range(1, len(parts) + 1):
            if (other := set_by.get(parts[:depth])) is not None or (
                depth == len(parts)
                and (other := next((n for p, n in set_by.items() if p[:depth] == parts), None))
            ):
                raise ValueError(f"environment variables {other} and {name} both set "
                                 f"{'.'.join(parts[:depth])}; unset one of them")
        set_by[parts] = name
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = safe_load_limited(raw) if raw != "" else None
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return tree


def _refuse_a_near_miss(name: str) -> None:
    """ValueError for ``APPLIANCE_MQTT__PORT``: a key path under one underscore after APPLIANCE,
    which no override reads, so the value it meant to set was silently the file's. Variables of
    one underscore without a key path (``APPLIANCE_MQTT_PASSWORD``) are not overrides."""
    prefix = ENV_PREFIX.rstrip("_") + "_"
    if name.upper().startswith(prefix) and "__" in name[len(prefix):]:
        meant = ENV_PREFIX + name[len(prefix):].lstrip("_")
        raise ValueError(f"environment variable {name} is not read: an override is "
                         f"APPLIANCE__SECTION__KEY, two underscores after APPLIANCE ({meant}); "
                         "rename or unset it")


def _env_names(environ: Mapping[str, str]) -> dict[str, str]:
    """Key path (``mqtt.port``) -> the APPLIANCE__ variable that set it, for error messages."""
    names = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX):
            parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
            names[".".join(parts)] = name
    return names


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file (its controls escaped) and line."""
    name = escape_controls(str(path))
    if path.is_dir():
        raise ConfigError(f"{name}: a directory, not a config file; name the file (e.g. "
                          f"{escape_controls(str(path / DEFAULT_CONFIG_FILE))})")
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{name}: {escape_controls(link_to_nothing(path))}; point it at the "
                          "config file or remove it")
    if not path.exists():
        raise ConfigError(_not_found(path))
    if not path.is_file():  # a FIFO or device would block or never end
        raise ConfigError(f"{name}: not a regular file; name the config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        data = safe_load_limited(path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise ConfigError(f"{name}: permission denied; check the file's permissions") from exc
    except YamlLimitError as exc:
        raise ConfigError(f"{name}: refused: {exc}") from exc
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{name}: {_yaml_problem(exc)}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: not readable YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    if where := _nul_at(data, ""):
        raise ConfigError(f"{name}: {shorten(where, 200)} holds a NUL character (\\0): no "
                          "name, path or text in a config may; remove it")
    return data


def _not_found(path: Path) -> str:
    """Why ``path`` could not be read: the file named is not there (its folder neither, where
    so); the default one (``edge``, ``pathology serve`` without --config) is to be named."""
    name = escape_controls(str(path))
    where = "" if path.is_absolute() else f" in {escape_controls(str(Path.cwd()))}"
    if str(path) == DEFAULT_CONFIG_FILE:
        return (f"{name}: config file not found{where}: pass --config FILE (the repository's "
                "config.yaml is a working default for one machine) or create it")
    folder = path.parent
    if not folder.exists():
        return (f"{name}: config file not found: the file named does not exist, nor its folder "
                f"{escape_controls(str(folder))}; check the path")
    return f"{name}: config file not found: the file named does not exist{where}; check the path"


def _nul_at(node: Any, key_path: str) -> str | None:
    """The key path of the first key or text value holding a NUL character (the OS refuses
    such a file name with a ValueError deep in whatever opens it), None when none does."""
    if isinstance(node, str):
        return (key_path or "(top level)") if "\0" in node else None
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{key_path}.{key}" if key_path else str(key)
            if isinstance(key, str) and "\0" in key:
                return here
            if found := _nul_at(value, here):
                return found
    if isinstance(node, list):
        for index, item in enumerate(node):
            if found := _nul_at(item, f"{key_path}[{index}]"):
                return found
    return None


def config_from_mapping(
    data: Mapping[str, Any], source: str = "config", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a config mapping (plus environment overrides) into a Config."""
    environ = os.environ if environ is None else environ
    try:
        overrides = _env_overrides(environ)
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid config:\n  {exc}") from exc
    merged = _merge(dict(data), overrides)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        problems = _format_errors(exc, environ)
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems)) from exc


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; relative paths in it (state_dir, model, pathology
    folders, ...: ``resolve_paths``) resolve against its folder."""
    if path == "":  # Path("") is the working folder
        raise ConfigError("config file name '' is empty: name the config file (a script's "
                          "\"$VARIABLE\" left unset?)")
    file = Path(path)
    config = config_from_mapping(read_yaml(file), escape_controls(str(file)), environ)
    return resolve_paths(config, file.resolve().parent)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """'broken YAML at line N: PROBLEM', and where what it was reading began when that is
    another line (a quote or bracket left open is met only at the end of the file)."""
    line = exc.problem_mark.line + 1 if exc.problem_mark else None
    began = exc.context_mark.line + 1 if exc.context and exc.context_mark else None
    opened = f" ({exc.context} begun at line {began})" if began and began != line else ""
    return f"broken YAML at line {line or '?'}: {exc.problem}{opened}"


def load_config_or_defaults(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> Config:
    """The config file ``path``; without one ./config.yaml when present, else built-in defaults
    (state in ./state, the shipped skin model), always with the APPLIANCE__ overrides. A
    ./config.yaml that is there but no file (a folder, a broken link) is an error naming it, as
    ``appliance config check`` says, never silently the defaults."""
    if path is not None:
        return load_config(path, environ)
    if os.path.lexists(DEFAULT_CONFIG_FILE):
        return load_config(DEFAULT_CONFIG_FILE, environ)
    config = config_from_mapping({}, "built-in defaults (no ./config.yaml)", environ)
    return resolve_paths(config, Path.cwd())


def value_origin(config: Config, key_path: str, path: str | Path | None,
                 environ: Mapping[str, str] | None = None) -> str:
    """Where the value at ``key_path`` (``skin.um_per_px``) of ``load_config_or_defaults(path)``
    came from: the APPLIANCE__ variable that set it, the config file, or the built-in default."""
    environ = os.environ if environ is None else environ
    if variable := _env_names(environ).get(key_path):
        return variable
    *sections, key = key_path.split(".")
    node: BaseModel = config
    for section in sections:
        node = getattr(node, section)
    if key in node.model_fields_set:  # given in the file (the environment is ruled out above)
        return str(path if path is not None else DEFAULT_CONFIG_FILE)
    return "built-in default"


def missing_files(config: Config) -> list[str]:
    """Files the config names that do not exist, and TLS files that hold no usable
    certificate or key (the daemon would refuse to start)."""
    tls = config.mqtt.tls
    named = {"model.path": config.model.path,
             "screen.reference_file": config.screen.reference_file}
    if tls.enabled:
        named |= {"mqtt.tls.ca_file": tls.ca_file, "mqtt.tls.cert_file": tls.cert_file,
                  "mqtt.tls.key_file": tls.key_file}
    missing = [not_a_file(key, Path(value)) for key, value in named.items()
               if value is not None and not Path(value).is_file()]
    if tls.enabled and not any(line.startswith("mqtt.tls.") for line in missing):
        try:  # the files are there: can a TLS context be made of them?
            client_tls_context(tls.ca_file, tls.cert_file, tls.key_file)
        except TlsFileError as exc:
            missing.append(str(exc))
    return missing


def resolve_paths(config: Config, base: Path) -> Config:
    """Return the config with relative file paths made absolute against ``base`` (the config
    file's folder; the working folder for built-in defaults): state_dir, model.path,
    camera.path, screen.reference_file, updates.trusted_root, mqtt.tls's ca_file, cert_file and
    key_file, store.erasure_journal, pathology's results_dir, model, int8_model, slide_roots
    and slide_roots_by_login,
    and the file of a SQLite store.url (``sqlite:///store.db``: the same config run from
    another folder, by systemd or a shell, must open the same store, not a new empty one)."""

    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str(_resolved(base / value))

    model = config.model.model_copy(update={"path": absolute(config.model.path)})
    screen = config.screen.model_copy(
        update={"reference_file": absolute(config.screen.reference_file)}
    )
    camera = config.camera
    if camera.source == "directory":
        camera = camera.model_copy(update={"path": absolute(camera.path)})
    updates = config.updates
    updates = updates.model_copy(update={"trusted_root": absolute(updates.trusted_root)})
    tls = config.mqtt.tls
    tls = tls.model_copy(update={"ca_file": absolute(tls.ca_file),
                                 "cert_file": absolute(tls.cert_file),
                                 "key_file": absolute(tls.key_file)})
    mqtt = config.mqtt.model_copy(update={"tls": tls})
    store = config.store.model_copy(update={
        "url": _absolute_store_url(config.store.url, base),
        "erasure_journal": absolute(config.store.erasure_journal)})
    pathology = config.pathology
    pathology = pathology.model_copy(update={
        "results_dir": absolute(pathology.results_dir), "model": absolute(pathology.model),
        "int8_model": absolute(pathology.int8_model),
        "slide_roots": [absolute(root) for root in pathology.slide_roots],
        "slide_roots_by_login": {login: [absolute(root) for root in roots]
                                 for login, roots in pathology.slide_roots_by_login.items()}})
    return config.model_copy(
        update={"state_dir": absolute(config.state_dir), "model": model, "camera": camera,
                "screen": screen, "updates": updates, "mqtt": mqtt, "store": store,
                "pathology": pathology}
    )


def _absolute_store_url(url: str | None, base: Path) -> str | None:
    """A SQLite store URL whose file is relative (``sqlite:///store.db``) made absolute against
    ``base`` (``sqlite:////etc/appliance/store.db``); other URLs as they are."""
    if url is None or not url.startswith(SQLITE_URL_PREFIX):
        return url
    file = url.removeprefix(SQLITE_URL_PREFIX)
    return url if Path(file).is_absolute() else f"{SQLITE_URL_PREFIX}{_resolved(base / file)}"


def _resolved(path: Path) -> Path:
    """``path`` with its links resolved; one in a symbolic link loop as it is, made absolute,
    for the check that opens it to name the loop (``Path.resolve`` raises RuntimeError on a
    loop, which ended ``config check`` and every command in a traceback)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))
