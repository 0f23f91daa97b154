"""The image library's pure parts: default alt text, tag cleaning, cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagegate.errors import InvalidRequest
from imagegate.models import ImageRecord, Outcome, StoredImage
from imagegate.services.images import (
    ALT_TEXT_LENGTH,
    clean_tags,
    decode_cursor,
    default_alt_text,
    encode_cursor,
)


@pytest.mark.parametrize(
    ("prompt", "alt"),
    [
        ("a red fox in snow", "A red fox in snow"),
        ("a blue whale, 8k, masterpiece --ar 16:9 --v 6", "A blue whale"),
        ("(castle:1.3) on a [hill], highly detailed, trending on artstation", "Castle on a hill"),
        ("  portrait   of a cat ,  sharp focus ", "Portrait of a cat"),
        ("8k, masterpiece", "Generated image"),
        ("café terrace, HDR", "Café terrace"),
    ],
)
def test_default_alt_text_is_the_prompt_without_its_noise(prompt: str, alt: str) -> None:
    assert default_alt_text(prompt) == alt


def test_long_prompts_are_cut_at_a_word() -> None:
    alt = default_alt_text("a very long description of a scene " * 10)
    assert len(alt) <= ALT_TEXT_LENGTH + 1
    assert alt.endswith("…")
    assert not alt[:-1].endswith(" ")


def test_tags_are_trimmed_lowered_and_deduplicated() -> None:
    assert clean_tags([" Pets ", "Black  Cats", "pets", "c++", "v1.2"]) == (
        "pets",
        "black cats",
        "c++",
        "v1.2",
    )


@pytest.mark.parametrize("tags", [[""], ["-leading"], ["x" * 51], ["semi;colon"]])
def test_bad_tags_are_refused(tags: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        clean_tags(tags)
    assert caught.value.param == "tags"


def test_too_many_tags_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        clean_tags([f"t{i}" for i in range(21)])


def test_a_cursor_round_trips_to_the_microsecond() -> None:
    at = datetime(2026, 12, 2, 10, 11, 12, 345678, tzinfo=UTC)
    record = ImageRecord(
        id="ab" * 16,
        generation_id="g",
        user_id="u",
        position=0,
        image=StoredImage("h", "h.png", "image/png", 1, 1, 1),
        model="m",
        provider=None,
        outcome=Outcome.GENERATED,
        prompt="p",
        created_at=at,
    )
    assert decode_cursor(encode_cursor(record)) == (at, "ab" * 16)


@pytest.mark.parametrize("cursor", ["", "%%%", "bm9wZQ", "MTIzOg"])
def test_a_cursor_the_api_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_cursor(cursor)
    assert caught.value.param == "cursor"
