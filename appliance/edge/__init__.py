"""The edge daemon: wiring, main loop, systemd notify/watchdog/journald, signals."""
