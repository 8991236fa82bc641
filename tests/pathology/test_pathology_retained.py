"""A server's count of the job requests retained on the broker: at most
max_retained_requests in all and max_retained_requests_per_login of one login's, so one
login's flood fills its own share, not the others'; and the refusals it keeps, bounded the
same way."""

from __future__ import annotations

from appliance.config import config_from_mapping
from appliance.pathology.refusals import refusals_let_go
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


def test_a_login_s_refusals_beyond_its_share_go_and_leave_the_others() -> None:
    newest_first = ["a/5", "a/4", "b/1", "a/3", "a/2", "c/1", "a/1"]
    assert refusals_let_go(newest_first, per_login=3, total=10) == ["a/2", "a/1"]


def test_beyond_the_total_the_login_keeping_the_most_lets_its_oldest_go() -> None:
    newest_first = ["a/3", "b/2", "a/2", "b/1", "a/1", "c/1"]  # a and b keep 3 and 2
    assert refusals_let_go(newest_first, per_login=3, total=4) == ["a/1", "b/1"]
    many_logins = [f"login-{index}/1" for index in range(5)]  # one each: the oldest goes
    assert refusals_let_go(many_logins, per_login=3, total=3) == ["login-4/1", "login-3/1"]
