from __future__ import annotations

import io

import pytest
from PIL import Image

from imagegate.errors import ProviderError
from imagegate.models import OutputFormat
from imagegate.storage.images import encode, prepare


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
