"""The JSON shapes of Google's two image request styles: pure body builders and parsers.

``google.py`` picks the style per model and owns URLs, credentials and errors; this module only
knows what goes in a body and what comes out of one. Google's proto3 JSON may spell any field in
camelCase or snake_case, so every read goes through ``field``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from imagegate.catalog import Target, nearest_aspect_ratio
from imagegate.errors import ContentPolicyViolation, ProviderError
from imagegate.models import NormalizedRequest, OutputFormat, RawImage

GEMINI_API_REJECTS = frozenset(
    {"seed", "negativePrompt", "addWatermark", "enhancePrompt", "labels", "storageUri"}
)
"""Imagen parameters only Vertex takes; the Gemini API answers 400 to any of them, so they are
dropped there even when a route's ``params`` set them."""

SAFETY_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        # Recitation (output too close to protected material) recurs for the same prompt, so a
        # retry would only pay again for the same refusal.
        "RECITATION",
        "IMAGE_RECITATION",
    }
)
"""Gemini finish reasons that mean "refused": a candidate ending so with no image is a policy
block. Other reasons without an image (``NO_IMAGE``, ``OTHER``, ``STOP``) are worth a retry."""

Json = dict[str, Any]

# --- Imagen :predict ---------------------------------------------------------------------------


def imagen_body(request: NormalizedRequest, target: Target, vertex: bool) -> Json:
    """``instances`` + ``parameters``; ``vertex`` decides which parameters may be sent."""
    spec = target.spec
    wanted = spec.upstream_format(request.output_format)
    output_options: Json = {"mimeType": wanted.mime}
    if wanted is OutputFormat.JPEG and request.output_compression is not None:
        output_options["compressionQuality"] = request.output_compression
    parameters: Json = {
        "sampleCount": request.n,
        "aspectRatio": nearest_aspect_ratio(request.size, spec.aspect_ratios),
        "outputOptions": output_options,
        "includeRaiReason": True,
    }
    if request.seed is not None and spec.supports_seed:
        parameters.update(seed=request.seed, addWatermark=False)
    if request.negative_prompt and spec.supports_negative_prompt:
        parameters["negativePrompt"] = request.negative_prompt
    parameters = merged(parameters, target.params)
    if not vertex:
        parameters = {k: v for k, v in parameters.items() if k not in GEMINI_API_REJECTS}
    elif parameters.get("addWatermark", True) is not False:
        parameters.pop("seed", None)  # Vertex refuses a seed on watermarked images
    return {"instances": [{"prompt": request.prompt}], "parameters": parameters}


def imagen_images(
    body: Json, request: NormalizedRequest, provider: str
) -> tuple[list[RawImage], dict[str, int] | None]:
    predictions = [p for p in body.get("predictions") or () if isinstance(p, dict)]
    images: list[RawImage] = []
    filtered: list[str] = []
    for prediction in predictions:
        encoded = field(prediction, "bytesBase64Encoded", "bytes_base64_encoded")
        if encoded:
            mime = field(prediction, "mimeType", "mime_type") or "image/png"
            revised = prediction.get("prompt")  # Vertex: the enhanced prompt
            images.append(
                RawImage(decoded(encoded, provider), str(mime), str(revised) if revised else None)
            )
        elif reason := field(prediction, "raiFilteredReason", "rai_filtered_reason"):
            filtered.append(str(reason))  # Imagen drops filtered images; the rest still count
    if not images and (filtered or not predictions):
        reason = filtered[0] if filtered else "every image was filtered"
        raise ContentPolicyViolation(
            f"{provider} refused to generate this image: {reason}", param="prompt"
        )
    if not images:
        raise ProviderError(f"{provider} returned predictions without image bytes")
    return images, None


# --- Gemini :generateContent -------------------------------------------------------------------


