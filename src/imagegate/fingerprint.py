"""Request normalization and the cache key: pure functions, no I/O.

Two requests that must produce the same picture normalize to the same ``NormalizedRequest`` and
so to the same ``cache_key``: the prompt is trimmed and its whitespace collapsed (case is kept:
it can matter to models), ``auto`` and missing values become the model's defaults, and sizes take
one canonical ``WxH`` form. Everything a model cannot honour is refused here, with the field named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import orjson

from imagegate.catalog import ModelSpec, parse_size
from imagegate.errors import InvalidRequest, UnsupportedParameter
from imagegate.models import GenerationRequest, NormalizedRequest, OutputFormat, Size

AUTO = "auto"
CACHE_KEY_VERSION = 1


def normalize_prompt(prompt: str) -> str:
    """Trim and collapse every run of whitespace (any Unicode whitespace) to one space."""
    return " ".join(prompt.split())


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
        compression = (
            None  # PNG is lossless: the setting means nothing and must not split the cache
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
    )


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
    }


def cache_key(request: NormalizedRequest) -> str:
    """SHA-256 over everything that changes the pictures; ``response_format`` does not."""
    material = {
        "v": CACHE_KEY_VERSION,
        "model": request.model,
        "prompt": request.prompt,
        **picture_params(request),
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
