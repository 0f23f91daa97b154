"""Properties of request normalization, the cache key, aspect ratios and prices (hypothesis)."""

from __future__ import annotations

import math
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imagegate.catalog import Catalog, ModelSpec, nearest_aspect_ratio, parse_size
from imagegate.errors import ImagegateError
from imagegate.fingerprint import (
    MAX_SEED,
    cache_key,
    normalize_prompt,
    normalize_request,
    semantic_group,
)
from imagegate.models import GenerationRequest, Size

CATALOG = Catalog.load()
SPECS = list(CATALOG)
BUILTIN = CATALOG.get("builtin")
RATIO_SETS = sorted({spec.aspect_ratios for spec in SPECS if spec.aspect_ratios})

# Every code point, surrogates and control characters included: what a JSON body can carry.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=60)
PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60)
WHITESPACE = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000"])
SIZES = st.builds(Size, st.integers(1, 8192), st.integers(1, 8192))
settings.register_profile("imagegate", derandomize=True, max_examples=150, deadline=None)
settings.load_profile("imagegate")


@given(ANY_TEXT)
@example("\ud800 cat")
@example("a\x00b")
def test_any_prompt_is_refused_cleanly_or_gets_a_cache_key(prompt: str) -> None:
    request = GenerationRequest(prompt=prompt)
    refused = any(
        unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in prompt
    ) or not normalize_prompt(prompt)
    if refused:
        with pytest.raises(ImagegateError) as raised:
            normalize_request(request, BUILTIN)
        assert raised.value.param == "prompt"
        return
    normalized = normalize_request(request, BUILTIN)
    assert len(cache_key(normalized)) == 64
    assert normalized.prompt == normalize_prompt(normalized.prompt)


@given(PRINTABLE, WHITESPACE, WHITESPACE)
def test_whitespace_around_and_inside_the_prompt_does_not_change_the_key(
    prompt: str, before: str, inside: str
) -> None:
    base = GenerationRequest(prompt=prompt)
    padded = GenerationRequest(prompt=before + prompt.replace(" ", inside) + before)
    try:
        expected = cache_key(normalize_request(base, BUILTIN))
    except ImagegateError:
        return
    assert cache_key(normalize_request(padded, BUILTIN)) == expected


@given(PRINTABLE, PRINTABLE)
def test_different_prompts_get_different_keys(first: str, second: str) -> None:
    a, b = normalize_prompt(first), normalize_prompt(second)
    if not a or not b or a == b:
        return
    key_a = cache_key(normalize_request(GenerationRequest(prompt=a), BUILTIN))
    key_b = cache_key(normalize_request(GenerationRequest(prompt=b), BUILTIN))
    assert key_a != key_b


@given(st.sampled_from([spec for spec in SPECS if spec.supports_seed]), st.integers())
@example(BUILTIN, 2**70)
@example(BUILTIN, -1)
def test_any_seed_is_refused_by_name_or_keyed(spec: ModelSpec, seed: int) -> None:
    request = GenerationRequest(prompt="a fox", seed=seed)
    if 0 <= seed <= MAX_SEED:
        normalized = normalize_request(request, spec)
        assert cache_key(normalized) != cache_key(
            normalize_request(GenerationRequest(prompt="a fox"), spec)
        )
        assert semantic_group(normalized) is None
    else:
        with pytest.raises(ImagegateError) as raised:
            normalize_request(request, spec)
        assert raised.value.param == "seed"


@given(st.sampled_from(SPECS), st.sampled_from(["auto", " AUTO ", None]))
def test_auto_and_missing_size_mean_the_default(spec: ModelSpec, size: str | None) -> None:
    request = GenerationRequest(prompt="a fox", size=size, model=spec.name)
    assert normalize_request(request, spec).size == spec.default_size


@given(st.sampled_from(SPECS), st.data())
def test_each_listed_size_in_any_spelling_normalizes_to_itself(
    spec: ModelSpec, data: st.DataObject
) -> None:
    size = data.draw(st.sampled_from(spec.sizes))
    spelled = data.draw(st.sampled_from([str(size), f" {size.width} X {size.height} "]))
    assert normalize_request(GenerationRequest(prompt="x", size=spelled), spec).size == size


@given(st.text(max_size=20))
def test_parse_size_returns_a_size_or_raises_value_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError:
        return
    assert parse_size(str(size)) == size


@given(SIZES, st.sampled_from(RATIO_SETS))
def test_nearest_aspect_ratio_is_listed_and_nothing_is_closer(
    size: Size, ratios: tuple[str, ...]
) -> None:
    chosen = nearest_aspect_ratio(size, ratios)
    assert chosen in ratios

    def distance(ratio: str) -> float:
        w, _, h = ratio.partition(":")
        return abs(math.log(int(w) / int(h)) - math.log(size.width / size.height))

    assert all(distance(chosen) <= distance(other) + 1e-12 for other in ratios)


@given(SIZES, st.sampled_from(RATIO_SETS))
def test_a_transposed_size_gets_the_transposed_ratio(size: Size, ratios: tuple[str, ...]) -> None:
    def flip(ratio: str) -> str:
        w, _, h = ratio.partition(":")
        return f"{h}:{w}"

    target = math.log(size.width / size.height)
    distances = sorted(
        abs(math.log(int(r.partition(":")[0]) / int(r.partition(":")[2])) - target) for r in ratios
    )
    unique = len(distances) == 1 or distances[1] - distances[0] > 1e-9
    if unique and all(flip(r) in ratios for r in ratios):
        chosen = nearest_aspect_ratio(size, ratios)
        assert nearest_aspect_ratio(Size(size.height, size.width), ratios) == flip(chosen)


def test_an_exact_listed_ratio_is_chosen() -> None:
    for ratios in RATIO_SETS:
        for ratio in ratios:
            w, _, h = ratio.partition(":")
            assert nearest_aspect_ratio(Size(int(w) * 64, int(h) * 64), ratios) == ratio


@given(st.sampled_from(SPECS), st.data(), st.integers(1, 10))
def test_price_is_non_negative_and_linear_in_images(
    spec: ModelSpec, data: st.DataObject, images: int
) -> None:
    size = data.draw(st.sampled_from(spec.sizes))
    quality = data.draw(st.sampled_from(spec.qualities))
    one = spec.cost_micro_usd(quality, size, 1, None)
    assert one >= 0
    assert spec.cost_micro_usd(quality, size, images, None) == one * images


@given(
    st.sampled_from([spec for spec in SPECS if spec.token_prices is not None]),
    st.dictionaries(
        st.sampled_from(["input_text_tokens", "input_image_tokens", "output_tokens"]),
        st.integers(0, 10_000_000),
        min_size=1,
    ),
    st.integers(0, 1000),
)
def test_token_prices_grow_with_usage(spec: ModelSpec, usage: dict[str, int], more: int) -> None:
    size, quality = spec.default_size, spec.default_quality
    cost = spec.cost_micro_usd(quality, size, 1, usage)
    bigger = {**usage, "output_tokens": usage.get("output_tokens", 0) + more}
    assert 0 <= cost <= spec.cost_micro_usd(quality, size, 1, bigger)
