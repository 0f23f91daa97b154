"""Image bytes in and out: verify what a provider returned, convert to the asked format.

All functions here are CPU-bound and blocking; callers run them in a worker thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from imagegate.errors import InvalidRequest, ProviderError
from imagegate.models import OutputFormat

DEFAULT_QUALITY = 90
"""JPEG/WebP quality when the request gives no ``output_compression``."""

PNG_COMPRESS_LEVEL = 3
"""zlib level for PNG: 3 is within a few percent of 6 in size for a fraction of the time."""

_PIL_FORMATS = {OutputFormat.PNG: "PNG", OutputFormat.JPEG: "JPEG", OutputFormat.WEBP: "WEBP"}


@dataclass(frozen=True, slots=True)
class PreparedImage:
    data: bytes
    width: int
    height: int


def encode(image: Image.Image, output_format: OutputFormat, compression: int | None) -> bytes:
    """Encode ``image``; ``compression`` is OpenAI's ``output_compression`` (100 = best quality)."""
    buffer = io.BytesIO()
    if output_format is OutputFormat.PNG:
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        if output_format is OutputFormat.JPEG and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        quality = DEFAULT_QUALITY if compression is None else max(1, compression)
        image.save(buffer, _PIL_FORMATS[output_format], quality=quality)
    return buffer.getvalue()


def prepare(
    data: bytes, output_format: OutputFormat, compression: int | None, max_pixels: int
) -> PreparedImage:
    """Verify ``data`` is a whole image and return it in ``output_format``.

    Bytes already in the asked format are kept as they are (no re-encoding, so no quality loss
    and no wasted CPU). Anything undecodable is a retryable ``ProviderError``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ProviderError(
                    f"provider returned a {width}x{height} image, "
                    f"above the {max_pixels} pixel limit"
                )
            if image.format == _PIL_FORMATS[output_format]:
                image.verify()
                return PreparedImage(data, width, height)
            image.load()
            return PreparedImage(encode(image, output_format, compression), width, height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ProviderError(f"provider returned bytes that are not a valid image: {exc}") from exc


_UPLOAD_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def inspect_upload(data: bytes, max_pixels: int, field: str) -> str:
    """The real MIME type of an uploaded image, read from its bytes (never from its name or
    declared type); refuses anything that is not a whole PNG, JPEG or WebP within ``max_pixels``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = _UPLOAD_MIMES.get(image.format or "")
            if kind is None:
                raise InvalidRequest(
                    f"{field} must be a PNG, JPEG or WebP image; got {image.format or 'unknown'}.",
                    param=field,
                    code="invalid_image_format",
                )
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidRequest(
                    f"{field} is {width}x{height}, above the {max_pixels} pixel limit.",
                    param=field,
                    code="image_too_large",
                )
            image.load()
            return kind
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidRequest(
            f"{field} is not a readable image (corrupt or truncated?).",
            param=field,
            code="invalid_image",
        ) from None
