"""The model catalogue: what each public model accepts and what one image costs.

Limits live here as data (``data/catalog.yaml``), not as ``if`` chains in the code: the request
normalizer (``fingerprint.normalize_request``) and the price estimate both read a ``ModelSpec``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagegate.errors import ConfigurationError, ModelNotFound
from imagegate.models import OutputFormat, ResponseFormat, Size

WILDCARD = "*"


def parse_size(text: str) -> Size:
    """Parse ``"1024x1024"`` (case-insensitive, spaces ignored); ValueError when malformed."""
    width, sep, height = text.strip().lower().replace(" ", "").partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"size must look like 1024x1024, got {text!r}")
    return Size(int(width), int(height))


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


class Catalog:
    """All known models by public name."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Catalog:
        """The shipped catalogue, with entries from ``overrides`` added or replacing by name."""
        text = resources.files("imagegate").joinpath("data/catalog.yaml").read_text("utf-8")
        raw: dict[str, Mapping[str, Any]] = dict(yaml.safe_load(text)["models"])
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
