"""A server's count of the job requests retained on the broker: at most
max_retained_requests in all and max_retained_requests_per_login of one login's, so one
login's flood fills its own share, not the others'."""

from __future__ import annotations

from appliance.config import config_from_mapping
from appliance.pathology.retained import RetainedRequests


def _counted(total: int, per_login: int) -> RetainedRequests:
    config = config_from_mapping({"pathology": {"max_retained_requests": total,
                                                "max_retained_requests_per_login": per_login}})
    return RetainedRequests(config.pathology)


def test_a_login_beyond_its_share_is_refused_while_another_login_is_not() -> None:
    retained = _counted(total=5, per_login=2)
    for job_id in ("a/1", "a/2", "a/2"):  # a request read again is counted once
        retained.add(job_id)
    assert retained.limit_passed("a/3") == "max_retained_requests_per_login"
    assert retained.refusal("a/3") == (
        "refused: 2 job requests of login a wait or run already "
        "(pathology.max_retained_requests_per_login); submit it again once some have ended")
    assert retained.limit_passed("b/1") is None  # another login's share is its own
    retained.forget("a/1")  # cleared: the job ended, or was withdrawn
    assert retained.limit_passed("a/3") is None
    retained.forget("a/1")  # cleared again: nothing more to forget
    assert retained.limit_passed("a/4") is None


def test_the_total_bounds_every_login_together() -> None:
    retained = _counted(total=3, per_login=2)
    for job_id in ("a/1", "a/2", "b/1"):
        retained.add(job_id)
    assert retained.limit_passed("c/1") == "max_retained_requests"
    assert retained.refusal("c/1").startswith(
        "refused: 3 job requests wait or run already (pathology.max_retained_requests)")
    retained.clear()  # a new session: every retained request comes again
    assert retained.limit_passed("a/3") is None
