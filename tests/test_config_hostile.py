"""Hostile config files: refused with a reason before anything expands or recurses."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping, load_config
from appliance.config.loader import PATTERN_WORDS
from appliance.config.tree import Config
from appliance.hostile import yaml_alias_bomb, yaml_deep_nesting
from appliance.safeyaml import MAX_EXPANDED_NODES, safe_load_limited
from appliance.transport.client import connect_properties, publish_properties, settings_from_config


def test_alias_bomb_is_refused_naming_its_expansion(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml_alias_bomb())
    assert path.stat().st_size < 2000
    with pytest.raises(ConfigError, match=r"bomb\.yaml: refused: would expand to \d{9} values"):
        load_config(path)


def test_100000_deep_nesting_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(yaml_deep_nesting())
    with pytest.raises(ConfigError, match=r"deep\.yaml: refused: nested deeper than 64 levels"):
        load_config(path)


def test_config_check_exits_2_on_a_bomb_and_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml_alias_bomb())
    assert main(["config", "check", str(path)]) == 2
    assert "bomb.yaml: refused" in capsys.readouterr().err


def _config_check_within_1_gib(
    config: Path, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``appliance config check CONFIG`` in a process held to 1 GiB of memory and 2 CPU
    minutes, so that a walk without end fails this test instead of taking the machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        resource.setrlimit(resource.RLIMIT_CPU, (120, 120))

    return subprocess.run(
        [sys.executable, "-m", "appliance", "config", "check", str(config)],
        env={**os.environ, **(environ or {})}, preexec_fn=limit, cwd=config.parent,
        capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize("text", ["x: &a [*a]\n", "device:\n  id: k1\nx: &m {y: *m}\n"])
def test_an_alias_inside_its_own_anchor_is_refused_naming_its_line(
    tmp_path: Path, text: str
) -> None:
    """Such an alias expands without end: the size walk pushed it again and again, and ``config
    check`` grew to the machine's whole memory (17 GB in minutes) instead of answering."""
    path = tmp_path / "self.yaml"
    path.write_text(text)
    done = _config_check_within_1_gib(path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = text.count("\n")
    assert f"self.yaml: refused: an alias inside its own anchor at line {line}" in done.stderr


def test_an_environment_override_that_contains_itself_is_refused_as_text(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.yaml").write_text("device:\n  id: k1\n")
    done = _config_check_within_1_gib(
        tmp_path / "config.yaml", {"APPLIANCE__DEVICE__SITE": "&a [*a]"}
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "device.site (from environment variable APPLIANCE__DEVICE__SITE)" in done.stderr
    assert "got '&a [*a]'" in done.stderr


def test_aliases_within_the_limit_still_work() -> None:
    text = "base: &b {port: 1883}\nmqtt: *b\n"
    assert safe_load_limited(text) == {"base": {"port": 1883}, "mqtt": {"port": 1883}}
    small = safe_load_limited(yaml_alias_bomb(levels=3, fan_out=9))  # 9**3 values: fine
    assert small["a2"][0][0][0] == "lol"
    assert MAX_EXPANDED_NODES > 9**3


def test_a_deep_environment_override_is_a_config_error_not_a_crash() -> None:
    cut = r"device\.id .*: got 'device: \[\[\[.*\.\.\. \(200012 chars\)"  # the value cut
    with pytest.raises(ConfigError, match=cut):
        config_from_mapping({}, environ={"APPLIANCE__DEVICE__ID": yaml_deep_nesting(100_000)})


def test_a_duplicate_key_is_refused_naming_the_key_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"  # a second `mqtt:` section would silently replace the first
    path.write_text("mqtt:\n  host: broker.example.org\ndevice:\n  id: k1\nmqtt:\n  port: 1884\n")
    refused = r"dup\.yaml: broken YAML at line 5: duplicate key 'mqtt'"
    with pytest.raises(ConfigError, match=refused):
        load_config(path)


def test_merge_keys_may_still_be_overridden() -> None:
    text = "base: &b {host: a, port: 1}\nmqtt:\n  <<: *b\n  port: 2\n"
    assert safe_load_limited(text)["mqtt"] == {"host": "a", "port": 2}


# "１０" and "٣" (full-width, Arabic-Indic digits) were taken as 10 and 3, which
# --um-per-px refuses as not ASCII decimal notation (appliance/numbertext.py)
@pytest.mark.parametrize("raw", ["true", "nan", ".nan", ".inf", "-.inf", "ten", "１０", "٣"])
def test_a_scale_that_is_not_a_finite_number_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({}, "config.yaml", environ={"APPLIANCE__SKIN__UM_PER_PX": raw})
    message = str(refused.value)
    assert "skin.um_per_px (from environment variable APPLIANCE__SKIN__UM_PER_PX)" in message
    assert "must be a finite number" in message
    assert "less than or equal" not in message


def test_a_scale_in_exponent_form_is_read_and_a_bad_one_names_the_range() -> None:
    """YAML 1.1 reads ``1e1`` (no dot) as a string: it is still the number 10; the refusal of
    a scale that is no number says which ones would do."""
    config = config_from_mapping({}, "config.yaml", environ={"APPLIANCE__SKIN__UM_PER_PX": "1e1"})
    assert config.skin.um_per_px == 10.0
    with pytest.raises(ConfigError, match=r"over 0\.5, at most 30\), got 'ten'"):
        config_from_mapping({}, "config.yaml", environ={"APPLIANCE__SKIN__UM_PER_PX": "ten"})
    with pytest.raises(ConfigError, match="must be a finite number"):
        config_from_mapping({}, "config.yaml", environ={"APPLIANCE__SKIN__UM_PER_PX": "inf"})


def test_a_scale_written_as_a_yaml_boolean_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("skin:\n  um_per_px: yes\n")
    with pytest.raises(ConfigError, match=r"skin\.um_per_px: must be a finite number.*True"):
        load_config(path)


def test_an_unreadable_config_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("skin:\n  um_per_px: 10.0\n")
    read_text = Path.read_text

    def refuse(self: Path, *args: object, **kwargs: object) -> str:  # a non-root user's mode 000
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError, match=r"config\.yaml: permission denied") as refused:
        load_config(path)
    assert "Errno" not in str(refused.value)


def test_the_pathology_site_is_reserved_for_the_pathology_server_s_topics() -> None:
    """A kiosk at site "pathology", device "jobs", would publish where the pathology server's
    job topics are ({prefix}/pathology/jobs/...); its config is refused naming the field."""
    with pytest.raises(ConfigError, match=r"device\.site 'pathology' is reserved"):
        config_from_mapping({"device": {"site": "pathology", "id": "jobs"}}, environ={})
    assert config_from_mapping({"device": {"site": "pathology-lab"}}, environ={}).device.site \
        == "pathology-lab"


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({"APPLIANCE__": "1"}, "environment variable APPLIANCE__ names no config key"),
        ({"APPLIANCE______": "1"}, "environment variable APPLIANCE______ names no config key"),
        ({"APPLIANCE__MQTT": "5", "APPLIANCE__MQTT__PORT": "1"},
         "environment variables APPLIANCE__MQTT and APPLIANCE__MQTT__PORT both set mqtt;"),
        ({"APPLIANCE__MQTT__PORT": "1", "APPLIANCE__MQTT__PORT__X": "1"},
         "environment variables APPLIANCE__MQTT__PORT and APPLIANCE__MQTT__PORT__X both set "
         "mqtt.port;"),
        ({"APPLIANCE__MQTT__PORT": "1884", "appliance__mqtt__port": "1885"},
         "environment variables APPLIANCE__MQTT__PORT and appliance__mqtt__port both set "
         "mqtt.port;"),
        # one underscore after APPLIANCE: read by nothing, the file's port used without a word
        ({"APPLIANCE_MQTT__PORT": "1884"},
         "environment variable APPLIANCE_MQTT__PORT is not read: an override is "
         "APPLIANCE__SECTION__KEY, two underscores after APPLIANCE (APPLIANCE__MQTT__PORT); "
         "rename or unset it"),
        ({"appliance_skin__um_per_px": "9.5"},
         "environment variable appliance_skin__um_per_px is not read: an override is "
         "APPLIANCE__SECTION__KEY, two underscores after APPLIANCE (APPLIANCE__skin__um_per_px)"),
    ],
)
def test_an_override_naming_no_key_or_clashing_with_another_is_a_config_error(
    environ: dict[str, str], refused: str
) -> None:
    """These crashed every command with an IndexError or TypeError traceback, or (the same key
    twice) let the variable that sorts last win without a word."""
    with pytest.raises(ConfigError) as error:
        config_from_mapping({}, "config.yaml", environ=environ)
    assert str(error.value).startswith("config.yaml: invalid config:\n  ")
    assert refused in str(error.value)


