"""The job commands' client of the broker (``appliance pathology job submit|list|cancel``,
appliance/pathology/jobs_cli.py): short-lived, connected under the caller's login, subscribed
once the broker accepted it, collecting what arrives for the command to read.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Sequence

from appliance.config import Config
from appliance.transport.client import (
    BrokerRefusedError,
    settings_from_config,
    with_login_password,
)
from appliance.transport.subscriber import Subscriber

CONNECT_TIMEOUT_S = 10.0


class JobLink:
    """A short-lived client for the job commands: connected, subscribed to ``filters`` once the
    broker accepted it (transport/subscriber.py), collecting the messages that arrive."""

    def __init__(self, config: Config, filters: Sequence[str],
                 password: str | None = None) -> None:
        """``password``: the login's, in place of the config's (``--password-file``)."""
        self.config = config
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        # a login connects under its own name: the fleet's broker binds each login to one client
        # id (docs/broker-identity.md), so one command at a time per login
        client_id = config.mqtt.username or f"pathology-cli-{uuid.uuid4().hex[:12]}"
        settings = with_login_password(settings_from_config(config.mqtt, client_id), password)
        # a job's request and state are at most max_job_bytes (its server fits a state to it)
        self._link = Subscriber(settings, [(topic, 1) for topic in filters],
                                lambda m: self.messages.put((m.topic, bytes(m.payload))),
                                max_payload_bytes=config.pathology.max_job_bytes)

    def __enter__(self) -> JobLink:
        """Connect and subscribe; BrokerRefusedError when the broker refuses the login or a
        subscription, ConnectionError naming the broker when it is unreachable or silent."""
        mqtt_config = self.config.mqtt
        where = f"broker {mqtt_config.host}:{mqtt_config.port}"
        try:
            self._link.start(CONNECT_TIMEOUT_S)
        except BrokerRefusedError:
            raise
        except TimeoutError as exc:
            raise ConnectionError(f"{exc}; check mqtt.host and port") from exc
        except OSError as exc:
            raise ConnectionError(f"{where} unreachable ({exc}); check mqtt.host and port, and "
                                  "that mosquitto runs") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._link.close()

    @property
    def max_packet_bytes(self) -> int | None:
        """The largest packet the broker said it takes (None: it set no limit)."""
        return self._link.max_packet_bytes

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        self._link.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
