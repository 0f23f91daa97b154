from __future__ import annotations

import base64
import io
import random
import struct
import zlib

import pytest
from PIL import Image, ImageStat

from imagegate.errors import InvalidRequest, ProviderError
from imagegate.models import OutputFormat
from imagegate.storage.base import is_valid_key
from imagegate.storage.images import (
    INLINE_CHECK_BYTES,
    cheap_to_prepare,
    detail_window,
    encode,
    inspect_upload,
    make_thumbnail,
    prepare,
    thumbnail_key_for,
)


def _png(width: int = 64, height: int = 48) -> bytes:
    return encode(Image.new("RGB", (width, height), (200, 30, 30)), OutputFormat.PNG, None)


def test_bytes_already_in_the_asked_format_are_kept_as_they_are() -> None:
    data = _png()
    prepared = prepare(data, OutputFormat.PNG, None, max_pixels=10_000)
    assert prepared.data is data
    assert (prepared.width, prepared.height) == (64, 48)


@pytest.mark.parametrize(
    ("output_format", "pil_name"), [(OutputFormat.JPEG, "JPEG"), (OutputFormat.WEBP, "WEBP")]
)
def test_other_formats_are_converted(output_format: OutputFormat, pil_name: str) -> None:
    prepared = prepare(_png(), output_format, 80, max_pixels=10_000)
    with Image.open(io.BytesIO(prepared.data)) as image:
        assert image.format == pil_name
        assert image.size == (64, 48)


def test_only_small_pngs_and_webps_in_the_asked_format_count_as_cheap_to_prepare() -> None:
    """What the service checks on the event loop instead of a thread: never a conversion."""
    png = _png()
    webp = encode(Image.new("RGB", (64, 48)), OutputFormat.WEBP, 80)
    jpeg = encode(Image.new("RGB", (64, 48)), OutputFormat.JPEG, 80)
    noise = Image.frombytes("RGB", (400, 300), random.Random(7).randbytes(400 * 300 * 3))
    large = encode(noise, OutputFormat.PNG, None)
    assert len(large) > INLINE_CHECK_BYTES
    assert cheap_to_prepare(png, OutputFormat.PNG)
    assert cheap_to_prepare(webp, OutputFormat.WEBP)
    assert not cheap_to_prepare(png, OutputFormat.WEBP)  # a conversion
    assert not cheap_to_prepare(webp, OutputFormat.PNG)
    assert not cheap_to_prepare(jpeg, OutputFormat.JPEG)  # decoded at 1/8 scale: not cheap
    assert not cheap_to_prepare(large, OutputFormat.PNG)
    assert not cheap_to_prepare(b"RIFF\x00\x00\x00\x00WAVE", OutputFormat.WEBP)


def test_rgba_converts_to_jpeg() -> None:
    rgba = encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), OutputFormat.PNG, None)
    prepared = prepare(rgba, OutputFormat.JPEG, None, max_pixels=10_000)
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGB"


