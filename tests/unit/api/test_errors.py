from __future__ import annotations

import json

import pytest

from functions.api.errors import PROBLEM_CONTENT_TYPE, problem_for
from functions.api.service import LimitReached, PreconditionFailed
from functions.storage.postbacks import StoreBusy

pytestmark = pytest.mark.unit


def test_a_write_that_kept_colliding_is_a_503_with_retry_after() -> None:
    response = problem_for(StoreBusy("collided 4 times"))

    assert response.status_code == 503
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["Retry-After"] == "1"
    body = json.loads(response.body)
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert "nothing was written" in body["detail"]


@pytest.mark.parametrize(("error", "status"), [(LimitReached("full"), 409), (PreconditionFailed("stale"), 412)])
def test_domain_errors_map_to_their_status(error: Exception, status: int) -> None:
    response = problem_for(error)
    assert response.status_code == status
    assert json.loads(response.body)["status"] == status
