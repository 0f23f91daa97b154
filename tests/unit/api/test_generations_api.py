"""POST /v1/images/generations through the real app, with real SQLite and real files."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image
from tests.support import DataDir

from imagegate.container import Services


async def test_url_response_serves_a_real_png_of_the_asked_size(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/images/generations",
        json={"model": "builtin", "prompt": "a red fox", "size": "512x512"},
        headers=auth,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["size"] == "512x512"
    assert body["output_format"] == "png"
    (item,) = body["data"]
    assert item["url"].startswith("http://testserver/files/")
    image_response = await client.get(item["url"])  # no API key needed
    assert image_response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(image_response.content))
    assert (image.format, image.size) == ("PNG", (512, 512))
    assert response.headers["x-request-id"]
    assert response.headers["x-imagegate-provider"] == "builtin"


@pytest.mark.parametrize(("fmt", "pil_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_b64_json_returns_the_bytes_inline_in_the_asked_format(
    client: httpx.AsyncClient, auth: dict[str, str], fmt: str, pil_name: str
) -> None:
    response = await client.post(
        "/v1/images/generations",
        json={
            "prompt": "ocean at night",
            "size": "256x256",
            "n": 2,
            "response_format": "b64_json",
            "output_format": fmt,
        },
        headers=auth,
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 2
    for item in data:
        assert "url" not in item
        image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
        assert (image.format, image.size) == (pil_name, (256, 256))


async def test_one_generation_row_with_its_images_and_events(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir, services: Services
) -> None:
    response = await client.post(
        "/v1/images/generations",
        json={"prompt": "  a   red fox ", "size": "256x256", "n": 3},
        headers=auth,
    )
    generation_id = response.headers["x-imagegate-generation-id"]
    [(prompt, outcome, n, cost)] = data_dir.rows(
        f"SELECT prompt, outcome, n, cost_micro_usd FROM generations WHERE id = '{generation_id}'"
    )
    assert (prompt, outcome, n, cost) == ("a red fox", "generated", 3, 0)
    assert data_dir.count("images") == 3
    events = [row[0] for row in data_dir.rows("SELECT type FROM events ORDER BY id")]
    assert events == ["generation_started", "generation_completed"]
    await services.thumbnails.idle()  # thumbnails are made just after the answer
    assert len(data_dir.stored_files()) == 6  # each image and its thumbnail


async def test_the_same_image_is_stored_once(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir, services: Services
) -> None:
    body = {"prompt": "a red fox", "size": "256x256", "seed": 3}
    first = await client.post("/v1/images/generations", json=body, headers=auth)
    second = await client.post("/v1/images/generations", json=body, headers=auth)
    assert first.json()["data"][0]["url"] == second.json()["data"][0]["url"]
    assert data_dir.count("generations") == 2
    await services.thumbnails.idle()
    assert len(data_dir.stored_files()) == 2  # the image and its thumbnail


BAD_BODIES = [
    ({"prompt": "fox", "n": 0}, 400, "n", "between 1 and 10"),
    ({"prompt": "fox", "n": 11}, 400, "n", "between 1 and 10"),
    ({"prompt": "fox", "size": "300x300"}, 400, "size", "Supported sizes"),
    ({"prompt": ""}, 400, "prompt", "must not be empty"),
    ({"prompt": "x" * 32001}, 400, "prompt", "at most 32000"),
    ({"prompt": "fox", "model": "dall-e-9"}, 404, "model", "does not exist"),
    ({"prompt": 42}, 400, "prompt", "Invalid type for 'prompt'"),
    ({"prompt": "fox", "n": "2"}, 400, "n", "Invalid type for 'n'"),
    ({"prompt": "fox", "n": 1.5}, 400, "n", "Invalid type for 'n'"),
    ({"prompt": "fox", "output_format": "gif"}, 400, "output_format", "'png', 'jpeg' or 'webp'"),
    ({"prompt": "fox", "response_format": "bytes"}, 400, "response_format", "'url' or 'b64_json'"),
    ({"prompt": "fox", "stream": True}, 400, "stream", "stream"),
    ({"prompt": "fox", "colour": "red"}, 400, "colour", "Unrecognized request argument"),
    ({"n": 1}, 400, "prompt", "Missing required parameter: 'prompt'"),
    ([1, 2], 400, None, "JSON object"),
]


@pytest.mark.parametrize(("body", "status", "param", "fragment"), BAD_BODIES)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    data_dir: DataDir,
    body: object,
    status: int,
    param: str | None,
    fragment: str,
) -> None:
    response = await client.post("/v1/images/generations", json=body, headers=auth)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert fragment in error["message"]
    assert data_dir.count("generations") == 0
    assert data_dir.stored_files() == []


async def test_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/images/generations",
        content=b"{not json",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("header", [None, "Bearer ig_wrong", "Basic dXNlcjpwYXNz"])
async def test_without_a_valid_key_nothing_is_generated(
    client: httpx.AsyncClient, data_dir: DataDir, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.post(
        "/v1/images/generations", json={"prompt": "fox", "n": 0}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert data_dir.count("generations") == 0


async def test_client_request_id_is_echoed_and_bad_ones_replaced(
    client: httpx.AsyncClient,
) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-Id": "req-123"})
    assert echoed.headers["x-request-id"] == "req-123"
    replaced = await client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert replaced.headers["x-request-id"] not in ("bad id <script>", "")


async def test_unknown_routes_are_404_in_the_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def _png(color: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


async def test_edits_take_multipart_images_and_return_edited_images(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    response = await client.post(
        "/v1/images/edits",
        data={
            "prompt": "make it sunset",
            "size": "256x256",
            "n": "2",
            "response_format": "b64_json",
        },
        files=[
            ("image[]", ("a.png", _png(), "image/png")),
            ("image[]", ("b.png", _png((200, 0, 0)), "image/png")),
        ],
        headers=auth,
    )
    assert response.status_code == 200, response.text
    images = [
        Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
        for item in response.json()["data"]
    ]
    assert [(i.format, i.size) for i in images] == [("PNG", (256, 256))] * 2
    [(params,)] = data_dir.rows("SELECT params FROM generations")
    assert '"kind": "edit"' in str(params)


async def test_edit_uploads_are_sniffed_from_their_bytes(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    response = await client.post(
        "/v1/images/edits",
        data={"prompt": "x"},
        files={"image": ("photo.png", b"GIF89a not really an image", "image/png")},
        headers=auth,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"
    assert data_dir.count("generations") == 0


@pytest.mark.parametrize(
    ("data", "files", "param", "fragment"),
    [
        ({"prompt": "x"}, None, "image", "Missing required parameter: 'image'"),
        ({"prompt": "x", "n": "zero"}, "one", "n", "Invalid type for 'n'"),
        ({"n": "1"}, "one", "prompt", "Missing required parameter: 'prompt'"),
        ({"prompt": "x", "colour": "red"}, "one", "colour", "Unrecognized request argument"),
        ({"prompt": "x"}, "five", "image", "at most 4 image(s)"),
        ({"prompt": "x"}, "mask", "mask", "does not take a mask"),
    ],
)
async def test_bad_edit_requests_are_clear_400s(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    data: dict[str, str],
    files: str | None,
    param: str,
    fragment: str,
) -> None:
    image = ("a.png", _png(), "image/png")
    uploads = {
        None: [("unrelated", ("x.txt", b"x", "text/plain"))],
        "one": [("image", image)],
        "five": [("image[]", image)] * 5,
        "mask": [("image", image), ("mask", image)],
    }[files]
    response = await client.post("/v1/images/edits", data=data, files=uploads, headers=auth)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert fragment in error["message"]


async def test_edits_must_be_multipart_or_json(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/images/edits", content=b"prompt=x", headers={**auth, "Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_content_type"


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def test_edits_also_take_openais_json_form_with_data_urls(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/images/edits",
        json={
            "prompt": "make it sunset",
            "images": [{"image_url": _data_url(_png())}],
            "size": "256x256",
            "response_format": "b64_json",
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]
    assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (256, 256)


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        ([{"image_url": "https://example.com/cat.png"}], "does not fetch image URLs"),
        ([{"file_id": "file-123"}], "file_id is not supported"),
        ([{"image_url": "data:image/png;base64,@@@"}], "not valid base64"),
        ([], "at least 1 item"),
    ],
)
async def test_json_edits_never_fetch_urls_and_say_why(
    client: httpx.AsyncClient, auth: dict[str, str], images: list[object], fragment: str
) -> None:
    response = await client.post(
        "/v1/images/edits", json={"prompt": "x", "images": images}, headers=auth
    )
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
