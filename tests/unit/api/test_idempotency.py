"""``Idempotency-Key`` through the real app, with real SQLite: one generation per key and body."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from tests.support import DataDir

from imagegate.container import Services
from imagegate.models import Role

URL = "/v1/images/generations"
BODY = {"prompt": "a red fox", "size": "256x256", "response_format": "b64_json"}


def _with_key(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


async def test_a_sequential_retry_replays_the_first_response_byte_for_byte(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    headers = _with_key(auth, "retry-1")
    first = await client.post(URL, json=BODY, headers=headers)
    second = await client.post(URL, json=BODY, headers=headers)

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    generation_id = first.headers["x-imagegate-generation-id"]
    assert second.headers["x-imagegate-generation-id"] == generation_id
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    # the request id middleware stays outside: a replay is a request of its own
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert data_dir.count("generations") == 1
    assert data_dir.count("idempotency_keys") == 1


async def test_concurrent_requests_with_one_key_make_one_generation(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    headers = _with_key(auth, "burst")
    responses = await asyncio.gather(
        *(client.post(URL, json=BODY, headers=headers) for _ in range(10))
    )

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["x-imagegate-generation-id"] for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert data_dir.count("generations") == 1


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    headers = _with_key(auth, "one-question")
    assert (await client.post(URL, json=BODY, headers=headers)).status_code == 200

    response = await client.post(URL, json={**BODY, "prompt": "a blue fox"}, headers=headers)

    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": "Idempotency-Key",
            "code": "idempotency_key_reused",
        }
    }
    assert data_dir.count("generations") == 1


async def test_keys_belong_to_their_user(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services, data_dir: DataDir
) -> None:
    other = await services.keys.create("user-b", Role.USER)
    other_auth = {"Authorization": f"Bearer {other.secret}"}

    mine = await client.post(URL, json=BODY, headers=_with_key(auth, "shared-name"))
    theirs = await client.post(URL, json=BODY, headers=_with_key(other_auth, "shared-name"))
    theirs_with_another_body = await client.post(
        URL, json={**BODY, "prompt": "a wolf"}, headers=_with_key(other_auth, "shared-name")
    )

    assert mine.status_code == theirs.status_code == 200
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.headers["x-imagegate-generation-id"] != mine.headers["x-imagegate-generation-id"]
    assert theirs_with_another_body.status_code == 422  # their key, their first body
    assert data_dir.count("generations") == 2


async def test_a_client_error_is_a_final_answer_and_is_replayed(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    headers = _with_key(auth, "bad-body")
    first = await client.post(URL, json={"size": "256x256"}, headers=headers)
    second = await client.post(URL, json={"size": "256x256"}, headers=headers)

    assert first.status_code == second.status_code == 400
    assert first.json()["error"]["code"] == "missing_required_parameter"
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert data_dir.count("generations") == 0


async def test_without_the_header_every_request_generates(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    first = await client.post(URL, json=BODY, headers=auth)
    second = await client.post(URL, json=BODY, headers=auth)

    assert first.status_code == second.status_code == 200
    assert first.headers["x-imagegate-generation-id"] != second.headers["x-imagegate-generation-id"]
    assert data_dir.count("generations") == 2
    assert data_dir.count("idempotency_keys") == 0


async def test_an_expired_key_runs_the_request_again(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    headers = _with_key(auth, "yesterday")
    first = await client.post(URL, json=BODY, headers=headers)
    data_dir.rows("UPDATE idempotency_keys SET expires_at = '2000-01-01 00:00:00.000000'")

    again = await client.post(URL, json={**BODY, "prompt": "another fox"}, headers=headers)

    assert again.status_code == 200
    assert "idempotent-replayed" not in again.headers
    assert again.headers["x-imagegate-generation-id"] != first.headers["x-imagegate-generation-id"]
    assert data_dir.count("generations") == 2
    assert data_dir.count("idempotency_keys") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_a_malformed_key_is_a_400_naming_the_header(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir, key: str
) -> None:
    response = await client.post(URL, json=BODY, headers=_with_key(auth, key))

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("Idempotency-Key", "invalid_idempotency_key")
    assert "Idempotency-Key" in error["message"]
    assert data_dir.count("generations") == 0


async def test_without_a_valid_api_key_the_route_answers_401(
    client: httpx.AsyncClient, data_dir: DataDir
) -> None:
    response = await client.post(
        URL, json=BODY, headers={"Authorization": "Bearer ig_nope", "Idempotency-Key": "k"}
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert data_dir.count("idempotency_keys") == 0


async def test_multipart_edits_are_replayed_too(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    png = (await client.post(URL, json=BODY, headers=auth)).json()["data"][0]["b64_json"]
    request = client.build_request(
        "POST",
        "/v1/images/edits",
        files={"image": ("in.png", base64.b64decode(png), "image/png")},
        data={"prompt": "make it night", "size": "256x256"},
        headers=_with_key(auth, "edit-1"),
    )
    first = await client.send(request)
    second = await client.send(request)  # the same bytes, boundary included, as a retry sends

    assert first.status_code == 200, first.text
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert data_dir.count("generations") == 2  # the one that made the input, and the edit
