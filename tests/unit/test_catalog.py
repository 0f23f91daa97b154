from __future__ import annotations

import pytest

from imagegate.catalog import Catalog, parse_size
from imagegate.errors import ConfigurationError, ModelNotFound
from imagegate.models import Size


def test_shipped_catalogue_describes_the_builtin_model() -> None:
    spec = Catalog.load().get("builtin")
    assert spec.provider == "builtin"
    assert Size(512, 512) in spec.sizes
    assert spec.max_n == 10
    assert spec.price_micro_usd("high", Size(1024, 1024)) == 0


def test_unknown_model_is_404_and_lists_what_exists() -> None:
    with pytest.raises(ModelNotFound) as caught:
        Catalog.load().get("dall-e-9")
    assert caught.value.status == 404
    assert "builtin" in caught.value.message


@pytest.mark.parametrize("text", ["1024", "x1024", "axb", "", "1024x"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="1024x1024"):
        parse_size(text)


def test_price_table_takes_the_first_matching_row() -> None:
    override = {
        "priced": {
            "provider": "x",
            "upstream_model": "x-1",
            "sizes": ["1024x1024", "1536x1024"],
            "default_size": "1024x1024",
            "max_n": 1,
            "max_prompt_chars": 100,
            "qualities": ["low", "high"],
            "default_quality": "low",
            "output_formats": ["png"],
            "default_output_format": "png",
            "prices": [
                {"quality": "high", "size": "1536x1024", "micro_usd": 250_000},
                {"quality": "high", "micro_usd": 167_000},
                {"micro_usd": 11_000},
            ],
        }
    }
    spec = Catalog.load(override).get("priced")
    assert spec.price_micro_usd("high", Size(1536, 1024)) == 250_000
    assert spec.price_micro_usd("high", Size(1024, 1024)) == 167_000
    assert spec.price_micro_usd("low", Size(1536, 1024)) == 11_000


def test_a_bad_catalogue_entry_names_the_field() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Catalog.load({"broken": {"provider": "x", "upstream_model": "y", "max_n": 0}})
    assert "broken" in caught.value.message
    assert caught.value.param is not None
    assert caught.value.param.startswith("models.broken.")
