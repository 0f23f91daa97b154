"""Uploaded images (``POST /v1/images/edits``, multipart and JSON data URLs) through the real
app: a per-file size limit, the type read from the bytes, bombs, truncated and polyglot files
refused, and EXIF orientation applied (real JPEGs, decoded with Pillow)."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageStat
from tests.support import DataDir

from imagegate.settings import RequestSettings, Settings
from imagegate.storage.images import verify_upload

UPLOAD_LIMIT = 200_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        requests=RequestSettings(max_upload_bytes=UPLOAD_LIMIT),
    )


def _encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _png(size: tuple[int, int] = (64, 64)) -> bytes:
    return _encoded(Image.new("RGB", size, (40, 160, 90)), "PNG")


def _red_left_blue_right_jpeg(orientation: int) -> bytes:
    """200x100 as stored: left half red, right half blue; EXIF says how to show it."""
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(image, "JPEG", quality=95, exif=exif.tobytes())


async def _edit(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, data: bytes, mime: str
) -> httpx.Response:
    return await client.post(
        "/v1/images/edits",
        data={"prompt": "x", "model": "builtin", "size": "256x256", "response_format": "b64_json"},
        files={"image": (name, data, mime)},
        headers=auth,
    )


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


async def test_an_upload_over_the_per_file_limit_is_413_naming_the_limit(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    noise = Image.effect_noise((400, 400), 100).convert("RGB")
    big = _encoded(noise, "PNG")
    assert len(big) > UPLOAD_LIMIT
    error = _error(await _edit(client, auth, "big.png", big, "image/png"), 413)
    assert error["code"] == "upload_too_large"
    assert error["param"] == "image"
    assert str(UPLOAD_LIMIT) in str(error["message"])
    assert "IMAGEGATE_REQUESTS__MAX_UPLOAD_BYTES" in str(error["message"])
    as_json = await client.post(
        "/v1/images/edits",
        json={
            "prompt": "x",
            "images": [{"image_url": "data:image/png;base64," + base64.b64encode(big).decode()}],
        },
        headers=auth,
    )
    assert _error(as_json, 413)["code"] == "upload_too_large"
    assert data_dir.count("generations") == 0


async def test_the_type_comes_from_the_bytes_not_the_name_or_declared_type(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    # a real PNG called .jpg and declared image/jpeg is used as the PNG it is
    answer = await _edit(client, auth, "photo.jpg", _png(), "image/jpeg")
    assert answer.status_code == 200, answer.text
    # a GIF and an HTML page declared as PNG are refused
    gif = _encoded(Image.new("P", (8, 8)), "GIF")
    assert _error(await _edit(client, auth, "a.png", gif, "image/png"), 400)["code"] == (
        "invalid_image_format"
    )
    html = b"<!doctype html><script>alert(1)</script>"
    assert _error(await _edit(client, auth, "a.png", html, "image/png"), 400)["param"] == "image"
    assert data_dir.count("generations") == 1


def _bomb_png(width: int, height: int) -> bytes:
    data = bytearray(_png((8, 8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """A valid PNG with an extra ancillary chunk (CRC right) just before IEND."""
    data = _png()
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload))
    return data[:-12] + chunk + data[-12:]


def _zip_inside_png() -> bytes:
    """Valid as a PNG and as a ZIP at once: the archive sits in a chunk, and its end record's
    comment length covers the chunk's CRC and the IEND chunk after it."""
    archive = bytearray(_zip({"evil.html": b"<b>hi</b>"}))
    archive[-2:] = struct.pack("<H", 4 + 12)
    data = _png_with_chunk(b"tEXt", b"c\x00" + bytes(archive))
    assert zipfile.is_zipfile(io.BytesIO(data))
    return data


def _jpeg() -> bytes:
    return _encoded(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")


def _webp() -> bytes:
    return _encoded(Image.new("RGB", (64, 64), (9, 9, 9)), "WEBP")


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("bomb", _bomb_png(30_000, 30_000), "image_too_large"),
        ("truncated png", _png()[:-30], "invalid_image"),
        ("truncated jpeg", _jpeg()[:-200], "invalid_image"),
        ("png + zip", _png() + _zip({"a.txt": b"hello"}), "polyglot_image"),
        ("png + html", _png() + b"<html><script>alert(1)</script></html>", "polyglot_image"),
        ("jpeg + zip", _jpeg() + _zip({"a.txt": b"hello"}), "polyglot_image"),
        ("webp + html", _webp() + b"<script>alert(1)</script>", "polyglot_image"),
        ("png that is also a zip", _zip_inside_png(), "polyglot_image"),
        (
            "png carrying a page",
            _png_with_chunk(b"tEXt", b"c\x00<script>x()</script>"),
            "polyglot_image",
        ),
    ],
)
async def test_bombs_truncated_and_polyglot_files_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, data: bytes, code: str
) -> None:
    error = _error(await _edit(client, auth, "a.png", data, "image/png"), 400)
    assert (error["code"], error["param"]) == (code, "image"), name


@pytest.mark.parametrize("data", [_png(), _jpeg(), _webp()])
async def test_plain_png_jpeg_and_webp_are_accepted(
    client: httpx.AsyncClient, auth: dict[str, str], data: bytes
) -> None:
    answer = await _edit(client, auth, "x.bin", data, "application/octet-stream")
    assert answer.status_code == 200, answer.text


def _halves(data: bytes) -> tuple[float, float, float, float]:
    """Mean red of the top, bottom, left and right halves."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        w, h = rgb.size
        boxes = [(0, 0, w, h // 2), (0, h // 2, w, h), (0, 0, w // 2, h), (w // 2, 0, w, h)]
        top, bottom, left, right = (ImageStat.Stat(rgb.crop(box)).mean[0] for box in boxes)
    return top, bottom, left, right


async def test_exif_orientation_is_applied_before_the_model_sees_the_image(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # orientation 6: shown rotated 90 degrees clockwise, so the red left half is on top
    answer = await _edit(client, auth, "p.jpg", _red_left_blue_right_jpeg(6), "image/jpeg")
    assert answer.status_code == 200, answer.text
    top, bottom, left, right = _halves(base64.b64decode(answer.json()["data"][0]["b64_json"]))
    assert top - bottom > 60, (top, bottom)
    assert abs(left - right) < 30, (left, right)
    # orientation 1 (as stored): red stays on the left
    plain = await _edit(client, auth, "p.jpg", _red_left_blue_right_jpeg(1), "image/jpeg")
    top, bottom, left, right = _halves(base64.b64decode(plain.json()["data"][0]["b64_json"]))
    assert left - right > 60, (left, right)
    assert abs(top - bottom) < 30, (top, bottom)


def test_the_upright_copy_is_a_real_jpeg_with_the_sides_swapped_and_no_rotation_left() -> None:
    mime, data = verify_upload(_red_left_blue_right_jpeg(6), 1_000_000, "image")
    assert mime == "image/jpeg"
    with Image.open(io.BytesIO(data)) as upright:
        assert (upright.format, upright.size) == ("JPEG", (100, 200))
        assert upright.getexif().get(0x0112, 1) == 1
    stored = _red_left_blue_right_jpeg(1)
    assert verify_upload(stored, 1_000_000, "image") == ("image/jpeg", stored)  # untouched


def test_progressive_jpegs_with_many_scans_pass_the_structure_check() -> None:
    noise = Image.effect_noise((300, 200), 80).convert("RGB")
    data = _encoded(noise, "JPEG", progressive=True, quality=90)
    assert verify_upload(data, 1_000_000, "image") == ("image/jpeg", data)
