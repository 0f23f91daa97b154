"""Every error leaves as OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

One table: an ``ImagegateError`` carries its own status, type and code (see ``errors.py``);
request validation is a 400 (OpenAI never sends 422); unknown routes are 404; anything else is a
bug, logged with its request id and reported as a 500 without internals. A database that cannot
be reached is not a bug: ``db/`` raises ``DatabaseUnavailable``, a 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from imagegate.errors import ImagegateError

log = logging.getLogger("imagegate.api")


def error_response(
    status: int,
    message: str,
    *,
    type: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _from_imagegate_error(exc: ImagegateError) -> Response:
    headers = None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return error_response(
        exc.status, exc.message, type=exc.type, code=exc.code, param=exc.param, headers=headers
    )


def _describe_validation_error(error: dict[str, Any]) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic's first complaint about a request."""
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    kind = error.get("type", "")
    if kind == "json_invalid":
        return (
            "We could not parse the JSON body of your request. Send a JSON object with "
            "'Content-Type: application/json'.",
            None,
            "invalid_json",
        )
    if param is None:
        return (
            "The request body must be a JSON object with at least 'prompt'.",
            None,
            "invalid_body",
        )
    if kind == "missing":
        return (f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    if kind == "extra_forbidden":
        return (f"Unrecognized request argument supplied: '{param}'.", param, "unknown_parameter")
    if kind.endswith(("_type", "_parsing")):
        return (f"Invalid type for '{param}': {error.get('msg', '')}.", param, "invalid_type")
    return (f"Invalid value for '{param}': {error.get('msg', '')}.", param, "invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImagegateError)
    async def _imagegate(_: Request, exc: ImagegateError) -> Response:
        if exc.status >= 500 and not exc.retryable:
            log.error("request failed: %r", exc)
        return _from_imagegate_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        message, param, code = _describe_validation_error(dict(errors[0]) if errors else {})
        return error_response(400, message, type="invalid_request_error", code=code, param=param)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
        return error_response(
            exc.status_code,
            message,
            type="invalid_request_error",
            code=code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ImagegateError):  # raised in a middleware, outside the table above
            return await _imagegate(request, exc)
        request_id = request.scope.get("state", {}).get("request_id", "-")
        log.exception("unhandled error in request %s", request_id)
        return error_response(
            500,
            f"The server had an error processing your request (request id {request_id}).",
            type="server_error",
            code="internal_error",
        )
