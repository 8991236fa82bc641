"""What the job commands print of the broker's retained job messages: a job's state in lines,
and ``job list``'s servers, jobs and waiting requests. Everything shown came over the broker,
from whoever may publish there, so each line has its control characters escaped and a message
that is no state of its topic is named, not shown (appliance/pathology/jobs_cli.py runs the
commands)."""

from __future__ import annotations

import sys
from typing import Any

from appliance.logsafe import escape_controls
from appliance.pathology.jobs import FINAL_STATES, job_id_of_topic, read_presence, read_state

PICTURE_NAMES = (("heatmap_path", "heatmap"), ("cam_path", "CAMs"), ("tiles_path", "tile table"))


def state_count(state: dict[str, Any], key: str, default: int) -> int:
    """A count a state carries (a whole number), or ``default`` where it has none."""
    value = state.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def describe_state(state: dict[str, Any]) -> str:
    """A job's state in lines, control characters escaped (the text came over the broker)."""
    head = f"{state['job_id']} {state['state']}"
    if "slides_total" in state:
        head += f" {state.get('slides_done', 0)}/{state['slides_total']} slides"
    if state.get("reason"):
        head += f" ({state['reason']})"
    lines = [head]
    for row in state.get("results", []):
        lines.append(f"  {row['slide']}: {row.get('error') or _verdict(row)}{_unwritten(row)}")
    if omitted := state_count(state, "results_omitted", 0):
        lines.append(f"  ({state_count(state, 'slides_failed', 0)} failed; {omitted} slides' "
                     "results are not in this message, too large for one: all are in the "
                     "back-office store)")
    return "\n".join(escape_controls(line) for line in lines)


def _verdict(row: dict[str, Any]) -> str:
    """A scored slide as `pathology run` prints it: the label, the score to 3 decimals and the
    tiles; an unsupported one with why and its share of tiles in distribution, not its score
    (the answer its label withholds); what no server would send is shown as it came."""
    score, tiles, share = row.get("score"), row.get("tile_count"), row.get("in_distribution_share")
    shown = f"{score:.3f}" if _is_number(score) else score
    counted = isinstance(tiles, int) and not isinstance(tiles, bool)
    if row.get("reason"):
        if counted and _is_number(share):
            return (f"{row.get('label')} ({row['reason']}: {share:.0%} of {tiles} tiles in "
                    "distribution)")
        return f"{row.get('label')} ({row['reason']})"
    return f"{row.get('label')} score {shown}" + (f" ({tiles} tiles)" if counted else "")


def _unwritten(row: dict[str, Any]) -> str:
    """What the server could not write of a scored slide: its tile table is written with every
    slide it scores, so an empty path there (a full results disk: the server stores the score
    without its files and says why in its log) names each file the row leaves empty."""
    if row.get("error") or row.get("tiles_path") != "":
        return ""  # failed, written, or a row that says nothing of its files
    missing = [name for key, name in PICTURE_NAMES if row.get(key) == ""]
    return f"; {_listed(missing)} not written (the server's log says why)"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def answer_about(payload: bytes, job_id: str | None = None,
                 request: str | None = None) -> str | None:
    """A server's refusal or answer read from a login's errors topic, in one line with its
    control characters escaped; None when the payload is none, or is about another job than
    ``job_id`` or another kind of request than ``request`` (``job`` or ``cancel``)."""
    answer = read_state(payload) if payload else None
    if answer is None or job_id not in (None, answer["job_id"]) or \
            request not in (None, answer.get("request")):
        return None
    named = answer["job_id"] or "a request naming no job id"
    return escape_controls(f"{named}: {answer.get('reason') or answer['state']}")


