"""The model catalogue: what each public model accepts and what one image costs.

Limits live here as data (``data/models/*.yaml``, one file per provider), not as ``if`` chains
in the code: the request normalizer (``fingerprint.normalize_request``) and the price estimate
both read a ``ModelSpec``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagegate.errors import ConfigurationError, ModelNotFound
from imagegate.models import OutputFormat, RequestKind, ResponseFormat, Size

WILDCARD = "*"


def parse_size(text: str) -> Size:
    """Parse ``"1024x1024"`` (case-insensitive, spaces ignored); ValueError when malformed."""
    width, sep, height = text.strip().lower().replace(" ", "").partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"size must look like 1024x1024, got {text!r}")
    return Size(int(width), int(height))


def nearest_aspect_ratio(size: Size, ratios: tuple[str, ...]) -> str:
    """The ratio (``"16:9"``) closest to ``size`` in log scale, so 2:1 is as far from 1:1 as 1:2.

    Ties go to the earlier ratio in ``ratios``; the catalogue lists the preferred ones first.
    """
    target = math.log(size.width / size.height)

    def distance(ratio: str) -> float:
        width, _, height = ratio.partition(":")
        return abs(math.log(float(width) / float(height)) - target)

    return min(ratios, key=distance)


class TokenPrices(BaseModel):
    """Micro-USD per million tokens, for models billed by ``usage`` (OpenAI GPT image models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_input: int = Field(default=0, ge=0)
    image_input: int = Field(default=0, ge=0)
    image_output: int = Field(default=0, ge=0)


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quality: str = WILDCARD
    size: str = WILDCARD
    micro_usd: int = Field(ge=0)

    def matches(self, quality: str, size: Size) -> bool:
        return self.quality in (WILDCARD, quality) and self.size in (WILDCARD, str(size))


class ModelSpec(BaseModel):
    """One public model: its provider, its limits and its price table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    provider: str
    upstream_model: str
    sizes: tuple[Size, ...]
    default_size: Size
    max_n: int = Field(ge=1)
    max_prompt_chars: int = Field(ge=1)
    qualities: tuple[str, ...]
    default_quality: str
    output_formats: tuple[OutputFormat, ...]
    default_output_format: OutputFormat
    response_formats: tuple[ResponseFormat, ...] = (ResponseFormat.URL, ResponseFormat.B64_JSON)
    styles: tuple[str, ...] = ()
    backgrounds: tuple[str, ...] = ()
    prices: tuple[Price, ...] = ()
    token_prices: TokenPrices | None = None
    kinds: tuple[RequestKind, ...] = (RequestKind.GENERATE,)
    aspect_ratios: tuple[str, ...] = Field(
        default=(), description="Set when the upstream takes aspect ratios instead of sizes."
    )
    max_n_per_call: int | None = Field(
        default=None, ge=1, description="Upstream per-call maximum; larger n is split."
    )
    native_output_formats: tuple[OutputFormat, ...] = Field(
        default=(), description="Formats the upstream produces itself; others are converted."
    )
    max_input_images: int = Field(default=0, ge=0, description="Reference images per request.")
    supports_mask: bool = False
    supports_seed: bool = False
    supports_negative_prompt: bool = False
    enhance_prompt: bool = Field(
        default=False,
        description="Requests are prompt-enhanced unless they say enhance_prompt: false "
        "(only when an enhancer is configured).",
    )

    @property
    def per_call(self) -> int:
        return self.max_n_per_call or self.max_n

    def cost_micro_usd(
        self, quality: str, size: Size, images: int, usage: Mapping[str, int] | None
    ) -> int:
        """What ``images`` images cost: from token ``usage`` where the model bills by tokens,
        else from the price table. Token counts use OpenAI's ``usage`` names, flattened."""
        if self.token_prices is not None and usage:
            prices = self.token_prices
            micro_millions = (
                usage.get("input_text_tokens", 0) * prices.text_input
                + usage.get("input_image_tokens", 0) * prices.image_input
                + usage.get("output_tokens", 0) * prices.image_output
            )
            return round(micro_millions / 1_000_000)
        return self.price_micro_usd(quality, size) * images

    def upstream_format(self, wanted: OutputFormat) -> OutputFormat:
        """The format to ask the upstream for: ``wanted`` if it can, else its first native one."""
        if not self.native_output_formats or wanted in self.native_output_formats:
            return wanted
        return self.native_output_formats[0]

    @field_validator("sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: Any) -> Any:
        return tuple(parse_size(v) if isinstance(v, str) else v for v in value)

    @field_validator("default_size", mode="before")
    @classmethod
    def _parse_default_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    def price_micro_usd(self, quality: str, size: Size) -> int:
        """List price of one image; the first matching row of the price table wins."""
        for price in self.prices:
            if price.matches(quality, size):
                return price.micro_usd
        return 0


@dataclass(frozen=True, slots=True)
class Target:
    """One place a public model can be served: a catalogue model at a configured provider."""

    spec: ModelSpec
    provider: str
    params: Mapping[str, object] = field(default_factory=dict)
    weight: int = 1

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.spec.upstream_model}"


class Catalog:
    """All known models by public name."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Catalog:
        """The shipped catalogue, with entries from ``overrides`` added or replacing by name."""
        raw: dict[str, Mapping[str, Any]] = {}
        shipped = resources.files("imagegate").joinpath("data/models")
        for source in sorted(shipped.iterdir(), key=lambda s: s.name):
            if source.name.endswith(".yaml"):
                raw.update(yaml.safe_load(source.read_text("utf-8"))["models"])
        raw.update(overrides or {})
        specs: dict[str, ModelSpec] = {}
        for name, entry in raw.items():
            try:
                specs[name] = ModelSpec(name=name, **entry)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ConfigurationError(
                    f"model catalogue entry {name!r}: {where}: {first['msg']}",
                    param=f"models.{name}.{where}",
                ) from exc
        return cls(specs)

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ModelNotFound(
                f"The model {name!r} does not exist. Available models: {', '.join(self._specs)}.",
                param="model",
            ) from None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs
