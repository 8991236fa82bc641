"""The ``mqtt:`` section: the broker connection, its TLS settings and where the password lives.

The MQTT password never lives in the YAML: it comes from ``$APPLIANCE_MQTT_PASSWORD`` or from
the file ``mqtt-password`` in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from appliance.boundedread import TooLargeError, read_bounded
from appliance.config.section import Section, a_host, a_real_host, filled_in

PASSWORD_ENV = "APPLIANCE_MQTT_PASSWORD"
DEFAULT_TOPIC_PREFIX = "appliance"
TOPIC_PREFIX_PATTERN = r"^[^#+/\s][^#+\s]*$"  # no wildcard or blank; not starting with /
PASSWORD_CREDENTIAL = "mqtt-password"
# A topic is the prefix and at most ~150 more characters (site, device id, leaf); MQTT caps it
# at 65535 bytes, past which the link thread failed on its first publish
MAX_TOPIC_PREFIX_CHARS = 128
MAX_USERNAME_CHARS = 256  # MQTT's limit is 65535 bytes, past which the link died at CONNECT
# MQTT 5 carries the session and message expiry intervals as Four Byte Integers (spec 1.5.3,
# 3.1.2.11.2, 3.3.2.3.3): a larger one passed config check, then the link failed building its
# CONNECT or its first PUBLISH (struct.error) and the daemon exited, again and again
MQTT_MAX_INTERVAL_S = 4_294_967_295
PLAIN_PORT = 1883  # MQTT's registered ports (IANA): plain TCP, and TLS (deploy/mosquitto's only)
TLS_PORT = 8883


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: str | None = Field(None, min_length=1, description="CA bundle that verifies the "
                                "broker; relative to the config file (without one: the working "
                                "folder).")
    cert_file: str | None = Field(None, min_length=1, description="Client certificate (PEM), "
                                  "optional; relative to the config file.")
    key_file: str | None = Field(None, min_length=1, description="Client private key (PEM), "
                                 "with cert_file; relative to the config file.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("mqtt.tls.cert_file and mqtt.tls.key_file go together")
        return self


class MqttConfig(Section):
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    topic_prefix: str = Field(
        DEFAULT_TOPIC_PREFIX,
        min_length=1,
        max_length=MAX_TOPIC_PREFIX_CHARS,
        pattern=TOPIC_PREFIX_PATTERN,
        description="First topic level(s) of every topic; no wildcards, not starting with $.",
    )
    username: str | None = Field(None, max_length=MAX_USERNAME_CHARS,
                                 description="Broker user name (password from env).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")

    @field_validator("username")
    @classmethod
    def _not_the_template_s(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return filled_in(value, "the login this host was provisioned with (a kiosk's is its "
                         "device id)")

    @field_validator("host")
    @classmethod
    def _not_the_template_s_host(cls, value: str) -> str:
        what = ("the fleet broker's host name or address (the name "
                "deploy/mosquitto/provision.py --host put in its certificate)")
        return a_real_host(a_host(value, "the broker's host (its port goes in mqtt.port)"), what)

    @field_validator("topic_prefix")
    @classmethod
    def _not_the_broker_s(cls, value: str) -> str:
        if value.startswith("$"):  # MQTT 5 spec 4.7.2: the server's own ($SYS, $share)
            raise ValueError(f"got {value[:40]!r}: topics starting with $ are reserved for "
                             "the broker (mosquitto drops a client's publish under $SYS, and "
                             "no filter starting with # or + matches them); choose a prefix "
                             "without $")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_yaml(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "password" in data:
            raise ValueError(
                f"the MQTT password never goes in the YAML: set ${PASSWORD_ENV} or the "
                f"credential file {PASSWORD_CREDENTIAL!r} in $CREDENTIALS_DIRECTORY"
            )
        return data

    @model_validator(mode="after")
    def _login_not_in_clear(self) -> MqttConfig:
        """A login's password crosses the network only inside TLS: a broker on another host
        with TLS off (forgotten, or turned off by a variable) would be sent it in clear at
        every connect, for anyone on the way to read (docs/threat-model.md)."""
        if self.username is not None and not self.tls.enabled and not this_host(self.host):
            settings = ["mqtt.tls.enabled: true",
                        "mqtt.tls.ca_file (the fleet CA, deploy/mosquitto)"]
            if self.port == PLAIN_PORT:  # left at the default, the TLS listener is not there
                settings.append(f"mqtt.port: {TLS_PORT} (the shipped broker's TLS listener; "
                                f"{PLAIN_PORT} is MQTT's plain port)")
            raise ValueError(
                f"mqtt.tls.enabled is false for the broker at {self.host[:100]}, another host, "
                f"while mqtt.username {self.username[:64]!r} logs in: its password would cross "
                f"the network in clear; set {', '.join(settings[:-1])} and {settings[-1]}, or "
                "use a broker on this host")
        return self

    def password(self) -> str | None:
        """The broker password from the environment or systemd credentials, if any;
        PasswordError (a ValueError: the daemons exit 2) naming where one came from that MQTT
        cannot send."""
        if PASSWORD_ENV in os.environ:
            return _sendable(os.environ[PASSWORD_ENV], f"${PASSWORD_ENV}")
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir and (Path(cred_dir) / PASSWORD_CREDENTIAL).is_file():
            path = Path(cred_dir) / PASSWORD_CREDENTIAL
            try:  # the whole file is read: bounded, as the password in it is
                text = read_bounded(path, MAX_CREDENTIAL_FILE_BYTES).decode().strip()
            except TooLargeError as exc:
                raise PasswordError(f"the MQTT password credential file {exc}: MQTT sends a "
                                    f"password of at most {MAX_PASSWORD_BYTES} bytes") from exc
            return _sendable(text, f"the credential file {path}")
        return None


def this_host(host: str) -> bool:
    """Whether ``host`` names this host without a network between: a loopback address or
    ``localhost`` (a name is not looked up: any other may lead anywhere)."""
    name = host.strip().lower().removesuffix(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# MQTT 5 spec 1.5.6: binary data (the password) is at most 65535 bytes; past that the link
# thread died building its CONNECT (struct.error) and the daemon was restarted for ever
MAX_PASSWORD_BYTES = 65535
MAX_CREDENTIAL_FILE_BYTES = MAX_PASSWORD_BYTES + 4096  # room for the whitespace stripped


class PasswordError(ValueError):
    """The broker password cannot be sent: the message names where it came from, not it."""


def _sendable(password: str, source: str) -> str:
    """``password`` when MQTT can send it, else PasswordError naming ``source``."""
    size = len(password.encode("utf-8", "surrogateescape"))
    if size > MAX_PASSWORD_BYTES:
        raise PasswordError(f"the MQTT password from {source} has {size} bytes; MQTT sends "
                            f"at most {MAX_PASSWORD_BYTES} (a password file or value pasted "
                            "twice?): set the broker login's password there")
    return password
