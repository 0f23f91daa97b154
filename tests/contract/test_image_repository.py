"""One suite for the image library's repository on every database: SQLite and PostgreSQL.

The library is seeded through the real generation writer; every filter, the prompt search
and the pages are checked against the same selection made in Python from the seed, so both
databases must return exactly the expected rows in exactly the expected order.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from imagegate.db import images as image_sql
from imagegate.db.base import ImageChanges
from imagegate.db.cache import SqlCacheRepository
from imagegate.db.engine import AsyncTransactions, create_engine, upgrade_to_head
from imagegate.db.generations import SqlGenerationRepository
from imagegate.db.images import SqlImageRepository
from imagegate.db.keys import SqlKeyRepository
from imagegate.errors import InvalidRequest
from imagegate.models import (
    CacheEntry,
    Generation,
    ImageQuery,
    ImageRecord,
    Outcome,
    Role,
    StoredImage,
    new_id,
)
from imagegate.settings import DatabaseSettings

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PROMPTS = [
    "a red fox in the snow",
    "Red Fox running through a field",
    "a blue whale under the ice",
    "foxglove flowers in a cottage garden",
    "the fox's den at night",
    "lighthouse at dusk, 8k",
    "café terrace in Paris",
    "a robot painting a red barn",
]


@dataclass
class Library:
    repo: SqlImageRepository
    generations: SqlGenerationRepository
    cache: SqlCacheRepository
    alice: str
    bob: str
    seeded: list[ImageRecord]
    """What the seed wrote, as the repository should give it back (tags and pins aside)."""


def _stored(label: str) -> StoredImage:
    digest = hashlib.sha256(label.encode()).hexdigest()
    thumb = hashlib.sha256(f"thumb:{label}".encode()).hexdigest()
    return StoredImage(
        content_hash=digest,
        storage_key=f"{digest}.png",
        mime="image/png",
        width=64,
        height=48,
        byte_size=1234,
        thumbnail_key=f"{thumb}.webp",
        placeholder="data:image/webp;base64,AAAA",
    )


def _generation(
    user_id: str,
    at: datetime,
    prompt: str,
    images: tuple[StoredImage, ...],
    *,
    model: str = "builtin",
    provider: str | None = "builtin",
    outcome: Outcome = Outcome.GENERATED,
) -> Generation:
    return Generation(
        id=new_id(),
        user_id=user_id,
        key_id=None,
        model=model,
        provider=provider,
        upstream_model=model,
        prompt=prompt,
        n=len(images),
        params={"size": "64x48"},
        cache_key=new_id(),
        outcome=outcome,
        attempts=1,
        latency_ms=5,
        estimated_cost_micro_usd=0,
        cost_micro_usd=0,
        created_at=at,
        completed_at=at,
        images=images,
    )


def _seed(alice: str, bob: str) -> list[Generation]:
    """40 generations, one or two images each, over two users, three models, two providers,
    four outcomes and 20 days; pairs share a timestamp so ids break ties."""
    rows = []
    for i in range(40):
        user = alice if i % 4 != 3 else bob
        model = ("builtin", "gpt-image-1", "imagen-4")[i % 3]
        outcome = (Outcome.GENERATED, Outcome.CACHE_HIT, Outcome.COALESCED, Outcome.SEMANTIC_HIT)[
            (i // 3) % 4
        ]
        provider = None if outcome is Outcome.CACHE_HIT else ("builtin", "openai")[i % 2]
        at = T0 + timedelta(hours=12 * (i // 2))
        images = tuple(_stored(f"{i}:{k}") for k in range(1 + i % 2))
        rows.append(
            _generation(
                user, at, PROMPTS[i % len(PROMPTS)], images,
                model=model, provider=provider, outcome=outcome,
            )
        )  # fmt: skip
    return rows


@pytest.fixture
async def library(database_url: str) -> AsyncIterator[Library]:
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    await upgrade_to_head(engine)
    writes = AsyncTransactions(engine).run
    keys = SqlKeyRepository(engine)
    alice, _ = await keys.ensure_user("alice", Role.USER)
    bob, _ = await keys.ensure_user("bob", Role.USER)
    generations = SqlGenerationRepository(engine, writes)
    repo = SqlImageRepository(engine, writes)
    for generation in _seed(alice, bob):
        await generations.record(generation)
    seeded = await repo.page(user_id=None, query=ImageQuery(), before=None, limit=1000)
    try:
        yield Library(repo, generations, SqlCacheRepository(writes), alice, bob, seeded)
    finally:
        await generations.aclose()
        await engine.dispose()


def _newest_first(records: list[ImageRecord]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]


async def _ids(library: Library, user_id: str | None, query: ImageQuery) -> list[str]:
    found = await library.repo.page(user_id=user_id, query=query, before=None, limit=1000)
    return [r.id for r in found]


async def test_seed_comes_back_whole_newest_first(library: Library) -> None:
    assert len(library.seeded) == 60
    assert [r.id for r in library.seeded] == _newest_first(library.seeded)
    one = library.seeded[0]
    assert one.prompt in PROMPTS
    assert one.image.thumbnail_key is not None
    assert one.image.placeholder == "data:image/webp;base64,AAAA"
    assert one.created_at.tzinfo is not None
    assert (one.tags, one.pinned, one.alt_text) == ((), False, None)


FILTERS: list[tuple[str, ImageQuery, Callable[[ImageRecord], bool]]] = [
    ("model", ImageQuery(model="imagen-4"), lambda r: r.model == "imagen-4"),
    ("provider", ImageQuery(provider="openai"), lambda r: r.provider == "openai"),
    ("outcome", ImageQuery(outcome=Outcome.CACHE_HIT), lambda r: r.outcome is Outcome.CACHE_HIT),
    (
        "from",
        ImageQuery(start=T0 + timedelta(days=5)),
        lambda r: r.created_at >= T0 + timedelta(days=5),
    ),
    (
        "to",
        ImageQuery(end=T0 + timedelta(days=5)),
        lambda r: r.created_at < T0 + timedelta(days=5),
    ),
    (
        "model+outcome+period",
        ImageQuery(
            model="builtin",
            outcome=Outcome.GENERATED,
            start=T0 + timedelta(days=2),
            end=T0 + timedelta(days=15),
        ),
        lambda r: (
            r.model == "builtin"
            and r.outcome is Outcome.GENERATED
            and T0 + timedelta(days=2) <= r.created_at < T0 + timedelta(days=15)
        ),
    ),
    ("no match", ImageQuery(model="nope"), lambda r: False),
]


@pytest.mark.parametrize(("name", "query", "keep"), FILTERS, ids=[f[0] for f in FILTERS])
@pytest.mark.parametrize("whose", ["alice", "everyone"])
async def test_each_filter_returns_exactly_the_matching_rows(
    library: Library,
    name: str,
    query: ImageQuery,
    keep: Callable[[ImageRecord], bool],
    whose: str,
) -> None:
    user_id = library.alice if whose == "alice" else None
    expected = [r for r in library.seeded if keep(r) and (user_id is None or r.user_id == user_id)]
    assert await _ids(library, user_id, query) == _newest_first(expected)
    if name != "no match":
        assert expected


SEARCHES = [
    ("fox", {0, 1, 4}),
    ("FOX", {0, 1, 4}),
    ("fox*", {0, 1, 3, 4}),
    ("red fox", {0, 1}),
    ("red", {0, 1, 7}),
    ("  red,   barn!  ", {7}),
    ("whale ice", {2}),
    ("whale fox", set()),
    ("café", {6}),
    ("cafe", set()),
    ("8k", {5}),
    ("gard*", {3}),
]


@pytest.fixture(params=["as chosen", "walk"])
def search_way(
    request: pytest.FixtureRequest, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """SQLite searches one of two ways by how many prompts match (``SQLITE_SEARCH_SMALL``):
    the small seed takes the lookup; ``walk`` forces the index walk big libraries take."""
    if request.param == "walk":
        if not database_url.startswith("sqlite"):
            pytest.skip("PostgreSQL's planner chooses; there is no second way to force")
        monkeypatch.setattr(image_sql, "SQLITE_SEARCH_SMALL", 0)
    return str(request.param)


@pytest.mark.parametrize(("q", "prompts"), SEARCHES, ids=[s[0] for s in SEARCHES])
async def test_text_search_matches_whole_words_of_the_prompt(
    library: Library, q: str, prompts: set[int], search_way: str
) -> None:
    wanted = {PROMPTS[i] for i in prompts}
    expected = [r for r in library.seeded if r.prompt in wanted]
    assert await _ids(library, None, ImageQuery(q=q)) == _newest_first(expected)
    mine = [r for r in expected if r.user_id == library.alice]
    assert await _ids(library, library.alice, ImageQuery(q=q)) == _newest_first(mine)


async def test_text_search_combines_with_filters(library: Library, search_way: str) -> None:
    query = ImageQuery(q="fox", model="builtin", start=T0 + timedelta(days=3))
    expected = [
        r
        for r in library.seeded
        if r.prompt in (PROMPTS[0], PROMPTS[1], PROMPTS[4])
        and r.model == "builtin"
        and r.created_at >= T0 + timedelta(days=3)
    ]
    assert expected
    assert await _ids(library, None, query) == _newest_first(expected)


@pytest.mark.parametrize("q", ["", "  ", "!!! ???", "_"])
async def test_a_search_without_words_is_refused(library: Library, q: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await library.repo.page(user_id=None, query=ImageQuery(q=q), before=None, limit=10)
    assert caught.value.param == "q"


@pytest.mark.parametrize("limit", [1, 3, 7, 60])
@pytest.mark.parametrize(
    "query", [ImageQuery(), ImageQuery(provider="builtin"), ImageQuery(q="red")], ids=str
)
async def test_pages_have_no_duplicates_and_no_gaps(
    library: Library, limit: int, query: ImageQuery, search_way: str
) -> None:
    if search_way == "walk" and query.q is None:
        pytest.skip("no search")
    expected = await _ids(library, None, query)
    if query.q is not None:
        expected_prompts = {PROMPTS[0], PROMPTS[1], PROMPTS[7]}  # "red"
        assert expected == _newest_first(
            [r for r in library.seeded if r.prompt in expected_prompts]
        )
    seen: list[str] = []
    before = None
    while True:
        page = await library.repo.page(user_id=None, query=query, before=before, limit=limit)
        assert len(page) <= limit
        seen += [r.id for r in page]
        if len(page) < limit:
            break
        before = (page[-1].created_at, page[-1].id)
    assert seen == expected


async def test_tags_replace_and_filter(library: Library) -> None:
    mine = [r for r in library.seeded if r.user_id == library.alice]
    theirs = next(r for r in library.seeded if r.user_id == library.bob)
    first, second = mine[0], mine[5]
    await library.repo.update(first.id, ImageChanges(tags=("pets", "cats")))
    await library.repo.update(second.id, ImageChanges(tags=("pets",), pinned=True))
    await library.repo.update(theirs.id, ImageChanges(tags=("pets",)))
    assert await _ids(library, library.alice, ImageQuery(tag="pets")) == [first.id, second.id]
    assert await _ids(library, None, ImageQuery(tag="pets")) == _newest_first(
        [first, second, theirs]
    )
    changed = await library.repo.update(first.id, ImageChanges(tags=("dogs",)))
    assert changed is not None
    assert changed.tags == ("dogs",)
    assert await _ids(library, library.alice, ImageQuery(tag="pets")) == [second.id]
    assert await _ids(library, library.alice, ImageQuery(tag="cats")) == []
    again = await library.repo.get(second.id)
    assert again is not None
    assert (again.tags, again.pinned) == (("pets",), True)


async def test_tag_pages_walk_in_order_with_the_other_filters(library: Library) -> None:
    """A tag filter walks the tags' own index; with a period, a model, a cursor and either
    owner scope it still gives exactly the rows and order of the untagged listing."""
    tagged = library.seeded[::3]
    for record in tagged:
        await library.repo.update(record.id, ImageChanges(tags=("blue", "sky")))
    await library.repo.update(library.seeded[1].id, ImageChanges(tags=("sky",)))
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=15)
    cases = [
        (ImageQuery(tag="blue"), lambda r: True),
        (ImageQuery(tag="blue", model="builtin"), lambda r: r.model == "builtin"),
        (
            ImageQuery(tag="blue", start=start, end=end),
            lambda r: start <= r.created_at < end,
        ),
        (ImageQuery(tag="blue", q="fox"), lambda r: r.prompt in {PROMPTS[i] for i in (0, 1, 4)}),
    ]
    for user_id in (library.alice, None):
        for query, keep in cases:
            expected = _newest_first(
                [r for r in tagged if keep(r) and user_id in (None, r.user_id)]
            )
            assert expected
            assert await _ids(library, user_id, query) == expected
            seen: list[str] = []
            before = None
            while True:
                page = await library.repo.page(user_id=user_id, query=query, before=before, limit=2)
                seen += [r.id for r in page]
                if len(page) < 2:
                    break
                before = (page[-1].created_at, page[-1].id)
            assert seen == expected
    sky = await _ids(library, None, ImageQuery(tag="sky"))
    assert sky == _newest_first([*tagged, library.seeded[1]])


async def test_alt_text_is_set_and_reset(library: Library) -> None:
    target = library.seeded[0].id
    changed = await library.repo.update(target, ImageChanges(alt_text="A fox, sleeping"))
    assert changed is not None
    assert changed.alt_text == "A fox, sleeping"
    unchanged = await library.repo.update(target, ImageChanges(pinned=True))
    assert unchanged is not None
    assert (unchanged.alt_text, unchanged.pinned) == ("A fox, sleeping", True)
    reset = await library.repo.update(target, ImageChanges(reset_alt_text=True))
    assert reset is not None
    assert reset.alt_text is None
    assert await library.repo.update("missing", ImageChanges(pinned=True)) is None


async def test_delete_keeps_blobs_another_record_uses(library: Library) -> None:
    shared = _stored("shared")
    made = _generation(library.alice, T0 + timedelta(days=30), "a shared picture", (shared,))
    entry = CacheEntry("*", made.cache_key, None)
    await library.generations.record(made, entry)
    hit = _generation(
        library.bob, T0 + timedelta(days=31), "a shared picture", (shared,),
        provider=None, outcome=Outcome.CACHE_HIT,
    )  # fmt: skip
    await library.generations.record(hit)
    (original,) = await library.repo.of_generation(made.id)
    (reused,) = await library.repo.of_generation(hit.id)
    await library.repo.update(original.id, ImageChanges(tags=("keep",)))
    assert await library.cache.lookup("*", made.cache_key, T0) is not None

    removal = await library.repo.delete(original.id)
    assert removal is not None
    assert removal.record.id == original.id
    assert removal.unreferenced_keys == ()
    assert removal.cache_entries == (("*", made.cache_key),)
    assert await library.repo.get(original.id) is None
    assert await library.cache.lookup("*", made.cache_key, T0) is None
    assert await _ids(library, None, ImageQuery(tag="keep")) == []

    last = await library.repo.delete(reused.id)
    assert last is not None
    assert set(last.unreferenced_keys) == {shared.storage_key, shared.thumbnail_key}
    assert await library.repo.delete(reused.id) is None


async def test_find_user_by_id_or_name(library: Library) -> None:
    assert await library.repo.find_user("bob") == library.bob
    assert await library.repo.find_user(library.alice) == library.alice
    assert await library.repo.find_user("carol") is None
