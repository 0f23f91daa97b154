"""Real image bytes for fakes: a flat image of the asked size and format, cached."""

from __future__ import annotations

import functools
import hashlib
import io

from PIL import Image

_PIL = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


@functools.lru_cache(maxsize=256)
def fake_image(width: int, height: int, fmt: str = "png", tint: str = "") -> bytes:
    """``width`` x ``height`` in ``fmt`` (png/jpeg/webp); ``tint`` varies the colour."""
    digest = hashlib.sha256(f"{width}x{height}:{tint}".encode()).digest()
    image = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    buffer = io.BytesIO()
    image.save(buffer, _PIL[fmt.lower()])
    return buffer.getvalue()
