"""The built-in offline renderer as a provider: no network, no key, deterministic output.

It draws abstract art from the prompt (``abstract_art.render_artwork``); it is not a generative
model. Image ``i`` of a request uses seed ``seed + i``, so one request's images differ from each
other while the same request always gives the same bytes. An edit blends the art over the first
reference image, so edit flows can be exercised offline too.
"""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from imagegate.catalog import Target
from imagegate.models import NormalizedRequest, ProviderResult, RawImage
from imagegate.providers.abstract_art import render_artwork
from imagegate.storage.images import encode

EDIT_BLEND = 0.45
"""How much of the art shows over a reference image in an edit (0 = only the reference)."""


class BuiltinProvider:
    name = "builtin"

    async def generate(self, request: NormalizedRequest, target: Target) -> ProviderResult:
        images = await asyncio.gather(
            *(asyncio.to_thread(self._render, request, index) for index in range(request.n))
        )
        return ProviderResult(
            provider=self.name, upstream_model=target.spec.upstream_model, images=tuple(images)
        )

    @staticmethod
    def _render(request: NormalizedRequest, index: int) -> RawImage:
        seed = (request.seed or 0) + index
        size = (request.size.width, request.size.height)
        image = render_artwork(request.prompt, seed, *size)
        if request.images:  # an "edit": the art laid over the first reference image
            with Image.open(io.BytesIO(request.images[0].data)) as reference:
                base = reference.convert("RGB").resize(size, Image.Resampling.BICUBIC)
            image = Image.blend(base, image, EDIT_BLEND)
        data = encode(image, request.output_format, request.output_compression)
        return RawImage(data=data, mime=request.output_format.mime)

    async def aclose(self) -> None:
        return None
