"""Make the OpenAPI document say what the server really answers (checked by schemathesis in the suite).

FastAPI describes each route by its declared return type; Keyhall's wire differs in known ways, fixed up
here once for every route rather than in each router:

- Every failure is the envelope with HTTP 200 (``/readyz``'s 503 aside): a route whose 200 answer is not
  already an envelope model gets ``anyOf: [its schema, Envelope]``, and a route whose 200 answer is not
  JSON (``/metrics``) gets the envelope as an ``application/json`` alternative.
- Request validation never answers 422 (``app.py`` maps it to a 400 envelope): FastAPI's 422 responses
  and their ``HTTPValidationError`` schemas are removed.
- OAuth/OIDC routes (``/oidc/...``) answer errors with the HTTP status in the status line as well, as
  RFC 6749 section 5.2 wants: they get a ``4XX`` response whose body is the envelope (plus OAuth's
  ``error`` and ``error_description``), unless the route documents its errors itself.
- ``/api/v3`` routes name the application in a header: ``x-genauth-app-id`` (or ``x-authing-app-id``)
  and ``x-genauth-lang`` are documented on each of them.
"""

from __future__ import annotations

from typing import Any

from keyhall.server.http.dto import Envelope

ENVELOPE_REF = "#/components/schemas/Envelope"

_HEADERS = (
    ("x-genauth-app-id", "The application's id (GenAuth's SDKs send it; `x-authing-app-id` is accepted too)"),
    ("x-genauth-lang", "Language of `message`: en-US (default) or zh-CN"),
)


def document_envelopes(schema: dict[str, Any]) -> dict[str, Any]:
    """Apply the rules above to a generated OpenAPI document (in place) and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Envelope", Envelope.model_json_schema(ref_template="#/components/schemas/{model}"))
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            ok = responses.setdefault("200", {"description": "Successful Response"})
            _allow_envelope(ok, components, api=path.startswith("/api/v3/"))
            if path.startswith("/api/v3/"):
                _document_headers(operation)
            elif "/oidc/" in path and not any(code.startswith("4") for code in responses):
                responses["4XX"] = {
                    "description": "An error: the envelope with OAuth's `error` and `error_description`; "
                    "the HTTP status is the envelope's statusCode",
                    "content": {"application/json": {"schema": {"$ref": ENVELOPE_REF}}},
                }
    if "HTTPValidationError" in components and "HTTPValidationError" not in repr(schema["paths"]):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def _allow_envelope(response: dict[str, Any], components: dict[str, Any], *, api: bool) -> None:
    content = response.setdefault("content", {})
    json_body = content.get("application/json")
    if json_body is None:
        content["application/json"] = {"schema": {"$ref": ENVELOPE_REF}}
        return
    declared = json_body.get("schema") or {}
    if not declared:
        # No response model: an /api/v3 route still answers the envelope (an empty schema would let any
        # answer pass a schema check); other routes (OIDC, probes) answer what they document themselves.
        json_body["schema"] = {"$ref": ENVELOPE_REF} if api else {}
    elif not _is_envelope(declared, components):
        json_body["schema"] = {"anyOf": [declared, {"$ref": ENVELOPE_REF}]}


def _is_envelope(declared: dict[str, Any], components: dict[str, Any]) -> bool:
    ref = declared.get("$ref", "")
    target = components.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/components/schemas/") else declared
    if not isinstance(target, dict):
        return False
    return {"statusCode", "message", "requestId"} <= set(target.get("required", ()))


def _document_headers(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    present = {(p.get("in"), str(p.get("name", "")).lower()) for p in parameters if isinstance(p, dict)}
    for name, description in _HEADERS:
        if ("header", name) not in present:
            parameters.append(
                {
                    "name": name,
                    "in": "header",
                    "required": False,
                    "description": description,
                    "schema": {"type": "string"},
                }
            )
