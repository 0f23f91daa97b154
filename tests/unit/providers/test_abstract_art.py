"""The offline abstract-art renderer: exact size, reproducible, varied, steered by colour words."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageStat

from imagegate.providers.abstract_art import render_artwork

SEEDS = range(8)


def _means(image: Image.Image) -> list[float]:
    return ImageStat.Stat(image).mean


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (64, 64),
        (256, 256),
        (512, 512),
        (1024, 1024),
        (1536, 1024),
        (1024, 1792),
        (1792, 1024),
        (100, 300),
        (2048, 64),
    ],
)
def test_renders_exact_size_in_rgb(width: int, height: int) -> None:
    image = render_artwork("a lighthouse on a cliff", 3, width, height)

    assert image.size == (width, height)
    assert image.mode == "RGB"


def test_same_arguments_give_identical_pixels() -> None:
    first = render_artwork("a red fox in the snow", 42, 512, 384)
    second = render_artwork("a red fox in the snow", 42, 512, 384)

    assert first.tobytes() == second.tobytes()


def test_pixels_are_identical_across_processes() -> None:
    """Cached images and golden tests rely on this: no per-process salt (``hash()``) may leak in."""
    script = (
        "import hashlib; from imagegate.providers.abstract_art import render_artwork; "
        "print(hashlib.sha256(render_artwork('ocean at night', 7, 300, 200).tobytes()).hexdigest())"
    )
    expected = hashlib.sha256(render_artwork("ocean at night", 7, 300, 200).tobytes()).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected


def test_different_prompt_gives_different_picture() -> None:
    fox = render_artwork("a red fox in the snow", 42, 256, 256)
    cabin = render_artwork("a cabin in the mountains", 42, 256, 256)

    assert fox.tobytes() != cabin.tobytes()


def test_different_seed_gives_different_picture() -> None:
    images = {
        render_artwork("a cabin in the mountains", seed, 256, 256).tobytes() for seed in SEEDS
    }

    assert len(images) == len(SEEDS)


def test_prompts_differing_only_slightly_still_differ() -> None:
    assert (
        render_artwork("a cat", 0, 128, 128).tobytes()
        != render_artwork("a cat.", 0, 128, 128).tobytes()
    )


@pytest.mark.parametrize("prompt", ["a cabin in the mountains", "ocean at night", "black cat"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_picture_is_not_flat(prompt: str, seed: int) -> None:
    image = render_artwork(prompt, seed, 512, 512)

    colours = image.getcolors(1 << 24)
    assert colours is not None
    assert len(colours) > 2000
    assert max(ImageStat.Stat(image).stddev) > 20


@pytest.mark.parametrize("prompt", ["white room", "snow"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pale_palette_is_still_not_flat(prompt: str, seed: int) -> None:
    image = render_artwork(prompt, seed, 512, 512)

    colours = image.getcolors(1 << 24)
    assert colours is not None
    assert len(colours) > 800
    assert max(ImageStat.Stat(image).stddev) > 10


def test_tiny_picture_is_not_flat() -> None:
    image = render_artwork("a tiny icon", 5, 64, 64)

    colours = image.getcolors(1 << 24)
    assert colours is not None
    assert len(colours) > 200


@pytest.mark.parametrize("prompt", ["red", "a red rose", "a red sports car at dusk"])
def test_red_prompt_is_mostly_red(prompt: str) -> None:
    for seed in SEEDS:
        red, _, blue = _means(render_artwork(prompt, seed, 256, 256))
        assert red > blue + 30, (prompt, seed)


@pytest.mark.parametrize("prompt", ["ocean blue", "a blue door", "deep sea"])
def test_blue_prompt_is_mostly_blue(prompt: str) -> None:
    for seed in SEEDS:
        red, _, blue = _means(render_artwork(prompt, seed, 256, 256))
        assert blue > red + 30, (prompt, seed)


def test_green_forest_is_mostly_green() -> None:
    for seed in SEEDS:
        red, green, blue = _means(render_artwork("a green forest", seed, 256, 256))
        assert green > red, seed
        assert green > blue, seed


def test_palette_words_are_case_insensitive() -> None:
    for seed in SEEDS:
        red, _, blue = _means(render_artwork("A RED BALLOON", seed, 128, 128))
        assert red > blue + 30, seed


def test_night_is_darker_than_snow() -> None:
    for seed in SEEDS:
        night = sum(_means(render_artwork("night", seed, 128, 128)))
        snow = sum(_means(render_artwork("snow", seed, 128, 128)))
        assert night < snow, seed


def test_composition_is_scale_invariant() -> None:
    small = render_artwork("sunset over a forest", 9, 256, 256)
    large = render_artwork("sunset over a forest", 9, 1024, 1024).resize((256, 256))

    differences = [abs(a - b) for a, b in zip(_means(small), _means(large), strict=True)]
    assert max(differences) < 6