@pytest.mark.parametrize("garbage", [b"", b"not an image", _png()[:40]])
def test_undecodable_bytes_are_a_retryable_provider_error(garbage: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        prepare(garbage, OutputFormat.PNG, None, max_pixels=10_000)
    assert caught.value.retryable


def test_images_above_the_pixel_limit_are_refused() -> None:
    with pytest.raises(ProviderError, match="pixel limit"):
        prepare(_png(200, 100), OutputFormat.PNG, None, max_pixels=19_999)


def test_lower_compression_setting_gives_smaller_jpeg() -> None:
    image = Image.effect_noise((128, 128), 64).convert("RGB")
    assert len(encode(image, OutputFormat.JPEG, 20)) < len(encode(image, OutputFormat.JPEG, 95))


def _bomb_png(width: int, height: int) -> bytes:
    """A real small PNG whose header claims ``width`` x ``height`` (CRC fixed up): what a
    decompression bomb looks like before anything is decoded."""
    data = bytearray(_png(8, 8))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def _half_detailed(width: int = 600, height: int = 200, detail_at: str = "right") -> bytes:
    """Flat grey, with a third of the picture full of noise on one side."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    band = min(width, height)
    noise = Image.effect_noise((band, band), 100).convert("RGB")
    if width > height:
        image.paste(noise, (width - band, 0) if detail_at == "right" else (0, 0))
    else:
        image.paste(noise, (0, height - band) if detail_at == "bottom" else (0, 0))
    return encode(image, OutputFormat.PNG, None)


def test_a_truncated_png_is_a_retryable_provider_error() -> None:
    whole = encode(Image.effect_noise((256, 256), 80).convert("RGB"), OutputFormat.PNG, None)
    for cut in (len(whole) // 2, len(whole) - 20):
        with pytest.raises(ProviderError, match="not a valid image") as caught:
            prepare(whole[:cut], OutputFormat.PNG, None, max_pixels=1_000_000)
        assert caught.value.retryable


def test_a_corrupt_png_body_is_refused() -> None:
    whole = bytearray(
        encode(Image.effect_noise((128, 128), 80).convert("RGB"), OutputFormat.PNG, None)
    )
    middle = len(whole) // 2
    whole[middle : middle + 16] = b"\x00" * 16
    with pytest.raises(ProviderError):
        prepare(bytes(whole), OutputFormat.WEBP, None, max_pixels=1_000_000)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _bomb_png(100_000, 100_000)  # ten giga-pixels declared in a few hundred bytes
    assert len(bomb) < 1000
    with pytest.raises(ProviderError, match="pixel limit"):
        prepare(bomb, OutputFormat.PNG, None, max_pixels=40_000_000)


def test_an_uploaded_bomb_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        inspect_upload(_bomb_png(20_000, 20_000), max_pixels=40_000_000, field="image")
    assert caught.value.code in ("image_too_large", "invalid_image")
    assert caught.value.param == "image"


def test_a_truncated_upload_is_an_invalid_request() -> None:
    whole = encode(Image.effect_noise((128, 128), 80).convert("RGB"), OutputFormat.PNG, None)
    with pytest.raises(InvalidRequest) as caught:
        inspect_upload(whole[: len(whole) // 2], max_pixels=1_000_000, field="mask")
    assert (caught.value.code, caught.value.param) == ("invalid_image", "mask")


@pytest.mark.parametrize("source", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("target", list(OutputFormat))
def test_every_format_converts_to_every_format(source: str, target: OutputFormat) -> None:
    image = Image.effect_noise((80, 60), 50).convert("RGB")
    prepared = prepare(encode(image, OutputFormat(source), None), target, 70, max_pixels=10_000)
    with Image.open(io.BytesIO(prepared.data)) as result:
        assert result.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[target.value]
        assert result.size == (80, 60) == (prepared.width, prepared.height)


def test_output_compression_sets_webp_quality() -> None:
    image = encode(Image.effect_noise((128, 128), 64).convert("RGB"), OutputFormat.PNG, None)
    small = prepare(image, OutputFormat.WEBP, 10, max_pixels=100_000)
    large = prepare(image, OutputFormat.WEBP, 95, max_pixels=100_000)
    assert len(small.data) < len(large.data)


def test_transparent_png_converts_to_webp_keeping_alpha() -> None:
    rgba = encode(Image.new("RGBA", (32, 32), (10, 200, 10, 0)), OutputFormat.PNG, None)
    prepared = prepare(rgba, OutputFormat.WEBP, None, max_pixels=10_000)
    with Image.open(io.BytesIO(prepared.data)) as image:
        assert image.mode == "RGBA"


@pytest.mark.parametrize("size", [(600, 200), (256, 256), (100, 900), (1024, 1024)])
def test_the_thumbnail_is_a_300_pixel_square_webp(size: tuple[int, int]) -> None:
    made = make_thumbnail(_png(*size), max_pixels=2_000_000)
    with Image.open(io.BytesIO(made.data)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (300, 300))


@pytest.mark.parametrize(
    ("size", "detail_at"), [((600, 200), "right"), ((600, 200), "left"), ((200, 600), "bottom")]
)
def test_the_thumbnail_crops_to_the_detailed_region(size: tuple[int, int], detail_at: str) -> None:
    made = make_thumbnail(_half_detailed(*size, detail_at), 1_000_000)
    with Image.open(io.BytesIO(made.data)) as thumb:
        spread = ImageStat.Stat(thumb.convert("L")).stddev[0]
    # A centre crop would be flat grey (spread ~0); the noise band has a spread near 50.
    assert spread > 30


def test_the_window_is_centred_on_a_flat_picture() -> None:
    with Image.open(io.BytesIO(_png(900, 300))) as image:
        assert detail_window(image) == (300, 0, 600, 300)


def test_the_window_follows_the_detail() -> None:
    with Image.open(io.BytesIO(_half_detailed(600, 200, "left"))) as image:
        image.load()
        assert detail_window(image) == (0, 0, 200, 200)
    with Image.open(io.BytesIO(_half_detailed(200, 600, "bottom"))) as image:
        image.load()
        assert detail_window(image) == (0, 400, 200, 600)


def test_the_placeholder_is_a_tiny_webp_data_uri() -> None:
    jpeg = prepare(_png(640, 480), OutputFormat.JPEG, None, max_pixels=1_000_000).data
    placeholder = make_thumbnail(jpeg, max_pixels=1_000_000).placeholder
    header, _, payload = placeholder.partition(",")
    assert header == "data:image/webp;base64"
    with Image.open(io.BytesIO(base64.b64decode(payload))) as tiny:
        assert (tiny.format, tiny.size) == ("WEBP", (16, 16))
    assert len(placeholder) < 400


def _noise(fmt: OutputFormat, size: tuple[int, int] = (256, 256)) -> bytes:
    return encode(Image.effect_noise(size, 80).convert("RGB"), fmt, None)


@pytest.mark.parametrize("fmt", [OutputFormat.JPEG, OutputFormat.WEBP])
def test_a_truncated_image_in_the_asked_format_is_refused(fmt: OutputFormat) -> None:
    whole = _noise(fmt)
    for cut in (len(whole) // 2, len(whole) - 10):
        with pytest.raises(ProviderError, match="not a valid image"):
            prepare(whole[:cut], fmt, None, max_pixels=1_000_000)


def test_a_corrupt_png_kept_as_png_is_refused() -> None:
    """Bytes kept as they are still have every chunk checked (CRC), not just the header."""
    whole = bytearray(_noise(OutputFormat.PNG, (128, 128)))
    middle = len(whole) // 2
    whole[middle : middle + 16] = b"\x00" * 16
    with pytest.raises(ProviderError):
        prepare(bytes(whole), OutputFormat.PNG, None, max_pixels=1_000_000)


def test_a_large_jpeg_thumbnail_is_made_from_a_reduced_decode() -> None:
    made = make_thumbnail(_noise(OutputFormat.JPEG, (2400, 1600)), max_pixels=10_000_000)
    with Image.open(io.BytesIO(made.data)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (300, 300))


def test_an_undecodable_stored_image_has_no_thumbnail() -> None:
    with pytest.raises(ValueError, match="not a valid image"):
        make_thumbnail(b"not an image", max_pixels=1_000_000)
    with pytest.raises(ValueError, match="pixel limit"):
        make_thumbnail(_png(200, 100), max_pixels=19_999)


def test_the_thumbnail_key_is_a_storage_key_of_its_own_fixed_by_the_image() -> None:
    image_key = "ab" * 32 + ".png"
    key = thumbnail_key_for(image_key)
    assert is_valid_key(key)
    assert key.endswith(".webp")
    assert key == thumbnail_key_for("ab" * 32 + ".jpeg")  # same bytes in a record: one thumbnail
    assert key != thumbnail_key_for("cd" * 32 + ".png")
    assert key.partition(".")[0] != image_key.partition(".")[0]
