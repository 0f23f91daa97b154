from __future__ import annotations

import io

from PIL import Image

from imagegate.catalog import Catalog, Target
from imagegate.fingerprint import normalize_request
from imagegate.models import GenerationRequest, OutputFormat
from imagegate.providers.builtin import BuiltinProvider

SPEC = Catalog.load().get("builtin")
TARGET = Target(spec=SPEC, provider="builtin")


def _request(**fields: object) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red fox", "size": "256x256", **fields})  # type: ignore[arg-type]


async def test_same_request_same_bytes_and_images_of_one_request_differ() -> None:
    provider = BuiltinProvider()
    request = normalize_request(_request(n=3, seed=7), SPEC)
    first = await provider.generate(request, TARGET)
    again = await provider.generate(request, TARGET)
    assert [i.data for i in first.images] == [i.data for i in again.images]
    assert len({i.data for i in first.images}) == 3
    assert first.provider == "builtin"
    assert first.cost_micro_usd == 0


async def test_honours_size_and_output_format() -> None:
    provider = BuiltinProvider()
    for output_format, pil_name in (
        (OutputFormat.PNG, "PNG"),
        (OutputFormat.JPEG, "JPEG"),
        (OutputFormat.WEBP, "WEBP"),
    ):
        request = normalize_request(_request(size="1536x1024", output_format=output_format), SPEC)
        (image,) = (await provider.generate(request, TARGET)).images
        decoded = Image.open(io.BytesIO(image.data))
        assert decoded.format == pil_name
        assert decoded.size == (1536, 1024)
        assert image.mime == output_format.mime
