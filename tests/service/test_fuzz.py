"""Schemathesis against the live API's own OpenAPI: whatever it generates (valid or schema-breaking cases,
on unknown and on real jobs), no answer is a 5xx, and every refusal is the API's JSON error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import start_stack
from tests.service.test_jobs import submit, wait_status

EXAMPLES_PER_OPERATION = 40


@pytest.mark.timeout(400)
def test_api_never_answers_5xx(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:InstantEngine")
    try:
        schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8
        with stack.client() as client:  # real jobs, so the fuzzer also reaches past the 404s
            job_ids = [submit(client, steps="3").json()["id"] for _ in range(3)]
            for job_id in job_ids:
                wait_status(client, job_id, {"succeeded"}, timeout_s=30)
        seen: dict[str, set[int]] = {}
        for operation in operations:
            _fuzz(operation, stack.url, job_ids, seen.setdefault(operation.label, set()))
        assert {200, 404} <= seen["GET /jobs/{job_id}"] and {200, 422} <= seen["GET /jobs"], seen
        assert 422 in seen["POST /jobs"], seen
    finally:
        stack.stop()


def _fuzz(operation, base_url: str, job_ids: list[str], statuses: set[int]) -> None:
    cases = st.one_of(operation.as_strategy(schemathesis.GenerationMode.POSITIVE), _negative(operation))

    @given(case=cases, real_job=st.sampled_from([None, *job_ids]))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case, real_job) -> None:
        if real_job and case.path_parameters and "job_id" in case.path_parameters:
            case.path_parameters["job_id"] = real_job
        response = case.call(base_url=base_url, timeout=15)
        statuses.add(response.status_code)
        assert response.status_code < 500, (operation.label, response.status_code, response.text)
        if response.status_code >= 400:
            assert "error" in response.json(), response.text  # every refusal is the API's JSON error

    check()


def _negative(operation):
    """Cases that break the schema on purpose (wrong types, out of range), where the schema allows it."""
    try:
        return operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)
    except Exception:  # nothing to break (no parameters)
        return st.nothing()
