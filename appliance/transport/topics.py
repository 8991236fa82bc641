"""MQTT topic names (DESIGN.md "Payload contract")."""

from __future__ import annotations

MODEL_STATE_LEAF = "model/state"  # a kiosk's retained report of what it did with a model update


def device_topic(prefix: str, site: str, device_id: str, leaf: str) -> str:
    """``{prefix}/{site}/{device}/{leaf}``, e.g. leaf ``result`` or ``model/state``."""
    return f"{prefix}/{site}/{device_id}/{leaf}"


def fleet_filter(prefix: str, leaf: str) -> str:
    """Subscription filter for one leaf on every device: ``{prefix}/+/+/{leaf}``."""
    return f"{prefix}/+/+/{leaf}"


def shared_filter(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription (spec 4.8.2): ``$share/{group}/{filter}``."""
    return f"$share/{group}/{topic_filter}"


PATHOLOGY_SITE = "pathology"  # {prefix}/pathology/... are the pathology server's; no kiosk site


def parse_device_topic(prefix: str, topic: str) -> tuple[str, str, str] | None:
    """``(site, device_id, leaf)`` of a device topic under ``prefix``, or None (also for the
    pathology server's topics: the fleet's wildcards match ``{prefix}/pathology/jobs/...`` and
    ``{prefix}/pathology/servers/...`` on a broker whose ACLs do not keep them apart)."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/", 2)
    if len(parts) != 3 or not all(parts) or parts[0] == PATHOLOGY_SITE:
        return None
    return parts[0], parts[1], parts[2]
