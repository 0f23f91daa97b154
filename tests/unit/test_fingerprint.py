from __future__ import annotations

from dataclasses import replace

import pytest

from imagegate.catalog import Catalog
from imagegate.errors import InvalidRequest, UnsupportedParameter
from imagegate.fingerprint import cache_key, normalize_prompt, normalize_request
from imagegate.models import GenerationRequest, OutputFormat, ResponseFormat, Size

BUILTIN = Catalog.load().get("builtin")


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("a red fox", "a red fox"),
        ("  a   red\tfox \n", "a red fox"),
        ("a\u00a0red\u2003fox", "a red fox"),
        ("A Red Fox", "A Red Fox"),
    ],
)
def test_normalize_prompt_trims_and_collapses_whitespace_but_keeps_case(
    raw: str, normalized: str
) -> None:
    assert normalize_prompt(raw) == normalized


def test_defaults_come_from_the_catalogue() -> None:
    request = normalize_request(GenerationRequest(prompt="fox"), BUILTIN)
    assert request.size == BUILTIN.default_size == Size(1024, 1024)
    assert request.quality == BUILTIN.default_quality
    assert request.output_format is OutputFormat.PNG
    assert request.n == 1


@pytest.mark.parametrize("size", ["512x512", "512X512", " 512x512 ", "512 x 512"])
def test_sizes_take_one_canonical_form(size: str) -> None:
    assert normalize_request(GenerationRequest(prompt="fox", size=size), BUILTIN).size == Size(
        512, 512
    )


def test_auto_size_is_the_default_size() -> None:
    request = normalize_request(GenerationRequest(prompt="fox", size="auto"), BUILTIN)
    assert request.size == BUILTIN.default_size


@pytest.mark.parametrize(
    ("request_", "param", "fragment"),
    [
        (GenerationRequest(prompt="   "), "prompt", "must not be empty"),
        (GenerationRequest(prompt="x" * 32001), "prompt", "at most 32000"),
        (GenerationRequest(prompt="fox", n=0), "n", "between 1 and 10"),
        (GenerationRequest(prompt="fox", n=11), "n", "between 1 and 10"),
        (GenerationRequest(prompt="fox", size="300x300"), "size", "512x512"),
        (GenerationRequest(prompt="fox", size="big"), "size", "Supported sizes"),
        (GenerationRequest(prompt="fox", quality="ultra"), "quality", "Supported values"),
        (GenerationRequest(prompt="fox", output_compression=101), "output_compression", "100"),
    ],
)
def test_out_of_limits_requests_name_the_field(
    request_: GenerationRequest, param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_request(request_, BUILTIN)
    assert caught.value.param == param
    assert fragment in caught.value.message


def test_parameters_the_model_lacks_are_unsupported() -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        normalize_request(GenerationRequest(prompt="fox", style="vivid"), BUILTIN)
    assert caught.value.param == "style"
    assert caught.value.status == 400


def _key(**fields: object) -> str:
    request = GenerationRequest(**{"prompt": "a red fox", **fields})  # type: ignore[arg-type]
    return cache_key(normalize_request(request, BUILTIN))


def test_cache_key_ignores_whitespace_and_spelling_of_defaults() -> None:
    assert _key() == _key(prompt="  a  red fox ") == _key(size="1024X1024") == _key(size="auto")


def test_cache_key_ignores_how_the_result_is_delivered() -> None:
    assert _key(response_format=ResponseFormat.URL) == _key(response_format=ResponseFormat.B64_JSON)


def test_cache_key_ignores_compression_for_lossless_png() -> None:
    assert _key(output_compression=50) == _key()


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a Red fox"},
        {"seed": 1},
        {"size": "512x512"},
        {"n": 2},
        {"quality": "high"},
        {"output_format": OutputFormat.WEBP},
        {"background": "opaque"},
    ],
)
def test_cache_key_changes_with_anything_that_changes_the_picture(
    change: dict[str, object],
) -> None:
    assert _key(**change) != _key()


def test_enhancement_keys_by_the_flag_not_the_rewrite_and_keeps_old_keys() -> None:
    plain = normalize_request(GenerationRequest(prompt="a fox", model="builtin"), BUILTIN)
    asked = replace(plain, enhance_prompt=True)
    # the rewrite never enters the key: only the flag, and only when set
    assert cache_key(asked) != cache_key(plain)
    assert cache_key(plain) == _key(prompt="a fox")
    # the request's own flag is the service's to settle (an enhancer may not be configured)
    flagged = GenerationRequest(prompt="a fox", model="builtin", enhance_prompt=True)
    assert normalize_request(flagged, BUILTIN).enhance_prompt is False