@pytest.mark.parametrize(("mapping", "refused"), [
    ({"device": {"id": "kiosk 1"}}, "device.id: got 'kiosk 1'; expected ASCII letters, digits "
     "and _ . - only (no spaces), starting with a letter or digit"),
    ({"mqtt": {"topic_prefix": "shop/#"}}, "mqtt.topic_prefix: got 'shop/#'; expected topic "
     "levels without # or + and without spaces, not starting with /"),
    ({"store": {"url": "mysql://db/x"}}, "store.url: got 'mysql://db/x'; expected sqlite:///PATH "
     "or postgresql://USER@HOST:PORT/DATABASE"),
    ({"updates": {"url": "ftp://models"}}, "updates.url: got 'ftp://models'; expected an "
     "http:// or https:// URL"),
])
def test_a_value_refused_by_a_pattern_is_told_what_is_taken_in_words(
    mapping: dict[str, Any], refused: str
) -> None:
    """A shop's name with a space said "device.id: got 'kiosk 1'; expected String should match
    pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'": a regular expression, for whoever set up a kiosk."""
    with pytest.raises(ConfigError) as error:
        config_from_mapping(mapping, "config.yaml", environ={})
    assert str(error.value) == f"config.yaml: invalid config:\n  {refused}"


def test_every_pattern_a_key_must_match_is_said_in_words() -> None:
    def patterns(node: object) -> set[str]:
        if isinstance(node, dict):
            own = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
            return own.union(*(patterns(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(patterns(value) for value in node))
        return set()

    found = patterns(Config.model_json_schema())
    assert len(found) >= 4
    assert found <= set(PATTERN_WORDS), found - set(PATTERN_WORDS)


def test_variables_of_one_underscore_without_a_key_path_are_no_overrides() -> None:
    """APPLIANCE_MQTT_PASSWORD (the broker password) and APPLIANCE_TEST_WORKERS (./dev test)
    are read by what they are for, and are no near miss of an override."""
    environ = {"APPLIANCE_MQTT_PASSWORD": "secret", "APPLIANCE_TEST_WORKERS": "0"}
    assert config_from_mapping({}, "config.yaml", environ=environ).mqtt.port == 1883


def test_config_check_names_an_override_that_names_no_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.yaml: the built-in defaults and the variables
    monkeypatch.setenv("APPLIANCE__", "1")
    assert main(["config", "check"]) == 2
    assert "APPLIANCE__ names no config key" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "where"), [
    ('state_dir: "state\\0/x"\n', "state_dir"),
    ('pathology:\n  slide_roots: ["a", "b\\0"]\n', "pathology.slide_roots[1]"),
    ('"mq\\0tt": {}\n', "mq\\u0000tt"),
])
def test_a_nul_character_in_a_config_is_refused_naming_its_key(
    tmp_path: Path, text: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NUL in a path ended every command that loads the config (config check included) in a
    ValueError traceback ('embedded null byte') where the path was resolved."""
    path = tmp_path / "nul.yaml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr().err == (f"config error: {path}: {where} holds a NUL character "
                                       "(\\0): no name, path or text in a config may; remove "
                                       "it\n")


@pytest.mark.parametrize(("key_path", "text"), [
    ("mqtt.port", "mqtt:\n  port: true\n"),  # was port 1
    ("camera.limit", "camera:\n  limit: yes\n"),  # was: stop after one measurement
    ("edge.burst_frames", "edge:\n  burst_frames: on\n"),
    ("edge.watchdog_stall_s", "edge:\n  watchdog_stall_s: false\n"),
])
def test_a_number_written_as_a_yaml_boolean_is_refused_naming_its_key(
    tmp_path: Path, key_path: str, text: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{key_path}: got (true|false) \(a yes/no value\); "
                       "expected a number"):
        load_config(path)


def test_a_boolean_number_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.port \(from environment variable "
                       r"APPLIANCE__MQTT__PORT\): got true \(a yes/no value\)"):
        config_from_mapping({}, environ={"APPLIANCE__MQTT__PORT": "true"})


def test_yes_no_keys_still_take_yaml_booleans() -> None:
    config = config_from_mapping({"mqtt": {"tls": {"enabled": "false"}}}, environ={})
    assert config.mqtt.tls.enabled is False
    config = config_from_mapping({"mqtt": {"tls": {"enabled": True, "ca_file": "ca.pem"}}},
                                 environ={})
    assert config.mqtt.tls.enabled is True


@pytest.mark.parametrize("prefix", ["$SYS", "$share/x", "$appliance"])
def test_a_topic_prefix_in_the_broker_s_dollar_space_is_refused(prefix: str) -> None:
    # mosquitto dropped every result a kiosk published under $SYS/...; config check said ok
    with pytest.raises(ConfigError, match=r"mqtt\.topic_prefix: got '\$.*': topics starting "
                       r"with \$ are reserved for the broker"):
        config_from_mapping({"mqtt": {"topic_prefix": prefix}}, environ={})


@pytest.mark.parametrize(("key_path", "variable"), [
    ("mqtt.topic_prefix", "APPLIANCE__MQTT__TOPIC_PREFIX"),
    ("backoffice.share_group", "APPLIANCE__BACKOFFICE__SHARE_GROUP"),
])
def test_a_topic_part_longer_than_mqtt_takes_is_refused_before_the_link_fails_on_it(
    key_path: str, variable: str
) -> None:
    # a 70000-character prefix passed; the edge's link thread then died on its first publish
    # (struct.error: a topic is at most 65535 bytes) and the daemon exited 1, again and again
    with pytest.raises(ConfigError, match=rf"{re.escape(key_path)} .*{variable}.*\(70000 chars\)"
                       r"; expected at most \d+ characters"):
        config_from_mapping({}, environ={variable: "p" * 69998})


def test_a_long_but_usable_topic_prefix_still_loads() -> None:
    config = config_from_mapping({"mqtt": {"topic_prefix": "fleet/" + "x" * 100}}, environ={})
    assert config.mqtt.topic_prefix.startswith("fleet/x")


def test_a_broker_user_name_longer_than_mqtt_takes_is_refused_naming_the_variable() -> None:
    # it passed config check; the edge's link thread then died building its CONNECT
    # (struct.error), and the daemon exited 1 to be restarted again and again
    with pytest.raises(ConfigError, match=r"mqtt\.username \(from environment variable "
                       r"APPLIANCE__MQTT__USERNAME\): .*expected at most 256"):
        config_from_mapping({}, environ={"APPLIANCE__MQTT__USERNAME": "u" * 70000})
    named = config_from_mapping({}, environ={"APPLIANCE__MQTT__USERNAME": "shop-1-kiosk-1"})
    assert named.mqtt.username == "shop-1-kiosk-1"


@pytest.mark.parametrize("file_name", ["a\x1b[31m\nb.yaml", "x\x1b]0;pwned\x07.yaml"])
def test_config_check_escapes_the_controls_of_a_file_name(
        file_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config file's name reached the terminal raw in each refusal ("FILE: invalid config"):
    an ESC recoloured it, a newline forged a line."""
    path = tmp_path / file_name
    path.write_text("device:\n  id: '-'\n")
    assert main(["config", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert "\x1b" not in error
    assert "\x07" not in error
    assert error.count("\n") == 2  # the file's line and the key's, no forged one
    assert str(path).replace("\x1b", "\\x1b").replace("\n", "\\n").replace(
        "\x07", "\\u0007") + ": invalid config" in error


def test_config_check_escapes_and_cuts_an_unknown_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key is named with its controls escaped and cut: a YAML key may hold an ESC
    and be as long as the file."""
    path = tmp_path / "keys.yaml"
    path.write_text("device:\n  \"\\e[2J\": 1\n  ? " + "k" * 500_000 + "\n  : 2\n")
    assert main(["config", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert "\x1b" not in error
    assert "device.\\x1b[2J: unknown key" in error
    assert "device.kkk" in error
    assert len(error) < 1000, error[:300]


@pytest.mark.parametrize(("key_path", "variable"), [
    ("edge.session_expiry_s", "APPLIANCE__EDGE__SESSION_EXPIRY_S"),
    ("edge.message_expiry_s", "APPLIANCE__EDGE__MESSAGE_EXPIRY_S"),
    ("backoffice.session_expiry_s", "APPLIANCE__BACKOFFICE__SESSION_EXPIRY_S"),
])
def test_an_expiry_longer_than_mqtt_carries_is_refused_naming_the_variable(
    key_path: str, variable: str
) -> None:
    # 4294967296 passed config check; the edge then died building its CONNECT (struct.error:
    # MQTT 5 carries an expiry interval as a Four Byte Integer) and exited 1, again and again
    with pytest.raises(ConfigError, match=rf"{re.escape(key_path)} \(from environment variable "
                       rf"{variable}\): got 4294967296; expected less than or equal to 4294967295"):
        config_from_mapping({}, environ={variable: "4294967296"})


def test_the_longest_expiry_a_config_takes_fits_the_mqtt_packets() -> None:
    longest = "4294967295"  # 0xFFFFFFFF: the session never expires (MQTT 5 spec 3.1.2.11.2)
    config = config_from_mapping({}, environ={"APPLIANCE__EDGE__SESSION_EXPIRY_S": longest,
                                              "APPLIANCE__EDGE__MESSAGE_EXPIRY_S": longest,
                                              "APPLIANCE__BACKOFFICE__SESSION_EXPIRY_S": longest})
    for session_expiry_s in (config.edge.session_expiry_s, config.backoffice.session_expiry_s):
        settings = settings_from_config(config.mqtt, "kiosk", session_expiry_s=session_expiry_s)
        packed = connect_properties(settings).pack()
        read, _ = Properties(PacketTypes.CONNECT).unpack(packed)  # type: ignore[no-untyped-call]
        assert read.SessionExpiryInterval == 4294967295
    packed = publish_properties(config.edge.message_expiry_s).pack()
    read, _ = Properties(PacketTypes.PUBLISH).unpack(packed)  # type: ignore[no-untyped-call]
    assert read.MessageExpiryInterval == 4294967295


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("APPLIANCE__UPDATES__DOWNLOAD_TIMEOUT_S", "10000000000",
     r"updates\.download_timeout_s .*got 10000000000; expected less than or equal to 3600"),
    ("APPLIANCE__UPDATES__DOWNLOAD_DEADLINE_S", ".inf",
     r"updates\.download_deadline_s .*got inf; expected less than or equal to 86400"),
    ("APPLIANCE__UPDATES__DOWNLOAD_DEADLINE_S", "1e10",
     r"updates\.download_deadline_s .*got '1e10'; expected less than or equal to 86400"),
])
def test_a_download_wait_longer_than_a_socket_or_timer_takes_is_refused(
    variable: str, value: str, expected: str
) -> None:
    # they passed config check; then each download failed ("Failed to download": the socket
    # refused the timeout) or the deadline's timer thread died on it, at every check
    with pytest.raises(ConfigError, match=expected):
        config_from_mapping({}, environ={variable: value})


@pytest.mark.parametrize(("written", "key_path"), [
    ("console:\n  session_hours: 1:30\n", "console.session_hours"),  # 1.5 h meant, 90 h taken
    ("mqtt:\n  port: 31:23\n", "mqtt.port"),
    ("edge:\n  camera_stall_s: 1:30.5\n", "edge.camera_stall_s"),
])
def test_a_base_60_number_is_refused_as_text_naming_its_key(
    written: str, key_path: str, tmp_path: Path
) -> None:
    # YAML 1.1 reads 1:30 as 90 (base 60); the session lasted 90 hours and config check said ok
    path = tmp_path / "config.yaml"
    path.write_text(written)
    shown = written.rsplit(": ", maxsplit=1)[-1].strip()
    with pytest.raises(ConfigError, match=rf"{re.escape(key_path)}: got '{re.escape(shown)}'; "
                       "expected a valid (number|integer)"):
        load_config(path, environ={})


def test_a_base_60_number_from_the_environment_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"edge\.camera_stall_s \(from environment variable "
                       r"APPLIANCE__EDGE__CAMERA_STALL_S\): got '1:30'; expected a valid number"):
        config_from_mapping({}, environ={"APPLIANCE__EDGE__CAMERA_STALL_S": "1:30"})


def test_other_yaml_numbers_and_texts_with_colons_read_as_before() -> None:
    read = safe_load_limited("a: 90\nb: 1.5\nc: 0x10\nd: '1:30'\ne: ::1\nf: 2001:db8::1\n")
    assert read == {"a": 90, "b": 1.5, "c": 16, "d": "1:30", "e": "::1", "f": "2001:db8::1"}


def test_a_site_written_as_an_unquoted_number_is_refused_saying_to_quote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a shop numbered 0042 and a site NO (Norway): "device.site: got 34; expected a valid
    # string" and "got False", with nothing to say that YAML had read the text so
    path = tmp_path / "config.yaml"
    path.write_text("device:\n  id: kiosk-1\n  site: 0042\n")
    assert main(["config", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert "device.site: got 34; expected a valid string (YAML reads an unquoted 0042 as the " \
           "number 34, no as false, 2026-01-01 as a date: put the value in quotes, '0042')" in error
    path.write_text("device:\n  id: kiosk-1\n  site: '0042'\n")
    assert load_config(path, environ={}).device.site == "0042"


@pytest.mark.parametrize(("text", "read_as"), [("0042", "34"), ("NO", "False"),
                                               ("2026-01-01", r"datetime\.date\(2026, 1, 1\)")])
def test_a_site_variable_yaml_reads_as_no_text_is_refused_showing_the_quoted_variable(
    text: str, read_as: str
) -> None:
    with pytest.raises(ConfigError, match=r"device\.site \(from environment variable "
                       rf"APPLIANCE__DEVICE__SITE\): got {read_as}; expected a valid string "
                       rf"\(YAML reads the variable's text '{text}' as {read_as}: put it in "
                       rf"quotes inside the variable, APPLIANCE__DEVICE__SITE=\"'{text}'\"\)"):
        config_from_mapping({}, environ={"APPLIANCE__DEVICE__SITE": text})
    quoted = config_from_mapping({}, environ={"APPLIANCE__DEVICE__SITE": f"'{text}'"})
    assert quoted.device.site == text


@pytest.mark.parametrize(("variable", "said"), [
    ("APPLIANCE__MQTT__PORT", "got None; expected a valid integer"),
    ("APPLIANCE__SKIN__UM_PER_PX", "must be a finite number of micrometres per pixel"),
])
def test_an_empty_variable_is_said_to_be_empty(variable: str, said: str) -> None:
    # APPLIANCE__MQTT__PORT=$PORT with PORT unset: "got None", and nothing said where None
    # came from; an empty variable is YAML's null, which turns off an optional key
    key_path = variable.removeprefix("APPLIANCE__").replace("__", ".").lower()
    with pytest.raises(ConfigError, match=rf"{re.escape(key_path)} \(from environment variable "
                       rf"{variable}, set but empty: read as null\): {said}"):
        config_from_mapping({}, environ={variable: ""})
    assert config_from_mapping({}, environ={"APPLIANCE__MODEL__PATH": ""}).model.path is None


@pytest.mark.parametrize("host", ["mqtt://broker.fleet.internal", "broker.fleet.internal:8883",
                                  "[::1]", "broker fleet", " 127.0.0.1", "admin@broker"])
def test_a_broker_host_that_is_no_host_name_or_address_is_refused_naming_the_key(
    host: str,
) -> None:
    # "mqtt://broker" and "broker:8883" passed config check; the kiosk then retried an
    # unreachable broker for ever ("Name or service not known")
    with pytest.raises(ConfigError, match=rf"mqtt\.host \(from environment variable "
                       rf"APPLIANCE__MQTT__HOST\): got {re.escape(repr(host))}: give the "
                       r"broker's host \(its port goes in mqtt\.port\) alone: a host name or "
                       r"an IP address, no scheme, port, path or blank"):
        config_from_mapping({}, environ={"APPLIANCE__MQTT__HOST": f"'{host}'"})


@pytest.mark.parametrize("host", ["broker.fleet.internal", "mqtt_broker", "10.0.0.5", "::1",
                                  "fe80::1%eth0", "Broker.Fleet.Internal.", "bücher.de"])
def test_a_broker_host_name_or_address_still_loads(host: str) -> None:
    assert config_from_mapping({"mqtt": {"host": host}}, environ={}).mqtt.host == host


@pytest.mark.parametrize("bind", ["127.0.0.1:8080", "http://127.0.0.1", "[::1]"])
def test_a_console_bind_with_a_port_or_a_scheme_is_refused_as_such(bind: str) -> None:
    # "console.bind is 127.0.0.1:8080, not loopback, and console.trusted_proxies names no TLS
    # proxy: ...": advice on TLS proxies for a port written in the wrong key
    with pytest.raises(ConfigError, match=rf"console\.bind: got {re.escape(repr(bind))}: give "
                       r"the address to listen on \(its port goes in console\.port\) alone"):
        config_from_mapping({"console": {"bind": bind}}, environ={})
    assert config_from_mapping({"console": {"bind": "::1"}}, environ={}).console.bind == "::1"


@pytest.mark.parametrize(("written", "key_path"), [
    ("model:\n  path: ''\n", "model.path"),
    ("screen:\n  reference_file: ''\n", "screen.reference_file"),
    ("mqtt:\n  tls: {enabled: true, ca_file: ''}\n", "mqtt.tls.ca_file"),
    ("updates:\n  trusted_root: ''\n", "updates.trusted_root"),
    ("pathology:\n  int8_model: ''\n", "pathology.int8_model"),
    ("pathology:\n  slide_roots: ['']\n", "pathology.slide_roots.0"),
])
def test_an_empty_file_name_is_refused_naming_its_key(
    written: str, key_path: str, tmp_path: Path
) -> None:
    # '' resolved to the config file's folder: "model.path: /etc/appliance is a folder, not a
    # file", and a slide root '' let jobs read any slide beside the config
    path = tmp_path / "config.yaml"
    path.write_text(written)
    with pytest.raises(ConfigError, match=rf"{re.escape(key_path)}: got ''; expected at least "
                       "1 character"):
        load_config(path, environ={})