def print_job_list(latest: dict[str, bytes]) -> None:
    """The servers' presence, each job's state and the requests no server has taken yet, from
    the messages collected, each job by its id (its submitter's login first); a message that is
    none of these, or a state on another job's topic (anyone allowed to publish there may have
    put it), is named."""
    states: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    unreadable: list[str] = []
    requested: set[str] = set()
    for topic, payload in latest.items():
        if not payload:
            continue
        if topic.endswith("/request"):
            requested.add(job_id_of_topic(topic))
            continue
        presence = "/servers/" in topic
        read = (read_presence if presence else read_state)(payload)
        if read is None or (not presence and read["job_id"] != job_id_of_topic(topic)):
            unreadable.append(topic)
        else:
            (servers if presence else states).append(read)
    for server in sorted(servers, key=lambda s: s["server"]):
        print(escape_controls(_presence_line(server)))
    offline = {server["server"] for server in servers if server["state"] != "online"}
    for state in sorted(states, key=lambda s: s["job_id"]):
        line = describe_state({**state, "results": [], "results_omitted": 0})  # one line a job
        if state["state"] not in FINAL_STATES and state.get("server") in offline:
            line += escape_controls(f" (its server {state['server']} is offline: the job waits "
                                    "for it, or for another to take it over)")
        print(line)
    print(f"{len(states)} job(s)")
    _print_waiting(sorted(requested - {state["job_id"] for state in states}))
    if unreadable:
        named = ", ".join(escape_controls(topic[:200]) for topic in sorted(unreadable)[:5])
        print("pathology job list: "
              f"{len(unreadable)} retained message(s) that are no job state of their "
              f"topic or server presence ignored: {named}{' ...' if len(unreadable) > 5 else ''}",
              file=sys.stderr)


class JobServerWatch:
    """Whether the server running a followed job (``submit --wait``) went away: its id from
    the job's states, its going from its retained presence (a clean stop's ``offline``, or the
    last will of a connection lost). Said once on stderr each time it goes, since the job then
    stands still: the server resumes it when back, or another takes it over once its lease
    runs out (docs/pathology-server.md, Delivery)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.server: str | None = None
        self.online: set[str] = set()  # the presence topics of the servers online
        self.presences: dict[str, dict[str, Any]] = {}  # by server id, the newest heard
        self.told = False

    def heard_presence(self, topic: str, payload: bytes) -> None:
        """A server's retained presence on ``topic`` (empty: cleared)."""
        presence = read_presence(payload) if payload else None
        online = presence is not None and presence["state"] == "online"
        (self.online.add if online else self.online.discard)(topic)
        if presence is not None:
            self.presences[presence["server"]] = presence
            self._say()

    def heard_state(self, state: dict[str, Any]) -> None:
        """A state of the job (read_state), naming the server that wrote it."""
        if isinstance(state.get("server"), str):
            self.server = state["server"]
        self._say()

    def _say(self) -> None:
        presence = self.presences.get(self.server) if self.server is not None else None
        if presence is None or presence["state"] == "online":
            self.told = False
            return
        if self.told:
            return
        self.told = True
        how = ("lost its connection (killed, crashed or cut off)" if presence.get("lost") is True
               else "stopped")
        print(escape_controls(
            f"job {self.job_id}: its server {self.server} {how}; the job goes on when that "
            "server is back, or when another takes it over once its lease runs out "
            "(pathology.lease_s); waiting (Ctrl-C stops waiting, not the job)"),
            file=sys.stderr, flush=True)


def _presence_line(server: dict[str, Any]) -> str:
    """A server's presence in one line. A lost connection's last will was written when that
    connection was made (MQTT 5 spec 3.1.3.4: its payload travels in the CONNECT packet), so
    its time is when the server connected, not when it went away, and the line says so."""
    backend = server.get("backend", {}).get("backend")
    if server["state"] == "offline" and server.get("lost") is True:
        return (f"server {server['server']}: offline, its connection lost without a clean stop "
                f"(killed, crashed or cut off; it had connected at {server['at']}) ({backend})")
    return f"server {server['server']}: {server['state']} since {server['at']} ({backend})"


def _print_waiting(waiting: list[str]) -> None:
    """The requests no server has taken yet, by job id."""
    for job_id in waiting:
        print(escape_controls(f"{job_id} waiting: no server has taken it yet"))
    if waiting:
        print(f"{len(waiting)} request(s) waiting for a server")
