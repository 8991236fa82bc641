"""Which refusals of job requests a pathology server keeps, as the failed states it left
retained on the broker and as the store's refusal rows: each login's newest
``max_retained_requests_per_login`` (its share; the login is a job id's first level, which the
broker vouches for) and at most ``max_retained_requests`` in all, so garbage under ever new
job ids fills neither the broker nor the store, and one login's garbage lets only its own
refusals go (docs/pathology-server.md, Delivery item 5).

Where the logins' shares together exceed the total (many logins, or a broker without logins,
where any first level is anyone's), the total lets go of the oldest refusal of the login that
keeps the most: a login's flood still lets only its own go while another keeps fewer.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.pathology.jobs import job_submitter


def refusals_let_go(newest_first: Sequence[str], per_login: int, total: int) -> list[str]:
    """The job ids of the refusals to let go of, of those given newest first: each login's
    beyond its newest ``per_login``, then, while more than ``total`` remain, the oldest of
    the login that keeps the most (of two keeping as many, the one whose oldest is older)."""
    age = {job_id: index for index, job_id in enumerate(newest_first)}
    kept: dict[str, list[str]] = {}  # each login's, newest first
    let_go: list[str] = []
    for job_id in newest_first:
        of_login = kept.setdefault(job_submitter(job_id), [])
        (let_go if len(of_login) >= per_login else of_login).append(job_id)
    beyond_total = sum(map(len, kept.values())) - total
    for _ in range(beyond_total):
        largest = max(kept.values(), key=lambda ids: (len(ids), age[ids[-1]] if ids else 0))
        let_go.append(largest.pop())
    return let_go
