"""schemathesis against the server's own /openapi.json: no 5xx, no answer outside the published schema.

Bounded: EXAMPLES generated requests per operation and generation mode (valid and schema-violating data),
on a server of its own (fuzzed sign-ups must not use up the session servers' rate limits). Every request
carries the real app id, so the generated bodies reach the flows instead of stopping at 404/1001, and the
routes of a signed-in user get a valid access token, so they are fuzzed past 401.

"No 5xx" means the envelope too: /api/v3 answers carry their outcome in the body's ``statusCode`` with HTTP
200, so a server error there (the last-resort 500 envelope) is invisible to schemathesis's
``not_a_server_error``, which reads the status line only.
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
# Routes that need a signed-in user's access token (without one every generated case stops at 401).
SIGNED_IN = {
    "/api/v3/get-profile",
    "/api/v3/get-security-info",
    "/api/v3/update-profile",
    "/api/v3/update-password",
    "/oidc/me",
}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    server = start_server("sqlite", f"sqlite:///{folder / 'keyhall.db'}", folder / "server.log", workers=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def access_token(fuzz_server: RunningServer) -> str:
    import httpx

    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": "fuzzed.user@example.com", "password": "Blue-Harbor-7-Lantern"},
    }
    with httpx.Client(
        base_url=fuzz_server.base_url, headers={"x-genauth-app-id": fuzz_server.app_id}, timeout=30
    ) as http:
        assert http.post("/api/v3/signup", json=body).json()["statusCode"] == 200
        signed_in = http.post("/api/v3/signin", json=body).json()
    assert signed_in["statusCode"] == 200, signed_in
    return str(signed_in["data"]["access_token"])


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


def test_every_api_v3_answer_is_published_as_the_envelope(fuzz_server: RunningServer) -> None:
    """Each /api/v3 route's 200 answer is the envelope (or a DTO naming its ``data``), never ``{}``: an
    empty schema would let any answer pass the fuzzer's schema check."""
    import httpx

    document = httpx.get(f"{fuzz_server.base_url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    undocumented = []
    for path, item in document["paths"].items():
        if not path.startswith("/api/v3/"):
            continue
        for method, operation in item.items():
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            if not _is_envelope(schema, schemas):
                undocumented.append(f"{method.upper()} {path}: {schema}")
    assert undocumented == [], undocumented


def _is_envelope(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """A $ref to a model with the envelope's required fields, or an anyOf that includes the Envelope."""
    if any(_is_envelope(choice, schemas) for choice in schema.get("anyOf", ())):
        return True
    ref = schema.get("$ref", "")
    target = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
    return {"statusCode", "message", "requestId"} <= set(target.get("required", ()))


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_schema(
    fuzz_server: RunningServer, access_token: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    headers = {"x-genauth-app-id": fuzz_server.app_id}
    signed_in = {**headers, "authorization": f"Bearer {access_token}"}
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
            chosen = signed_in if operation.path in SIGNED_IN else headers
            _fuzz(strategy, fuzz_server.base_url, chosen, label, failures)
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
            body = response.json()
        except ValueError:
            return  # /metrics, or a non-JSON answer the checks above judged already
        status = body.get("statusCode") if isinstance(body, dict) else None
        if isinstance(status, int) and status >= 500:  # HTTP 200 with a 5xx envelope
            failures.append(f"{label}: envelope statusCode {status}: {body.get('message')!r}")

    try:
        run()
    except Unsatisfiable:
        if "negative" not in label:
            raise
        # Nothing in this operation can be made invalid (no parameters, no body): no negative case.
