"""The model-state leaf is named once, in transport/topics.py: the kiosk that publishes on it,
the back office and the rollout watcher that subscribe to it read the one constant, so a rename
cannot leave one side listening on a topic the other no longer uses."""

from __future__ import annotations

import re
from pathlib import Path

import appliance
from appliance.transport import topics

PACKAGE = Path(appliance.__file__).parent
SPELLED_OUT = re.compile(r"""model/state["']""")  # the leaf in a string literal, not in prose


def test_model_state_leaf_is_spelled_out_only_in_topics() -> None:
    spelled = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                     if SPELLED_OUT.search(path.read_text(encoding="utf-8")))
    assert spelled == ["transport/topics.py"]


def test_the_fleet_filter_of_the_leaf_is_the_one_kiosks_publish_under() -> None:
    kiosk = topics.device_topic("fleet", "site-1", "kiosk-1", topics.MODEL_STATE_LEAF)
    assert kiosk == "fleet/site-1/kiosk-1/model/state"
    assert topics.fleet_filter("fleet", topics.MODEL_STATE_LEAF) == "fleet/+/+/model/state"
