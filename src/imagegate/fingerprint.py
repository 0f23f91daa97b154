"""Request normalization and the cache key: pure functions, no I/O.

Two requests that must produce the same picture normalize to the same ``NormalizedRequest`` and
so to the same ``cache_key``: the prompt is trimmed and its whitespace collapsed (case is kept:
it can matter to models), ``auto`` and missing values become the model's defaults, and sizes take
one canonical ``WxH`` form. Everything a model cannot honour is refused here, with the field named.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

import orjson

from imagegate.catalog import ModelSpec, parse_size
from imagegate.errors import InvalidRequest, UnsupportedParameter
from imagegate.models import (
    GenerationRequest,
    NormalizedRequest,
    OutputFormat,
    RequestKind,
    Size,
)

AUTO = "auto"
CACHE_KEY_VERSION = 1
# Upstreams take 32-bit unsigned seeds; the cache key can hold at most 64-bit integers.
MAX_SEED = 2**32 - 1
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def normalize_prompt(prompt: str) -> str:
    """Trim and collapse every run of whitespace (any Unicode whitespace) to one space."""
    return " ".join(prompt.split())


def check_text(text: str, field: str) -> None:
    """Refuse control characters (other than tab and newlines) and lone surrogates, which no
    model draws from and which cannot be encoded as UTF-8 for the cache key or the upstream."""
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in _ALLOWED_CONTROLS) or category == "Cs":
            raise InvalidRequest(
                f"The {field} contains the control character or invalid code point "
                f"U+{ord(char):04X} at position {position}; remove it.",
                param=field,
                code="invalid_characters",
            )


def _choices(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _normalize_size(size: str | None, spec: ModelSpec) -> Size:
    if size is None or size.strip().lower() == AUTO:
        return spec.default_size
    try:
        parsed = parse_size(size)
    except ValueError:
        parsed = None
    if parsed not in spec.sizes:
        raise InvalidRequest(
            f"The size {size!r} is not supported by model {spec.name!r}. "
            f"Supported sizes: {_choices(spec.sizes)}, auto.",
            param="size",
            code="invalid_size",
        )
    return parsed


def _pick(value: str | None, allowed: tuple[str, ...], default: str, field: str, model: str) -> str:
    if value is None or (value == AUTO and AUTO not in allowed):
        return default
    if value not in allowed:
        raise InvalidRequest(
            f"Invalid {field} {value!r} for model {model!r}. "
            f"Supported values: {_choices(allowed)}.",
            param=field,
        )
    return value


def _optional_choice(
    value: str | None, allowed: tuple[str, ...], field: str, model: str
) -> str | None:
    if value is None:
        return None
    if not allowed:
        raise UnsupportedParameter(
            f"The parameter {field!r} is not supported by model {model!r}.", param=field
        )
    return _pick(value, allowed, allowed[0], field, model)


def normalize_request(request: GenerationRequest, spec: ModelSpec) -> NormalizedRequest:
    """Check ``request`` against the model's limits and fill in its defaults."""
    check_text(request.prompt, "prompt")
    prompt = normalize_prompt(request.prompt)
    if not prompt:
        raise InvalidRequest("The prompt must not be empty.", param="prompt", code="empty_prompt")
    if len(prompt) > spec.max_prompt_chars:
        raise InvalidRequest(
            f"The prompt is {len(prompt)} characters long; model {spec.name!r} accepts at most "
            f"{spec.max_prompt_chars}.",
            param="prompt",
            code="prompt_too_long",
        )
    if not 1 <= request.n <= spec.max_n:
        raise InvalidRequest(
            f"n must be between 1 and {spec.max_n} for model {spec.name!r}; got {request.n}.",
            param="n",
        )
    output_format = request.output_format or spec.default_output_format
    if output_format not in spec.output_formats:
        raise InvalidRequest(
            f"Invalid output_format {output_format.value!r} for model {spec.name!r}. "
            f"Supported values: {_choices(f.value for f in spec.output_formats)}.",
            param="output_format",
        )
    if request.response_format not in spec.response_formats:
        raise UnsupportedParameter(
            f"response_format {request.response_format.value!r} is not supported by model "
            f"{spec.name!r}.",
            param="response_format",
        )
    compression = request.output_compression
    if compression is not None and not 0 <= compression <= 100:
        raise InvalidRequest(
            f"output_compression must be between 0 and 100; got {compression}.",
            param="output_compression",
        )
    if output_format is OutputFormat.PNG:
        # PNG is lossless: the setting means nothing and must not split the cache.
        compression = None
    kind = _check_inputs(request, spec)
    if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
        raise InvalidRequest(
            f"seed must be between 0 and {MAX_SEED}; got {request.seed}.", param="seed"
        )
    if request.seed is not None and not spec.supports_seed:
        raise UnsupportedParameter(
            f"The parameter 'seed' is not supported by model {spec.name!r}.", param="seed"
        )
    return NormalizedRequest(
        model=spec.name,
        prompt=prompt,
        n=request.n,
        size=_normalize_size(request.size, spec),
        quality=_pick(request.quality, spec.qualities, spec.default_quality, "quality", spec.name),
        output_format=output_format,
        output_compression=compression,
        style=_optional_choice(request.style, spec.styles, "style", spec.name),
        background=_optional_choice(request.background, spec.backgrounds, "background", spec.name),
        seed=request.seed,
        response_format=request.response_format,
        kind=kind,
        negative_prompt=_optional_text(request.negative_prompt, spec, "negative_prompt"),
        images=request.images,
        mask=request.mask,
        strength=request.strength,
    )


