"""The job requests a pathology server counts as retained on the broker, waiting or running,
as it read them since it connected, less those it cleared itself (refused, or their job
ended: the broker drops them as it reads the clear): at most
``pathology.max_retained_requests`` in all (the bound on the broker's memory) and at most
``max_retained_requests_per_login`` of one login's (a job id's first level: the fleet's
broker lets only that login publish under it), so one login's flood fills its own share, not
the others' (docs/pathology-server.md, Delivery item 5).
Request admission (appliance/pathology/admission.py) asks which limit a new request would pass
and refuses it with ``refusal``.
"""

from __future__ import annotations

from collections import Counter

from appliance.config.pathology import PathologyConfig
from appliance.pathology.jobs import job_submitter

TOTAL_KEY = "max_retained_requests"
PER_LOGIN_KEY = "max_retained_requests_per_login"


class RetainedRequests:
    """The job ids counted, in the order read, and how many of them each login submitted."""

    def __init__(self, settings: PathologyConfig) -> None:
        self.settings = settings
        self._ids: dict[str, None] = {}
        self._of_login: Counter[str] = Counter()

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids

    def clear(self) -> None:
        """A new session: the broker sends every retained request again."""
        self._ids.clear()
        self._of_login.clear()

    def limit_passed(self, job_id: str) -> str | None:
        """The config key of the limit that one more request, ``job_id``'s, would pass (the
        total first), or None when it is within both."""
        if len(self._ids) >= self.settings.max_retained_requests:
            return TOTAL_KEY
        if self._of_login[job_submitter(job_id)] >= \
                self.settings.retained_requests_per_login_limit:
            return PER_LOGIN_KEY
        return None

    def add(self, job_id: str) -> None:
        """Count a request read, in its login's share too."""
        if job_id not in self._ids:
            self._ids[job_id] = None
            self._of_login[job_submitter(job_id)] += 1

    def forget(self, job_id: str) -> None:
        """A request cleared (by this server, or read cleared): no longer counted, nor in its
        login's share."""
        if job_id not in self._ids:
            return
        del self._ids[job_id]
        login = job_submitter(job_id)
        self._of_login[login] -= 1
        if not self._of_login[login]:
            del self._of_login[login]

    def refusal(self, job_id: str) -> str:
        """Why a request beyond a limit is refused, naming the limit's config key."""
        if self.limit_passed(job_id) == PER_LOGIN_KEY:
            key = PER_LOGIN_KEY
            held = (f"{self.settings.retained_requests_per_login_limit} job requests of login "
                    f"{job_submitter(job_id)} wait or run already")
        else:
            key, held = TOTAL_KEY, (f"{self.settings.max_retained_requests} job requests wait "
                                    "or run already")
        return f"refused: {held} (pathology.{key}); submit it again once some have ended"