def gemini_body(request: NormalizedRequest, target: Target, vertex: bool) -> Json:
    """The prompt, then each reference image as an ``inlineData`` part. The Vertex-only
    ``imageConfig`` fields (``outputMimeType``, ``personGeneration``) are left to ``params``."""
    parts: list[Json] = [{"text": request.prompt}]
    parts += [
        {"inlineData": {"mimeType": image.mime, "data": base64.b64encode(image.data).decode()}}
        for image in request.images
    ]
    body: Json = {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {
                "aspectRatio": nearest_aspect_ratio(request.size, target.spec.aspect_ratios)
            },
        },
    }
    return merged(body, target.params)


def gemini_images(
    body: Json, request: NormalizedRequest, provider: str
) -> tuple[list[RawImage], dict[str, int] | None]:
    images: list[RawImage] = []
    finish_reasons: list[str] = []
    for candidate in body.get("candidates") or ():
        content = field(candidate, "content", "content")
        for part in field(content, "parts", "parts") or ():
            inline = field(part, "inlineData", "inline_data")
            if isinstance(inline, dict) and inline.get("data"):
                mime = field(inline, "mimeType", "mime_type") or "image/png"
                images.append(RawImage(decoded(inline["data"], provider), str(mime)))
        if reason := field(candidate, "finishReason", "finish_reason"):
            finish_reasons.append(str(reason))
    if not images:
        feedback = field(body, "promptFeedback", "prompt_feedback") or {}
        block = field(feedback, "blockReason", "block_reason")
        refusal = block or next((r for r in finish_reasons if r in SAFETY_FINISH_REASONS), None)
        if refusal:
            raise ContentPolicyViolation(
                f"{provider} refused to generate this image ({refusal})", param="prompt"
            )
        ended = f" (finish reason {', '.join(finish_reasons)})" if finish_reasons else ""
        raise ProviderError(f"{provider} returned no image{ended}")
    return images, _gemini_usage(field(body, "usageMetadata", "usage_metadata"))


def _gemini_usage(meta: Any) -> dict[str, int] | None:
    """Token counts under the names ``ModelSpec.cost_micro_usd`` prices (OpenAI's, flattened)."""
    if not isinstance(meta, dict):
        return None
    prompt = int(field(meta, "promptTokenCount", "prompt_token_count") or 0)
    answer = int(field(meta, "candidatesTokenCount", "candidates_token_count") or 0)
    total = int(field(meta, "totalTokenCount", "total_token_count") or prompt + answer)
    by_input = _by_modality(field(meta, "promptTokensDetails", "prompt_tokens_details"))
    by_output = _by_modality(field(meta, "candidatesTokensDetails", "candidates_tokens_details"))
    return {
        "input_tokens": prompt,
        "output_tokens": by_output.get("IMAGE", answer),  # the image tokens are what is billed
        "total_tokens": total,
        "input_text_tokens": by_input.get("TEXT", prompt if not by_input else 0),
        "input_image_tokens": by_input.get("IMAGE", 0),
    }


def _by_modality(details: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in details if isinstance(details, list) else ():
        if isinstance(entry, dict) and entry.get("modality"):
            counts[str(entry["modality"])] = int(field(entry, "tokenCount", "token_count") or 0)
    return counts


# --- Shared by both styles -----------------------------------------------------------------------


def field(mapping: Any, camel: str, snake: str) -> Any:
    """A Google JSON field under either spelling (proto3 JSON allows both)."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(camel, mapping.get(snake))


def decoded(encoded: Any, provider: str) -> bytes:
    try:
        return base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(f"{provider} returned image data that is not base64") from None


def merged(base: Json, overrides: Mapping[str, object]) -> Json:
    """``base`` with ``overrides`` applied last, nested objects merged key by key, so a route's
    ``params`` can set ``outputOptions.compressionQuality`` without losing ``mimeType``."""
    result = dict(base)
    for key, value in overrides.items():
        current = result.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            result[key] = merged(current, value)
        else:
            result[key] = value
    return result
