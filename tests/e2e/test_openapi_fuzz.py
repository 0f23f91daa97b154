"""schemathesis over imagegate's own OpenAPI document, against a live ``imagegate serve`` on the
embedded defaults (SQLite, local disk, the builtin model) with a valid admin key: no 5xx, every
response as documented (status, content type, JSON schema), every error in OpenAI's shape.

Bounded: a few examples per operation, no shrinking, so the whole run stays well under two
minutes on two cores."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.support.processes import ServerProcess, run_cli

from imagegate.api.app import create_app
from imagegate.settings import Settings

pytestmark = pytest.mark.e2e

with tempfile.TemporaryDirectory() as _scratch:  # the document only: nothing is started
    DOCUMENT = create_app(settings=Settings(data_dir=Path(_scratch))).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)

ERROR_KEYS = {"message", "type", "param", "code"}


@schemathesis.check
def openai_error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx with a body is ``{"error": {"message", "type", "param", "code"}}``."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {response.text[:200]}"
    assert set(body) == {"error"}, f"error body has keys {sorted(body)}"
    assert set(body["error"]) == ERROR_KEYS, f"error has keys {sorted(body['error'])}"
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    openai_error_shape,
]
"""What the document promises. Not run: schemathesis's "schema-valid data is accepted" (a
schema cannot say which cursors, users or tags exist: those 400/404s are right) and its
405 ``Allow`` check (OpenAI's own paths overlap: ``/v1/images/{image_id}`` with the id
``generations`` is ``POST /v1/images/generations``)."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    made = run_cli("keys", "create", "--name", "fuzzer", "--role", "admin", data_dir=data)
    assert made.returncode == 0, made.stderr
    server = ServerProcess(data).start()
    try:
        yield server.base_url, {"Authorization": f"Bearer {made.stdout.strip()}"}
    finally:
        server.stop()


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_does_what_its_openapi_document_says(
    case: Case, gateway: tuple[str, dict[str, str]]
) -> None:
    base_url, auth = gateway
    case.call_and_validate(base_url=base_url, headers=auth, timeout=30, checks=CHECKS)
