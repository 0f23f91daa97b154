"""The built-in offline renderer as a provider: no network, no key, deterministic output.

It draws abstract art from the prompt (``abstract_art.render_artwork``); it is not a generative
model. Image ``i`` of a request uses seed ``seed + i``, so one request's images differ from each
other while the same request always gives the same bytes.
"""

from __future__ import annotations

import asyncio

from imagegate.catalog import Target
from imagegate.models import NormalizedRequest, ProviderResult, RawImage
from imagegate.providers.abstract_art import render_artwork
from imagegate.storage.images import encode


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
        image = render_artwork(request.prompt, seed, request.size.width, request.size.height)
        data = encode(image, request.output_format, request.output_compression)
        return RawImage(data=data, mime=request.output_format.mime)

    async def aclose(self) -> None:
        return None
