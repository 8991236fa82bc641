"""Model updates over TUF: the back office's repository and rollouts, the kiosk's verified
install, hot swap and rollback (docs/model-updates.md)."""
