"""The OpenAI ``ImagesResponse`` body, built by hand: image bytes are base64-encoded once and
never re-parsed. Generations and finished jobs answer with the same shape."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence

from imagegate.models import Generation, ResponseFormat
from imagegate.services.generations import DeliveredImage


def images_payload(
    generation: Generation, images: Sequence[DeliveredImage], created: int | None = None
) -> dict[str, object]:
    params = generation.params
    as_b64 = params["response_format"] == ResponseFormat.B64_JSON.value
    data = [
        {
            "b64_json" if as_b64 else "url": (
                base64.b64encode(item.data).decode("ascii") if as_b64 else item.url
            ),
            "revised_prompt": item.image.revised_prompt,
        }
        for item in images
    ]
    return {
        "created": int(time.time()) if created is None else created,
        "data": data,
        "output_format": params["output_format"],
        # what was made: providers that take aspect ratios return their own pixel sizes
        "size": (f"{images[0].image.width}x{images[0].image.height}" if images else params["size"]),
        "quality": params["quality"],
    }