def _optional_text(value: str | None, spec: ModelSpec, field: str) -> str | None:
    if value is None:
        return None
    check_text(value, field)
    if not (text := normalize_prompt(value)):
        return None
    if not spec.supports_negative_prompt:
        raise UnsupportedParameter(
            f"The parameter {field!r} is not supported by model {spec.name!r}.", param=field
        )
    return text


def _check_inputs(request: GenerationRequest, spec: ModelSpec) -> RequestKind:
    """Reference images make an edit; the model must take edits, that many images, a mask."""
    if request.mask is not None and not request.images:
        raise InvalidRequest("A mask needs an image to apply to.", param="mask")
    if not request.images:
        if request.strength is not None:
            raise InvalidRequest("strength applies only to edits of an image.", param="strength")
        return RequestKind.GENERATE
    if RequestKind.EDIT not in spec.kinds:
        raise UnsupportedParameter(
            f"Model {spec.name!r} does not take reference images (it only generates from text).",
            param="image",
        )
    if len(request.images) > spec.max_input_images:
        raise InvalidRequest(
            f"Model {spec.name!r} takes at most {spec.max_input_images} image(s); "
            f"got {len(request.images)}.",
            param="image",
        )
    if request.mask is not None and not spec.supports_mask:
        raise UnsupportedParameter(f"Model {spec.name!r} does not take a mask.", param="mask")
    if request.strength is not None and not 0 <= request.strength <= 1:
        raise InvalidRequest(
            f"strength must be between 0 and 1; got {request.strength}.", param="strength"
        )
    return RequestKind.EDIT


def picture_params(request: NormalizedRequest) -> dict[str, object]:
    """The normalized parameters that change the pictures (JSON-safe), prompt and model aside."""
    return {
        "n": request.n,
        "size": str(request.size),
        "quality": request.quality,
        "output_format": request.output_format.value,
        "output_compression": request.output_compression,
        "style": request.style,
        "background": request.background,
        "seed": request.seed,
        "kind": request.kind.value,
        "negative_prompt": request.negative_prompt,
        "images": [image.content_hash for image in request.images],
        "mask": request.mask.content_hash if request.mask else None,
        "strength": request.strength,
    }


def _enhancement(request: NormalizedRequest) -> dict[str, object]:
    """An enhanced request is keyed apart from a plain one by the flag, never by the rewrite
    (which differs call by call): the same user prompt asked twice with enhancement hits the
    cache. Only present when set, so keys made before enhancement existed stay valid."""
    return {"enhance_prompt": True} if request.enhance_prompt else {}


def cache_key(request: NormalizedRequest) -> str:
    """SHA-256 over everything that changes the pictures; ``response_format`` does not.

    The prompt is the user's own, normalized: a prompt enhancement does not enter the key."""
    material = {
        "v": CACHE_KEY_VERSION,
        "model": request.model,
        "prompt": request.prompt,
        **picture_params(request),
        **_enhancement(request),
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def semantic_group(request: NormalizedRequest) -> str | None:
    """Requests whose prompts may be compared by meaning share this key: everything but the
    prompt is equal. None for requests the semantic cache must not answer (reference images,
    a fixed seed: the caller wants exactly that picture)."""
    if request.images or request.seed is not None:
        return None
    material = {
        "v": CACHE_KEY_VERSION,
        "model": request.model,
        **picture_params(request),
        **_enhancement(request),
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
