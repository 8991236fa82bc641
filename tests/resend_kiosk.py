"""A kiosk's delivery path for resend and forget tests: its outbox (keeping confirmed results),
its MQTT link subscribed to its own ``cmd/#``, and the daemon's handling of ``cmd/resend`` and
``cmd/forget`` (appliance/edge/daemon.py hands the same messages to the same ``handle``s).

Run as a process (``python -m tests.resend_kiosk STATE HOST PORT PREFIX SITE DEVICE``) it sends
what waits in its outbox and answers resend and forget requests until killed or sent SIGTERM.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
from pathlib import Path

from appliance.synthetic.fleet import online_status
from appliance.transport.acks import ack_topic
from appliance.transport.callbacks import shown_topic
from appliance.transport.client import LinkSettings
from appliance.transport.forget import FORGET_LEAF, ForgetRequests
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.resend import RESEND_LEAF, ResendRequests
from appliance.transport.topics import device_topic

KEEP_S = 48 * 3600.0


class ResendKiosk:
    """An outbox and its link on a broker, with the daemon's resend handling on a thread."""

    def __init__(self, state: Path, host: str, port: int, *, prefix: str, site: str,
                 device: str, settings: LinkSettings | None = None,
                 keep_h: float | None = None) -> None:
        """``keep_h``: its edge.keep_confirmed_h, said in its status (None: the default)."""
        self.outbox = Outbox(state / "outbox.sqlite3",
                             keep_confirmed_s=KEEP_S if keep_h is None else keep_h * 3600.0)
        self.result_topic = device_topic(prefix, site, device, "result")
        self.link = MqttLink(
            settings or LinkSettings(host, port, f"edge-{site}-{device}", ack_resend_initial_s=0.5,
                                     ack_resend_cap_s=2.0, reconnect_initial_s=0.2,
                                     reconnect_cap_s=1.0),
            self.outbox, status_topic=device_topic(prefix, site, device, "status"),
            status_payload=lambda state: online_status(site, device).model_copy(
                update={"state": state, "keep_confirmed_h": keep_h}).to_json(),
            ack_topic=ack_topic(prefix, site, device),
            subscriptions=(device_topic(prefix, site, device, "cmd/#"),))
        self.requests = ResendRequests(self.link.ignored, self.link.resend_confirmed_since)
        self.forgets = ForgetRequests(self.link.ignored, self.outbox.forget_confirmed)
        self._stop = threading.Event()
        self._commands = threading.Thread(target=self._handle_commands, daemon=True)

    def start(self) -> None:
        self.link.start()
        self._commands.start()

    def _handle_commands(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.link.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if message.topic.endswith(f"/{RESEND_LEAF}"):
                self.requests.handle(message.payload, shown_topic(message.topic))
            elif message.topic.endswith(f"/{FORGET_LEAF}"):
                self.forgets.handle(message.payload, shown_topic(message.topic))

    def add(self, messages: list[tuple[str, bytes]]) -> None:
        self.outbox.add_many([(mid, self.result_topic, payload) for mid, payload in messages])
        self.link.wake()

    def stop(self) -> None:
        self._stop.set()
        self.link.stop_event.set()
        self.link.wake()
        self.link.join(5)
        self._commands.join(5)
        self.outbox.close()


def main(argv: list[str]) -> int:
    state, host, port, prefix, site, device = argv
    kiosk = ResendKiosk(Path(state), host, int(port), prefix=prefix, site=site, device=device)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    kiosk.start()
    print("kiosk running", flush=True)
    done.wait()
    kiosk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
