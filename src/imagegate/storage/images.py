"""Image bytes in and out: verify what a provider returned, convert to the asked format.

All functions here are CPU-bound and blocking; callers run them in a worker thread.
"""

from __future__ import annotations

import array
import base64
import contextlib
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

# The three formats served, registered by importing their plugins: Pillow otherwise loads all
# of its ~45 format plugins (about 3.5 MiB resident, for good) the first time it is asked for
# a format its short default list lacks, as saving a WebP thumbnail does.
from PIL import JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401  # isort: skip

from imagegate.errors import InvalidRequest, ProviderError
from imagegate.models import OutputFormat

DEFAULT_QUALITY = 90
"""JPEG/WebP quality when the request gives no ``output_compression``."""

PNG_COMPRESS_LEVEL = 3
"""zlib level for PNG: 3 is within a few percent of 6 in size for a fraction of the time."""

_PIL_FORMATS = {OutputFormat.PNG: "PNG", OutputFormat.JPEG: "JPEG", OutputFormat.WEBP: "WEBP"}


THUMBNAIL_SIDE = 300
THUMBNAIL_VERSION = "thumbnail-v1"
"""Part of every thumbnail key: a new thumbnail recipe gets new keys (and URLs)."""
THUMBNAIL_QUALITY = 80
PLACEHOLDER_SIDE = 16
EDGE_SAMPLE_SIDE = 128
"""Smart crops look for detail on a copy this big (longest side): plenty to find where the
detail is, and a few hundred microseconds of work."""

_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


@dataclass(frozen=True, slots=True)
class PreparedImage:
    data: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    """A ``THUMBNAIL_SIDE`` square WebP, cropped where the picture has the most detail."""
    placeholder: str
    """A ``PLACEHOLDER_SIDE`` pixel WebP of the thumbnail as a ``data:`` URI (blur-up)."""


def thumbnail_key_for(storage_key: str) -> str:
    """The storage key of ``storage_key``'s thumbnail, known before the thumbnail is made.

    Derived from the image's content hash (not the thumbnail's own bytes), so a record can be
    committed with its thumbnail's URL while the thumbnail is made in the background, and a
    missing thumbnail can be made again from its image under the same permanent URL.
    """
    digest = hashlib.sha256(f"{THUMBNAIL_VERSION}:{storage_key.partition('.')[0]}".encode())
    return f"{digest.hexdigest()}.webp"


def encode(image: Image.Image, output_format: OutputFormat, compression: int | None) -> bytes:
    """Encode ``image``; ``compression`` is OpenAI's ``output_compression`` (100 = best quality)."""
    buffer = io.BytesIO()
    if output_format is OutputFormat.PNG:
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        if output_format is OutputFormat.JPEG and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        elif output_format is OutputFormat.WEBP and image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
        quality = DEFAULT_QUALITY if compression is None else max(1, compression)
        image.save(buffer, _PIL_FORMATS[output_format], quality=quality)
    return buffer.getvalue()


def prepare(
    data: bytes, output_format: OutputFormat, compression: int | None, max_pixels: int
) -> PreparedImage:
    """Verify ``data`` is a whole image, return it in ``output_format``.

    Its declared size is checked against ``max_pixels`` first, so a decompression bomb is
    refused before any pixel is decoded. Bytes already in the asked format are kept as they are
    (no re-encoding: no quality loss, no wasted CPU) after a structural check that catches
    truncated and corrupt files without decoding every pixel (``check_whole``); bytes in another
    format are decoded in full and converted. Anything unreadable is a retryable
    ``ProviderError``: another attempt (or provider) may return a whole image.
    """
    with (
        _readable("provider returned", max_pixels, ProviderError),
        Image.open(io.BytesIO(data)) as image,
    ):
        width, height = image.size
        if width * height > max_pixels:
            raise ProviderError(
                f"provider returned a {width}x{height} image, above the {max_pixels} pixel limit"
            )
        if image.format == _PIL_FORMATS[output_format]:
            check_whole(image, data)
            return PreparedImage(data, width, height)
        image.load()
        return PreparedImage(encode(image, output_format, compression), width, height)


INLINE_CHECK_BYTES = 256 * 1024
"""Up to this size a PNG or WebP already in the asked format is checked on the event loop: its
check (CRCs, a RIFF size) takes tens of microseconds there, less than the thread hop it would
otherwise cost. Larger images, JPEG (decoded at 1/8 scale) and conversions go to a thread."""

_MAGIC = {OutputFormat.PNG: b"\x89PNG\r\n\x1a\n", OutputFormat.WEBP: b"RIFF"}


def cheap_to_prepare(data: bytes, output_format: OutputFormat) -> bool:
    """Whether ``prepare(data, output_format, ...)`` is only a cheap structural check."""
    magic = _MAGIC.get(output_format)
    if magic is None or len(data) > INLINE_CHECK_BYTES or not data.startswith(magic):
        return False
    return output_format is not OutputFormat.WEBP or data[8:12] == b"WEBP"


