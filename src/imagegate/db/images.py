"""The image library's records: keyset pages with filters and prompt search, edits, deletes.

Pages are newest first by ``(created_at, id)``, each filter an equality on a column of
``images`` that leads one of its composite indexes, so a page is an index walk that stops after
``limit`` rows however deep the cursor; a tag filter walks ``image_tags``, which keeps each
image's ``created_at`` for that (migration 0011). Prompt search is one method over two engines:
SQLite's FTS5 table and PostgreSQL's ``tsvector`` (on ``generations``, migration 0007, copied
to ``images`` with its own GIN index, 0011), with the same meaning on both: every word must
appear in the prompt as a whole word (``word*``: a word starting so), case folded, no stemming.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.base import ImageChanges, ImageRemoval
from imagegate.db.engine import TransactionRunner, insert_rows
from imagegate.db.tables import cache_entries, generations, image_tags, images, users
from imagegate.errors import InvalidRequest
from imagegate.models import ImageQuery, ImageRecord, Outcome, StoredImage

MAX_SEARCH_WORDS = 16
_WORD = re.compile(r"([^\W_]+)(\*?)")
"""Letters and digits: what both engines' tokenizers (unicode61, PostgreSQL's parser) keep."""

_COLUMNS = (*images.c, generations.c.prompt)


def search_words(q: str) -> list[tuple[str, bool]]:
    """``q`` as ``(word, is_prefix)`` pairs, lower-cased; at most ``MAX_SEARCH_WORDS``."""
    words = [(m.group(1).lower(), bool(m.group(2))) for m in _WORD.finditer(q)]
    if not words:
        raise InvalidRequest("'q' has no word to search for.", param="q")
    if len(words) > MAX_SEARCH_WORDS:
        raise InvalidRequest(f"'q' may have at most {MAX_SEARCH_WORDS} words.", param="q")
    return words


def _fts_match(words: list[tuple[str, bool]]) -> str:
    """An FTS5 query for a prompt with every word (letters and digits only, so quoting them is
    all the escaping FTS5 needs)."""
    phrase = " AND ".join(f'"{w}"' + ("*" if prefix else "") for w, prefix in words)
    return f"prompt : ({phrase})"


def _tsquery(words: list[tuple[str, bool]]) -> str:
    return " & ".join(f"'{w}'" + (":*" if prefix else "") for w, prefix in words)


SQLITE_SEARCH_SMALL = 2000
"""Matches (over everyone's prompts) below which SQLite looks the matches' images up by
generation id instead of walking the page's index: for a rare word the walk could pass every
image of the user before it fills a page."""

_FTS = sa.table("generations_fts", sa.column("rowid"), sa.column("generation_id"))


def _fts_matching(q: str) -> sa.TextClause:
    return sa.text("generations_fts MATCH :match").bindparams(match=_fts_match(search_words(q)))


def _few_matches(conn: Connection, q: str) -> bool:
    """Whether fewer than ``SQLITE_SEARCH_SMALL`` prompts match ``q`` (FTS5 counts rowids
    from its doclists alone)."""
    rowids = sa.select(_FTS.c.rowid).where(_fts_matching(q)).limit(SQLITE_SEARCH_SMALL)
    count = sa.select(sa.func.count()).select_from(rowids.subquery())
    return bool(conn.execute(count).scalar_one() < SQLITE_SEARCH_SMALL)


def _sqlite_search(q: str, *, few: bool) -> sa.ColumnElement[bool]:
    """The search condition for SQLite, chosen by how many prompts match.

    Many matches: the page walks its index newest first and tests each row's
    ``search_rowid`` (its generation's row in ``generations_fts``, migration 0011) against
    the matches' rowids, which FTS5 lists from its doclists without reading a row; the walk
    stops after a page. Few: their generation ids are read and their images looked up by
    ``ix_images_generation_id`` (``_page`` takes the other indexes out of the planner's
    reach, or it may walk every image of a user looking for a rare word)."""
    if few:
        return images.c.generation_id.in_(sa.select(_FTS.c.generation_id).where(_fts_matching(q)))
    rowids = sa.select(_FTS.c.rowid).where(_fts_matching(q))
    return sa.literal_column("images.search_rowid").in_(rowids)


def _unindexed(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``column`` behind SQLite's no-op unary ``+``: the same values, but no index serves it
    (the documented way to steer SQLite's planner away from an index)."""
    assert isinstance(column, sa.Column)
    return sa.literal_column(f"+{column.table.name}.{column.name}", column.type)


def _filters(
    dialect: str, user_id: str | None, query: ImageQuery, order: tuple[Any, Any], *, few: bool
) -> list[sa.ColumnElement[bool]]:
    """The page's conditions; ``order`` is the ``(created_at, id)`` pair the page walks;
    ``few``: a SQLite search with few matches (``_few_matches``)."""
    where: list[sa.ColumnElement[bool]] = []
    owner = image_tags.c.user_id if query.tag is not None else images.c.user_id
    if query.tag is not None:
        where.append(image_tags.c.tag == query.tag)
    if user_id is not None:
        where.append((_unindexed(owner) if few else owner) == user_id)
    if query.model is not None:
        where.append(images.c.model == query.model)
    if query.provider is not None:
        where.append(images.c.provider == query.provider)
    if query.outcome is not None:
        where.append(images.c.outcome == query.outcome.value)
    if query.start is not None:
        where.append(order[0] >= query.start)
    if query.end is not None:
        where.append(order[0] < query.end)
    if query.q is not None:
        if dialect == "sqlite":
            where.append(_sqlite_search(query.q, few=few))
        else:
            tsquery = sa.func.to_tsquery(
                sa.literal_column("'simple'"), _tsquery(search_words(query.q))
            )
            where.append(sa.literal_column("images.prompt_search").bool_op("@@")(tsquery))
    return where


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(row: sa.Row[Any]) -> ImageRecord:
    m = row._mapping
    return ImageRecord(
        id=m["id"],
        generation_id=m["generation_id"],
        user_id=m["user_id"],
        position=m["position"],
        image=StoredImage(
            content_hash=m["content_hash"],
            storage_key=m["storage_key"],
            mime=m["mime"],
            width=m["width"],
            height=m["height"],
            byte_size=m["byte_size"],
            revised_prompt=m["revised_prompt"],
            thumbnail_key=m["thumbnail_key"],
            placeholder=m["placeholder"],
        ),
        model=m["model"],
        provider=m["provider"],
        outcome=Outcome(m["outcome"]),
        prompt=m["prompt"],
        created_at=_aware(m["created_at"]),
        alt_text=m["alt_text"],
        tags=tuple(m["tags"] or ()),
        pinned=bool(m["pinned"]),
    )


def _select_one(image_id: str) -> sa.Select[Any]:
    return (
        sa.select(*_COLUMNS)
        .join(generations, generations.c.id == images.c.generation_id)
        .where(images.c.id == image_id)
    )


def _update(conn: Connection, image_id: str, changes: ImageChanges) -> ImageRecord | None:
    row = conn.execute(_select_one(image_id).with_for_update(of=images)).first()
    if row is None:
        return None
    values: dict[str, Any] = {}
    if changes.reset_alt_text:
        values["alt_text"] = None
    elif changes.alt_text is not None:
        values["alt_text"] = changes.alt_text
    if changes.pinned is not None:
        values["pinned"] = changes.pinned
    if changes.tags is not None:
        values["tags"] = list(changes.tags)
        conn.execute(image_tags.delete().where(image_tags.c.image_id == image_id))
        insert_rows(
            conn,
            image_tags,
            [
                {
                    "image_id": image_id,
                    "tag": t,
                    "user_id": row.user_id,
                    "created_at": row.created_at,
                }
                for t in changes.tags
            ],
        )
    if values:
        conn.execute(images.update().where(images.c.id == image_id).values(**values))
    return _record(conn.execute(_select_one(image_id)).one())


def _referenced(conn: Connection, key: str) -> bool:
    """Whether any image record still uses ``key`` as its image or its thumbnail."""
    as_image = sa.select(images.c.id).where(
        images.c.content_hash == key.partition(".")[0], images.c.storage_key == key
    )
    as_thumbnail = sa.select(images.c.id).where(images.c.thumbnail_key == key)
    found = conn.execute(as_image.limit(1)).first() or conn.execute(as_thumbnail.limit(1)).first()
    return found is not None


def _delete(conn: Connection, image_id: str) -> ImageRemoval | None:
    row = conn.execute(_select_one(image_id).with_for_update(of=images)).first()
    if row is None:
        return None
    record = _record(row)
    conn.execute(image_tags.delete().where(image_tags.c.image_id == image_id))
    conn.execute(images.delete().where(images.c.id == image_id))
    # The generation's cache entry would answer the next identical request with this image.
    entries = [
        (e.scope, e.cache_key)
        for e in conn.execute(
            sa.select(cache_entries.c.scope, cache_entries.c.cache_key).where(
                cache_entries.c.generation_id == record.generation_id
            )
        )
    ]
    if entries:
        conn.execute(
            cache_entries.delete().where(cache_entries.c.generation_id == record.generation_id)
        )
    keys = [record.image.storage_key]
    if record.image.thumbnail_key is not None:
        keys.append(record.image.thumbnail_key)
    return ImageRemoval(
        record=record,
        unreferenced_keys=tuple(k for k in keys if not _referenced(conn, k)),
        cache_entries=tuple(entries),
    )


def _page(
    conn: Connection,
    user_id: str | None,
    query: ImageQuery,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[ImageRecord]:
    """One page newest first: a backward walk of one index that stops after ``limit`` rows.

    With a tag the walk is over ``image_tags`` (which keeps each image's ``created_at``), so
    the tag's index gives the order; otherwise over one of the ``images`` indexes."""
    source: sa.FromClause
    order: tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]
    if query.tag is not None:
        order = (image_tags.c.created_at, image_tags.c.image_id)
        source = image_tags.join(images, images.c.id == image_tags.c.image_id)
    else:
        order = (images.c.created_at, images.c.id)
        source = images
    few = query.q is not None and conn.dialect.name == "sqlite" and _few_matches(conn, query.q)
    if few:
        order = (_unindexed(order[0]), _unindexed(order[1]))
    where = _filters(conn.dialect.name, user_id, query, order, few=few)
    if before is not None:
        where.append(
            sa.tuple_(*order)
            < sa.tuple_(
                sa.literal(before[0], images.c.created_at.type),
                sa.literal(before[1], images.c.id.type),
            )
        )
    # The page's rows first, their prompts after: when the matches come from an index
    # other than the page's order (a rare search word), only ``limit`` of them are joined.
    page = (
        sa.select(*images.c)
        .select_from(source)
        .where(*where)
        .order_by(order[0].desc(), order[1].desc())
        .limit(limit)
        .subquery("page")
    )
    statement: sa.Select[Any] = (
        sa.select(*page.c, generations.c.prompt)
        .join(generations, generations.c.id == page.c.generation_id)
        .order_by(page.c.created_at.desc(), page.c.id.desc())
    )
    if conn.dialect.name == "postgresql":
        # Each page is planned for its own values: a generic plan (PostgreSQL's choice after
        # five runs of one prepared statement on a connection) cannot tell a common search
        # word (walk the owner's index) from a rare one (take the GIN index's matches); one
        # walked all 250,000 images of a user for a word that matched none (7-10 s, measured).
        # Local to this read's transaction.
        conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
    return [_record(row) for row in conn.execute(statement)]


class SqlImageRepository:
    """Reads on the async ``engine``; edits and deletes through ``writes`` (one transaction
    each, on SQLite's writer thread)."""

    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes
        self._dialect = engine.dialect.name

    async def find_user(self, name_or_id: str) -> str | None:
        query = sa.select(users.c.id).where(
            sa.or_(users.c.id == name_or_id, users.c.name == name_or_id)
        )
        async with self._engine.connect() as conn:
            found = [row.id for row in await conn.execute(query)]
        # An id wins over a name that happens to look like one.
        found.sort(key=lambda user_id: user_id != name_or_id)
        return found[0] if found else None

    async def page(
        self,
        *,
        user_id: str | None,
        query: ImageQuery,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[ImageRecord]:
        async with self._engine.connect() as conn:
            return await conn.run_sync(lambda sync: _page(sync, user_id, query, before, limit))

    async def get(self, image_id: str) -> ImageRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_select_one(image_id))).first()
        return None if row is None else _record(row)

    async def of_generation(self, generation_id: str) -> list[ImageRecord]:
        statement = (
            sa.select(*_COLUMNS)
            .join(generations, generations.c.id == images.c.generation_id)
            .where(images.c.generation_id == generation_id)
            .order_by(images.c.position)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(statement)]

    async def update(self, image_id: str, changes: ImageChanges) -> ImageRecord | None:
        return await self._writes(lambda conn: _update(conn, image_id, changes))

    async def delete(self, image_id: str) -> ImageRemoval | None:
        return await self._writes(lambda conn: _delete(conn, image_id))

    async def thumbnail_source(self, thumbnail_key: str) -> str | None:
        """The storage key of an image whose thumbnail is ``thumbnail_key``, if any."""
        statement = (
            sa.select(images.c.storage_key).where(images.c.thumbnail_key == thumbnail_key).limit(1)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(statement)).scalar_one_or_none()

    async def set_placeholder(self, thumbnail_key: str, placeholder: str) -> None:
        """Give every record of ``thumbnail_key`` that has none its blur-up placeholder."""
        statement = (
            images.update()
            .where(images.c.thumbnail_key == thumbnail_key, images.c.placeholder.is_(None))
            .values(placeholder=placeholder)
        )
        await self._writes(lambda conn: conn.execute(statement))
