"""schemathesis against the server's own /openapi.json: no 5xx, no answer outside the published schema.

Bounded: EXAMPLES generated requests per operation and generation mode (valid and schema-violating data),
on a server of its own (fuzzed sign-ups must not use up the session servers' rate limits). Every request
carries the real app id, so the generated bodies reach the flows instead of stopping at 404/1001.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.servers import RunningServer, start_server

EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    server = start_server("sqlite", f"sqlite:///{folder / 'keyhall.db'}", folder / "server.log", workers=1)
    yield server
    server.stop()


def test_openapi_documents_the_envelope_and_every_request_dto(fuzz_server: RunningServer) -> None:
    import httpx

    document = httpx.get(f"{fuzz_server.base_url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"Envelope", "SignUpDto", "UserSingleRespDto", "ProbeStatus"} <= set(schemas)
    assert "HTTPValidationError" not in schemas  # validation errors are 400 envelopes, never 422
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            if method == "post" and path.startswith("/api/v3/"):
                body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                assert body.get("schema"), f"{path}: request DTO not published"


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_schema(fuzz_server: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    headers = {"x-genauth-app-id": fuzz_server.app_id}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as exc:  # an operation that cannot be fuzzed in this mode is a finding too
                failures.append(f"{label}: no strategy: {exc!r}")
                continue
            _fuzz(strategy, fuzz_server.base_url, headers, label, failures)
    assert failures == [], f"{len(failures)} failures:\n\n" + "\n\n".join(failures[:12])


def _fuzz(
    strategy: st.SearchStrategy[Any], base_url: str, headers: dict[str, str], label: str, failures: list[str]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:  # one failure, or several found by one case
            failures.append(f"{label}: {str(exc)[:800]}")

    try:
        run()
    except Unsatisfiable:
        if "negative" not in label:
            raise
        # Nothing in this operation can be made invalid (no parameters, no body): no negative case.