def check_whole(image: Image.Image, data: bytes) -> None:
    """Refuse a truncated or corrupt ``image`` (opened from ``data``) cheaply; spends ``image``.

    PNG: every chunk's CRC and the closing IEND chunk (``verify``), in microseconds. JPEG: the
    whole entropy-coded stream is decoded at 1/8 scale (``draft``), which fails on a truncated
    file at a fifth of the cost of a full decode. WebP: the RIFF size must match the bytes
    (Pillow's WebP decoder already refused a broken container when opening). Other formats are
    decoded in full.
    """
    if image.format == "PNG":
        image.verify()
    elif image.format == "JPEG":
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    elif image.format == "WEBP":
        if len(data) < 12 or int.from_bytes(data[4:8], "little") + 8 != len(data):
            raise ValueError("the RIFF size does not match the file: truncated WebP")
    else:
        image.load()


def make_thumbnail(data: bytes, max_pixels: int) -> Thumbnail:
    """The thumbnail and blur-up placeholder of the stored image ``data``.

    Decodes ``data`` (a JPEG at the smallest DCT scale that still covers the thumbnail), so this
    costs milliseconds for a large image: run it in the background, never on a request's path.
    """
    with (
        _readable("the stored image holds", max_pixels, ValueError),
        Image.open(io.BytesIO(data)) as image,
    ):
        if image.width * image.height > max_pixels:
            raise ValueError(f"{image.width}x{image.height} is above the pixel limit")
        if image.format == "JPEG":
            scale = max(1, min(image.width, image.height) // THUMBNAIL_SIDE)
            image.draft(image.mode, (image.width // scale, image.height // scale))
        image.load()
        thumb = thumbnail(image)
    return Thumbnail(_webp(thumb, THUMBNAIL_QUALITY), placeholder(thumb))


@contextlib.contextmanager
def _readable(what: str, max_pixels: int, error: type[Exception]) -> Iterator[None]:
    """Pillow's many ways of saying "not an image" as one ``error``."""
    try:
        yield
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its limit
        raise error(f"{what} an image above the {max_pixels} pixel limit: {exc}") from exc
    except _UNREADABLE as exc:
        raise error(f"{what} bytes that are not a valid image: {exc}") from exc


def detail_window(image: Image.Image) -> tuple[int, int, int, int]:
    """The largest square of ``image`` holding the most detail, as a crop box.

    Detail is edge energy: a grayscale copy at most ``EDGE_SAMPLE_SIDE`` pixels long is run
    through an edge filter (``FIND_EDGES``, a Laplacian), its one-pixel border dropped (the
    filter leaves it unfiltered), and averaged across the short side into a profile along the
    long side. The square slides along that profile and stops where it covers the most energy;
    among equal windows (a flat picture) the one nearest the centre wins.
    """
    width, height = image.size
    side = min(width, height)
    if width == height:
        return (0, 0, width, height)
    scale = EDGE_SAMPLE_SIDE / max(width, height)
    small_size = (max(3, round(width * scale)), max(3, round(height * scale)))
    gray = image.convert("L").resize(small_size, Image.Resampling.BOX)
    edges = gray.filter(ImageFilter.FIND_EDGES).crop((1, 1, small_size[0] - 1, small_size[1] - 1))
    wide = width > height
    length = edges.size[0] if wide else edges.size[1]
    profile = edges.convert("F").resize((length, 1) if wide else (1, length), Image.Resampling.BOX)
    energy = array.array("f", profile.tobytes())  # mode F: one float32 per pixel
    long_side = max(width, height)
    window = max(1, min(length, round(side / long_side * length)))
    running = [0.0]
    for value in energy:
        running.append(running[-1] + value)
    starts = range(length - window + 1)
    centre = (length - window) / 2
    best = max(starts, key=lambda i: (round(running[i + window] - running[i], 3), -abs(i - centre)))
    offset = min(long_side - side, max(0, round(best / length * long_side)))
    return (offset, 0, offset + side, side) if wide else (0, offset, side, offset + side)


def thumbnail(image: Image.Image) -> Image.Image:
    """``image`` as a ``THUMBNAIL_SIDE`` square, cropped by ``detail_window``."""
    mode = "RGBA" if image.has_transparency_data else "RGB"
    source = image if image.mode == mode else image.convert(mode)
    return source.resize(
        (THUMBNAIL_SIDE, THUMBNAIL_SIDE),
        Image.Resampling.LANCZOS,
        box=detail_window(source),
        reducing_gap=1.5,  # reduce() by whole factors first: 2-3x faster, as sharp at 300 px
    )


def placeholder(thumb: Image.Image) -> str:
    """A tiny copy of the thumbnail as a data URI: a browser stretches it into a blur."""
    tiny = thumb.resize((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), Image.Resampling.BOX)
    return "data:image/webp;base64," + base64.b64encode(_webp(tiny, 40)).decode("ascii")


def _webp(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    # method 2 of 0-6: measured 1.8 ms for a 300 px thumbnail against 4.9 ms (3) and 8.7 ms
    # (4, the default), for files a few percent larger
    image.save(buffer, "WEBP", quality=quality, method=2)
    return buffer.getvalue()


_UPLOAD_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_UPLOAD_FORMATS = {"PNG": OutputFormat.PNG, "JPEG": OutputFormat.JPEG, "WEBP": OutputFormat.WEBP}
_ACTIVE_CONTENT = re.compile(
    rb"<(?:!doctype|html|head|body|script|iframe|svg|object|embed|\?php)[\s>/]|%PDF-",
    re.IGNORECASE,
)
"""What makes an image file also a page, a script or a document to something that sniffs."""
ORIENTATION_TAG = 0x0112


def _image_end(data: bytes, image_format: str) -> int | None:
    """Where the image's own structure ends (its last byte + 1), or None if it never does."""
    if image_format == "PNG":
        at = 8
        while at + 12 <= len(data):
            length = int.from_bytes(data[at : at + 4], "big")
            kind = data[at + 4 : at + 8]
            at += 12 + length
            if kind == b"IEND":
                return at if at <= len(data) else None
        return None
    if image_format == "WEBP":
        size = int.from_bytes(data[4:8], "little")
        return 8 + size + (size & 1)
    return _jpeg_end(data)


def _jpeg_end(data: bytes) -> int | None:
    """The offset after the EOI marker ending a JPEG's last scan (segments walked by length,
    entropy-coded data skipped to its next real marker)."""
    at = 2  # after SOI
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:
            return at + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > len(data):
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            while True:
                at = data.find(b"\xff", at)
                if at < 0 or at + 1 >= len(data):
                    return None
                following = data[at + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    at += 1 if following == 0xFF else 2
                    continue
                break
    return None


def _refuse(message: str, field: str, code: str = "invalid_image") -> InvalidRequest:
    return InvalidRequest(f"{field} {message}", param=field, code=code)


def verify_upload(data: bytes, max_pixels: int, field: str) -> tuple[str, bytes]:
    """An uploaded image's real MIME type, read from its bytes (never from its name or declared
    type), and the bytes to use: the same bytes, or the image turned upright when its EXIF
    orientation says it is stored rotated or mirrored (re-encoded, orientation reset).

    Refused (400, ``param`` = ``field``): anything but a whole PNG, JPEG or WebP; more than
    ``max_pixels`` declared (checked before decoding: decompression bombs); truncated or corrupt
    data; bytes after the image's end (a ZIP, HTML or script appended); a file that is at the
    same time a ZIP archive or carries HTML, script or PDF markers (polyglots).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            kind = _UPLOAD_MIMES.get(image_format)
            if kind is None:
                raise _refuse(
                    f"must be a PNG, JPEG or WebP image; got {image_format or 'unknown'}.",
                    field,
                    "invalid_image_format",
                )
            width, height = image.size
            if width * height > max_pixels:
                raise _refuse(
                    f"is {width}x{height}, above the {max_pixels} pixel limit.",
                    field,
                    "image_too_large",
                )
            image.load()
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            upright = ImageOps.exif_transpose(image) if orientation not in (1, None) else None
        if image_format == "PNG":
            with Image.open(io.BytesIO(data)) as again:
                again.verify()  # chunk CRCs
    except InvalidRequest:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard, raised by open() itself
        raise _refuse(
            f"declares more than the {max_pixels} pixel limit.", field, "image_too_large"
        ) from None
    except _UNREADABLE:
        raise _refuse("is not a readable image (corrupt or truncated?).", field) from None
    end = _image_end(data, image_format)
    if end is None:
        raise _refuse("is not a readable image (corrupt or truncated?).", field)
    if end != len(data):
        raise _refuse(
            f"has {len(data) - end} bytes after the end of the image; refused as a possible "
            "polyglot file.",
            field,
            "polyglot_image",
        )
    if zipfile.is_zipfile(io.BytesIO(data)) or _ACTIVE_CONTENT.search(data):
        raise _refuse(
            "is also readable as an archive, page or document; refused as a polyglot file.",
            field,
            "polyglot_image",
        )
    if upright is None:
        return kind, data
    return kind, encode(upright, _UPLOAD_FORMATS[image_format], 95)


def inspect_upload(data: bytes, max_pixels: int, field: str) -> str:
    """The real MIME type of an uploaded image (see ``verify_upload``)."""
    return verify_upload(data, max_pixels, field)[0]
