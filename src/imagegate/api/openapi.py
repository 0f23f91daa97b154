"""The OpenAPI document, as the API really answers.

FastAPI documents a 422 ``HTTPValidationError`` that imagegate never sends (validation errors are
400s in OpenAI's error shape, see ``api/errors.py``) and nothing for the errors every route can
return (401 without a key, 413 over the body limit, 431 over the header limit, 429, 503 ...).
This rewrites each operation once, when the document is first built: 422 goes, every error
status any route may answer is documented with ``ErrorResponse``, and ``default`` covers the
rest. The fuzz test (``tests/e2e/test_openapi_fuzz.py``) holds the app to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from imagegate.api.schemas import ErrorResponse

COMMON_ERRORS = {
    "400": "Bad request: the message and param say what to fix",
    "401": "No, an invalid, revoked or expired API key",
    "404": "Unknown, or not yours",
    "405": "Method not allowed on this path",
    "413": "Body or uploaded file over its limit",
    "429": "Rate, concurrency, queue, quota or budget limit",
    "431": "Request headers over the limit",
    "500": "A bug (reported with the request id)",
    "503": "A dependency (database, storage, providers) is unavailable",
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components.setdefault("ErrorResponse", error_schema)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in COMMON_ERRORS.items():
                responses.setdefault(status, _error(description))
            responses["default"] = _error("Any other error, in the same shape")
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
