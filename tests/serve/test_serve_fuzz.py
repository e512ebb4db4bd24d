"""Property-based fuzzing of every operation in the app's own OpenAPI (schemathesis):
no 5xx, responses conform to the documented schemas, status codes and content types.
Bounded: a few examples per operation, about a minute on a 2-core CPU."""

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
EXAMPLES = 12


def test_openapi_fuzzing_finds_no_server_error(world, served):
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_dict(world.client.get("/openapi.json").json())
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance,
              content_type_conformance]  # fmt: skip
    headers = world.auth("NPO", "admin", True)
    failures, ran = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy()

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=strategy)
        def run(case):
            nonlocal ran
            ran += 1
            try:
                case.call_and_validate(base_url=served, headers=headers, checks=checks)
            except Exception as e:  # collect every operation's failure, not just the first
                failures.append(f"{case.method} {case.path}: {e}")

        run()
    assert ran >= 10
    assert not failures, "\n".join(failures[:10])
