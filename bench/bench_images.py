"""The image library at scale: ``GET /v1/images`` and the Web gallery over a seeded database.

Seeds ``--rows`` image records in a PostgreSQL database made for the run (``bench_images`` on
the server of ``IMAGEGATE_TEST_POSTGRES_URL``, dropped at the end) and ``--sqlite-rows`` in a
SQLite data dir, through the real schema (``imagegate migrate``, then COPY on PostgreSQL and
batched inserts on SQLite), then starts one real ``imagegate serve`` process on each and drives
it with wrk (Debian package ``wrk``) on loopback:

- ``first``: the first page (50, the API's default), newest first;
- ``deep``: a page from a cursor 90% of the way down the caller's images;
- ``filtered``: model + a 30-day ``from``/``to`` window + a tag;
- ``search``: ``q=`` with two words (prompt full-text search), one common word and one rare;

each as the heavy user who owns ``--share`` of all images (owner-scoped), and the first, deep
and search pages as an admin (everyone's). Then a mixed load of all of them at concurrency 64
and the gateway's peak RSS (``VmHWM``), the Web gallery's first page (40 thumbnails, signed in
with a session cookie) and the HTML + CSS + JS bytes of every page.

The seeded data: ``--users`` users plus the heavy one, eight models across five providers,
creation times spread over the last 365 days, prompts built from a few hundred words with
Zipf-like frequencies (so words range from very common to rare), 0-3 tags per image from 40.

    python bench/bench_images.py [--rows 1000000] [--sqlite-rows 200000] [--duration 5]
        [--concurrency 1 16] [--skip-sqlite] [--skip-postgres] [--explain]
        [--database bench_images] [--keep | --seed-only | --reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import ServerProcess, environment, run_cli

from bench.bench_http import peak_rss_mib
from bench.bench_overhead import UNLIMITED
from bench.wrk import get_script, run_wrk
from imagegate.db.engine import insert_rows
from imagegate.db.tables import generations, image_tags, images, users
from imagegate.storage.images import placeholder

ADMIN_URL = os.environ.get(
    "IMAGEGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
DATABASE = "bench_images"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 365
CHUNK = 50_000


def _split(text: str, sep: str = "|") -> list[str]:
    return [part for part in text.split(sep) if part]


MODELS = [  # (model, provider, weight)
    ("gpt-image-1", "openai", 30),
    ("gpt-image-1-mini", "openai", 20),
    ("dall-e-3", "openai", 12),
    ("flux-1-schnell", "cloudflare", 12),
    ("stable-image-core", "stability", 9),
    ("imagen-4", "google", 8),
    ("sdxl", "cloudflare", 5),
    ("builtin", "builtin", 4),
]
OUTCOMES = [("generated", 80), ("cache_hit", 15), ("coalesced", 5)]
SUBJECTS = _split(
    "fox cat dog owl dragon robot astronaut castle lighthouse city forest mountain river "
    "waterfall ship train car bicycle woman man child knight wizard samurai whale octopus "
    "butterfly tiger wolf horse deer bear rabbit penguin flower tree garden cabin temple "
    "bridge tower market library cafe kitchen spaceship volcano island desert glacier "
    "jellyfish hummingbird elephant giraffe koala panda lion eagle raven phoenix unicorn",
    " ",
)
ADJECTIVES = _split(
    "red blue golden silver ancient futuristic tiny giant cozy abandoned mysterious "
    "glowing misty sunny snowy rainy neon vintage rustic elegant whimsical majestic "
    "serene stormy colorful minimalist ornate crystal wooden mechanical floating "
    "enchanted haunted peaceful bustling lonely curious sleepy playful fierce gentle",
    " ",
)
ACTIONS = _split(
    "sitting on|reading in|flying over|walking through|sleeping under|dancing in|"
    "standing beside|hiding behind|running across|swimming in|looking at"
)
PLACES = _split(
    "the snow|a meadow|the rain|a neon city at night|a misty forest|the desert at dusk|"
    "a coral reef|the mountains|a quiet library|a rooftop garden|outer space|a medieval "
    "village|an old harbor|a bamboo grove|a sunflower field|a frozen lake|a busy market|"
    "the clouds|a candlelit room|an autumn park|a tropical beach|a cyberpunk alley|"
    "a cathedral|a lavender field|the northern lights"
)
STYLES = _split(
    "oil painting|watercolor|digital art|photorealistic|studio photo|pixel art|"
    "isometric 3d render|anime style|pencil sketch|ukiyo-e woodblock print|low poly|"
    "art nouveau poster|cinematic still|children's book illustration|charcoal drawing|"
    "claymation|stained glass|vaporwave|line art|35mm film photo"
)
LIGHTS = _split(
    "golden hour|soft morning light|dramatic lighting|rim light|volumetric fog|"
    "moonlight|overcast|backlit|candlelight|high contrast|bokeh|blue hour"
)
DETAILS = _split(
    "highly detailed|8k|trending on artstation|wide angle|close-up|symmetrical|"
    "shallow depth of field|intricate|muted colors|vibrant colors|award winning|"
    "by a famous artist|matte painting|octane render|sharp focus"
)
TAGS = _split(
    "portrait|landscape|wallpaper|logo|concept art|character|environment|product|icon|"
    "poster|cover|album art|storyboard|moodboard|reference|sketch|final|draft|favorite|"
    "client:acme|client:globex|client:initech|campaign:spring|campaign:winter|web|print|"
    "social|instagram|banner|avatar|sticker|pattern|texture|ui|mockup|game asset|"
    "blog header|newsletter|pitch deck|print ready"
)

SEARCH_TWO = "fox snow"
SEARCH_COMMON = "golden"
SEARCH_RARE = "unicorn"
FILTER_MODEL = "gpt-image-1"
FILTER_TAG = "wallpaper"


def zipf_weights(n: int, s: float = 1.0) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(n)]


@dataclass
class Seeded:
    heavy_user: str
    user_key: str
    admin_key: str
    image_count: int


class Corpus:
    """Deterministic rows for ``images``, ``generations`` and ``image_tags``, made in chunks."""

    def __init__(self, heavy_user: str, others: list[str], share: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.heavy_user = heavy_user
        self.others = others
        self.share = share
        thumb = Image.new("RGB", (300, 300), (120, 80, 200))
        self.placeholder = placeholder(thumb)

    def prompts(self, count: int) -> list[str]:
        r = self.rng
        parts = [
            r.choices(ADJECTIVES, zipf_weights(len(ADJECTIVES)), k=count),
            r.choices(SUBJECTS, zipf_weights(len(SUBJECTS)), k=count),
            r.choices(ACTIONS, zipf_weights(len(ACTIONS), 0.7), k=count),
            r.choices(PLACES, zipf_weights(len(PLACES)), k=count),
            r.choices(STYLES, zipf_weights(len(STYLES), 0.8), k=count),
            r.choices(LIGHTS, zipf_weights(len(LIGHTS), 0.8), k=count),
            r.choices(DETAILS, zipf_weights(len(DETAILS), 0.8), k=count),
        ]
        out = []
        for adjective, subject, action, place, style, light, detail in zip(*parts, strict=True):
            words = [f"a {adjective} {subject} {action} {place}", style]
            if r.random() < 0.6:
                words.append(light)
            if r.random() < 0.4:
                words.append(detail)
            out.append(", ".join(words))
        return out

    def chunk(self, count: int) -> tuple[list[tuple[Any, ...]], ...]:
        """``count`` images (and their generations and tags) as row tuples in the column order
        of ``GENERATION_COLUMNS``, ``IMAGE_COLUMNS`` and ``TAG_COLUMNS``."""
        r = self.rng
        models = r.choices(MODELS, [m[2] for m in MODELS], k=count)
        outcomes = r.choices([o[0] for o in OUTCOMES], [o[1] for o in OUTCOMES], k=count)
        prompts = self.prompts(count)
        gens: list[tuple[Any, ...]] = []
        imgs: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        tag_weights = zipf_weights(len(TAGS), 0.9)
        made = 0
        while made < count:
            n = min(r.choices((1, 2, 4), (85, 10, 5))[0], count - made)
            model, provider, _ = models[made]
            outcome = outcomes[made]
            user = self.heavy_user if r.random() < self.share else r.choice(self.others)
            created = NOW - timedelta(seconds=r.random() * DAYS * 86400)
            generation_id = os.urandom(16).hex()
            cost = r.choice((2_000, 11_000, 40_000, 80_000)) * n
            params = json.dumps({"size": "1024x1024", "quality": "medium", "n": n})
            gens.append(
                (generation_id, user, None, model, provider, model, prompts[made], params,
                 os.urandom(32).hex(), outcome, n, 1, "[]", r.randint(800, 20_000), cost,
                 0 if outcome != "generated" else cost, cost if outcome != "generated" else 0,
                 None, None, created, created + timedelta(seconds=r.randint(1, 20)), None,
                 None)  # source_generation_id, enhanced_prompt (0009)
            )  # fmt: skip
            for position in range(n):
                image_id = os.urandom(16).hex()
                digest = os.urandom(32).hex()
                thumb = os.urandom(32).hex()
                chosen = sorted(set(r.choices(TAGS, tag_weights, k=r.choice((0, 0, 1, 1, 2, 3)))))
                imgs.append(
                    (image_id, generation_id, position, digest, f"{digest}.png", "image/png",
                     1024, 1024, r.randint(150_000, 2_500_000), None,
                     created + timedelta(microseconds=position), user, model, provider, outcome,
                     f"{thumb}.webp", self.placeholder, None, json.dumps(chosen),
                     r.random() < 0.02)
                )  # fmt: skip
                at = created + timedelta(microseconds=position)
                tags.extend((image_id, tag, user, at) for tag in chosen)
            made += n
        return gens, imgs, tags


GENERATION_COLUMNS = [c.name for c in generations.c if c.name != "prompt_search"]
IMAGE_COLUMNS = [c.name for c in images.c]
TAG_COLUMNS = [c.name for c in image_tags.c]


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        yield min(CHUNK, total)
        total -= CHUNK


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_dsn(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


def database_url(name: str) -> str:
    return sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(False)


async def create_database(name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


SEEDED_TABLES = ("generations", "images", "image_tags")


def _make_chunk(heavy: str, others: list[str], share: float, seed: int, count: int) -> Any:
    return Corpus(heavy, others, share, seed).chunk(count)


async def seed_postgres(url: str, rows: int, share: float, user_count: int) -> str:
    """Seed; return the heavy user's id.

    A bulk load as a restore does it: the secondary indexes and foreign keys the migrations
    made are dropped, the rows COPYed in, then the same indexes and constraints are made again
    from their own definitions (``pg_get_indexdef``, ``pg_get_constraintdef``). Rows are made
    in a second process while the previous chunk is copied.
    """
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        heavy = await conn.fetchval("SELECT id FROM users WHERE name = 'bench'")
        others = [os.urandom(16).hex() for _ in range(user_count)]
        await conn.copy_records_to_table(
            "users",
            records=[(uid, f"user{i:05d}", "user", NOW) for i, uid in enumerate(others)],
            columns=["id", "name", "role", "created_at"],
        )
        indexes = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def "
            "FROM pg_index i WHERE i.indrelid::regclass::text = ANY($1) AND NOT i.indisprimary",
            list(SEEDED_TABLES),
        )
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY($1)",
            list(SEEDED_TABLES),
        )
        for c in constraints:
            await conn.execute(f'ALTER TABLE {c["tbl"]} DROP CONSTRAINT "{c["conname"]}"')
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        loop = asyncio.get_running_loop()
        phase = time.monotonic()
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            sizes = list(enumerate(_chunks(rows)))
            ahead: list[asyncio.Future[Any]] = []
            while sizes or ahead:
                while sizes and len(ahead) < 2:  # two chunks made ahead of the copy, no more
                    n, count = sizes.pop(0)
                    ahead.append(
                        loop.run_in_executor(pool, _make_chunk, heavy, others, share, n, count)
                    )
                gens, imgs, tags = await ahead.pop(0)
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "generations", records=gens, columns=GENERATION_COLUMNS
                    )
                    await conn.copy_records_to_table("images", records=imgs, columns=IMAGE_COLUMNS)
                    await conn.copy_records_to_table(
                        "image_tags", records=tags, columns=TAG_COLUMNS
                    )
        copied = time.monotonic()
        for index in indexes:
            await conn.execute(index["def"])
        indexed = time.monotonic()
        for c in constraints:
            await conn.execute(f'ALTER TABLE {c["tbl"]} ADD CONSTRAINT "{c["conname"]}" {c["def"]}')
        await conn.execute("VACUUM ANALYZE")
        print(f"seeding phases: COPY {copied - phase:.0f} s, indexes and constraints "
              f"{indexed - copied:.0f} s, VACUUM ANALYZE {time.monotonic() - indexed:.0f} s",
              flush=True)  # fmt: skip
        return str(heavy)
    finally:
        await conn.close()


async def pg_rows(url: str, query: str, *args: object) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# --- SQLite -------------------------------------------------------------------------------


def seed_sqlite(db_path: Path, rows: int, share: float, user_count: int) -> str:
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:
            heavy = conn.execute(sa.select(users.c.id).where(users.c.name == "bench")).scalar_one()
            others = [os.urandom(16).hex() for _ in range(user_count)]
            insert_rows(
                conn,
                users,
                [{"id": u, "name": f"user{i:05d}", "role": "user", "created_at": NOW}
                 for i, u in enumerate(others)],
            )  # fmt: skip
        corpus = Corpus(heavy, others, share)
        for count in _chunks(rows):
            gens, imgs, tags = corpus.chunk(count)
            with engine.begin() as conn:
                for table, columns, chunk in (
                    (generations, GENERATION_COLUMNS, gens),
                    (images, IMAGE_COLUMNS, imgs),
                    (image_tags, TAG_COLUMNS, tags),
                ):
                    insert_rows(
                        conn, table, [dict(zip(columns, row, strict=True)) for row in chunk]
                    )
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        return str(heavy)
    finally:
        engine.dispose()


# --- the runs -----------------------------------------------------------------------------


def cursor_at(created_at: datetime, image_id: str) -> str:
    """The API's cursor for the position after this row (services/images.encode_cursor)."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    stamp = (created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{stamp}:{image_id}".encode()).decode().rstrip("=")


def queries(deep_user: str, deep_admin: str) -> dict[str, tuple[str, str]]:
    """name -> (scope, path)."""
    start = (NOW - timedelta(days=90)).date().isoformat()
    end = (NOW - timedelta(days=60)).date().isoformat()
    filtered = urllib.parse.urlencode(
        {"model": FILTER_MODEL, "from": start, "to": end, "tag": FILTER_TAG}
    )
    return {
        "first page": ("user", "/v1/images"),
        "deep cursor (90%)": ("user", f"/v1/images?cursor={deep_user}"),
        f"filtered ({FILTER_MODEL}, 30 days, tag {FILTER_TAG})": (
            "user", f"/v1/images?{filtered}"
        ),
        f"search q={SEARCH_TWO}": (
            "user", "/v1/images?" + urllib.parse.urlencode({"q": SEARCH_TWO})
        ),
        f"search q={SEARCH_COMMON}": (
            "user", "/v1/images?" + urllib.parse.urlencode({"q": SEARCH_COMMON})
        ),
        f"search q={SEARCH_RARE}": (
            "user", "/v1/images?" + urllib.parse.urlencode({"q": SEARCH_RARE})
        ),
        "admin: first page": ("admin", "/v1/images"),
        "admin: deep cursor (90%)": ("admin", f"/v1/images?cursor={deep_admin}"),
        f"admin: search q={SEARCH_TWO}": (
            "admin", "/v1/images?" + urllib.parse.urlencode({"q": SEARCH_TWO})
        ),
    }  # fmt: skip


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_backend(
    label: str,
    server: ServerProcess,
    seeded: Seeded,
    deep: tuple[str, str],
    counts: dict[str, int],
    args: argparse.Namespace,
    folder: Path,
) -> None:
    keys = {"user": seeded.user_key, "admin": seeded.admin_key}
    planned = queries(*deep)
    print(f"\n### {label}: {seeded.image_count:,} images, heavy user owns {counts['heavy']:,}")
    print(
        f"(search '{SEARCH_TWO}' matches {counts['two']:,} of the heavy user's images, "
        f"'{SEARCH_COMMON}' {counts['common']:,}, '{SEARCH_RARE}' {counts['rare']:,}; "
        f"the filter {counts['filtered']:,})\n"
    )
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        for name, (scope, path) in planned.items():  # every query answers, and pages fill
            r = client.get(path, headers={"Authorization": f"Bearer {keys[scope]}"})
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            counts[f"page:{name}"] = len(r.json()["data"])
    columns = " | ".join(f"c{c} p50 ms | c{c} p99 ms | c{c} req/s" for c in args.concurrency)
    print(f"| query | rows on page | {columns} |")
    print("|---|---:|" + "---:|---:|---:|" * len(args.concurrency))
    base = server.base_url
    for name, (scope, path) in planned.items():
        script = get_script(
            folder, _slug(label + name), {"Authorization": f"Bearer {keys[scope]}"}, [path]
        )
        run_wrk(base, script, 1, 1)  # warm-up
        cells = []
        for concurrency in args.concurrency:
            result = run_wrk(base, script, concurrency, args.duration)
            assert result["errors"] == 0, (name, result)
            cells.append(f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['rps']:.0f}")
        print(f"| {name} | {counts[f'page:{name}']} | " + " | ".join(cells) + " |", flush=True)
    # all of them at once, at concurrency 64, for the gateway's peak memory
    user_paths = [p for s, p in planned.values() if s == "user"]
    script = get_script(
        folder, _slug(label) + "-mixed", {"Authorization": f"Bearer {seeded.user_key}"}, user_paths
    )
    result = run_wrk(base, script, 64, args.duration * 2)
    print(f"\nmixed load of the owner-scoped queries at concurrency 64 for {args.duration * 2} s: "
          f"{result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms, "
          f"{result['errors']:.0f} non-2xx; peak RSS of the gateway process (VmHWM) "
          f"{peak_rss_mib(server.pid):.1f} MiB", flush=True)  # fmt: skip


def web(server: ServerProcess, seeded: Seeded, args: argparse.Namespace, folder: Path) -> None:
    """The gallery's first page through the real server, and every page's bytes."""
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        signin = client.get("/")
        signed = httpx.Client(base_url=server.base_url, timeout=60)
        r = signed.post("/signin", data={"api_key": seeded.user_key})
        assert r.status_code == 303, r.text[:300]
        cookie = "; ".join(f"{k}={v}" for k, v in signed.cookies.items())
        admin = httpx.Client(base_url=server.base_url, timeout=60)
        assert admin.post("/signin", data={"api_key": seeded.admin_key}).status_code == 303
        gallery = signed.get("/")
        assert gallery.status_code == 200, gallery.text[:300]
        found = re.search(r'href="/images/([0-9a-f]+)"', gallery.text)
        assert found is not None, gallery.text[:300]
        image_id = found.group(1)
        pages = {
            "sign in": signin,
            "gallery (first page)": gallery,
            "gallery search": signed.get("/", params={"q": SEARCH_TWO}),
            "image detail": signed.get(f"/images/{image_id}"),
            "generate": signed.get("/generate"),
            "usage": signed.get("/usage"),
            "admin: keys": admin.get("/admin/keys"),
        }
        print("\n| page | status | HTML bytes | CSS bytes | JS bytes | total | thumbnails |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, response in pages.items():
            html = response.content
            css = js = 0
            for href in re.findall(rb'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', html):
                css += len(client.get(href.decode()).content)
            for src in re.findall(rb'<script[^>]+src="([^"]+)"', html):
                js += len(client.get(src.decode()).content)
            for inline in re.findall(rb"<script(?![^>]*src=)[^>]*>(.*?)</script>", html, re.S):
                js += len(inline)
            thumbs = html.count(b'class="pic"')
            print(f"| {name} | {response.status_code} | {len(html):,} | {css:,} | {js:,} | "
                  f"{len(html) + css + js:,} | {thumbs} |")  # fmt: skip
        signed.close()
        admin.close()
    script = get_script(folder, "gallery", {"Cookie": cookie}, ["/"])
    run_wrk(server.base_url, script, 1, 1)
    tiles = gallery.text.count('class="pic"')
    print(f"\nWeb gallery first page ({tiles} thumbnails), signed in:")
    print("| concurrency | p50 ms | p99 ms | req/s |")
    print("|---:|---:|---:|---:|")
    for concurrency in args.concurrency:
        result = run_wrk(server.base_url, script, concurrency, args.duration)
        assert result["errors"] == 0, result
        print(f"| {concurrency} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
              f"{result['rps']:.0f} |", flush=True)  # fmt: skip


def _keys(data_dir: Path, env: dict[str, str]) -> tuple[str, str]:
    unlimited = ("--requests-per-minute", "0", "--concurrency", "0")
    made = []
    for name, role in (("bench", "user"), ("benchadmin", "admin")):
        created = run_cli("keys", "create", "--name", name, "--role", role, *unlimited,
                          data_dir=data_dir, env=env)  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(created.stderr)
        made.append(created.stdout.strip())
    return made[0], made[1]


def _migrate(data_dir: Path, env: dict[str, str]) -> None:
    done = run_cli("migrate", data_dir=data_dir, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)


def _counts_sql(heavy: str, sqlite: bool = False) -> dict[str, str]:
    """How many rows each query could return (the script's own constants, no user input)."""

    def stamp(moment: datetime) -> str:  # SQLite keeps SQLAlchemy's naive UTC text
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment.isoformat()

    start = stamp(NOW - timedelta(days=90))
    end = stamp(NOW - timedelta(days=60))
    return {
        "heavy": f"SELECT count(*) FROM images WHERE user_id = '{heavy}'",  # noqa: S608
        "filtered": (
            "SELECT count(*) FROM images i JOIN image_tags t ON t.image_id = i.id "  # noqa: S608
            f"WHERE i.user_id = '{heavy}' AND i.model = '{FILTER_MODEL}' "
            f"AND t.tag = '{FILTER_TAG}' AND i.created_at >= '{start}' AND i.created_at < '{end}'"
        ),
    }


async def bench_postgres(args: argparse.Namespace, folder: Path) -> None:
    data_dir = folder / "pg-data"
    if args.reuse:  # seeded by an earlier --keep run: new keys, the same heavy user
        url = database_url(args.database)
        env = environment(data_dir, IMAGEGATE_DATABASE__URL=url, **UNLIMITED)
        _migrate(data_dir, env)
        user_key, admin_key = _keys(data_dir, env)
        heavy = (await pg_rows(url, "SELECT id FROM users WHERE name = 'bench'"))[0][0]
        args.rows = (await pg_rows(url, "SELECT count(*) FROM images"))[0][0]
    else:
        url = await create_database(args.database)
        env = environment(data_dir, IMAGEGATE_DATABASE__URL=url, **UNLIMITED)
    try:
        if not args.reuse:
            started = time.monotonic()
            _migrate(data_dir, env)
            user_key, admin_key = _keys(data_dir, env)
            heavy = await seed_postgres(url, args.rows, args.share, args.users)
            seconds = time.monotonic() - started
            size = (
                await pg_rows(url, "SELECT pg_size_pretty(pg_database_size(current_database()))")
            )[0][0]
            print(f"PostgreSQL: migrated and seeded {args.rows:,} images in {seconds:.0f} s "
                  f"(COPY, then VACUUM ANALYZE); database size {size}", flush=True)  # fmt: skip
            if args.seed_only:
                print(f"kept: {url}")
                return
        counts = {k: (await pg_rows(url, q))[0][0] for k, q in _counts_sql(heavy).items()}
        for key, q in (("two", SEARCH_TWO), ("common", SEARCH_COMMON), ("rare", SEARCH_RARE)):
            tsq = " & ".join(q.split())
            counts[key] = (await pg_rows(
                url, "SELECT count(*) FROM images i JOIN generations g ON g.id = i.generation_id "
                "WHERE i.user_id = $1 AND g.prompt_search @@ to_tsquery('simple', $2)", heavy, tsq,
            ))[0][0]  # fmt: skip
        (row,) = await pg_rows(
            url, "SELECT created_at, id FROM images WHERE user_id = $1 "
            "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            heavy, int(counts["heavy"] * 0.9),
        )  # fmt: skip
        (arow,) = await pg_rows(
            url, "SELECT created_at, id FROM images ORDER BY created_at DESC, id DESC "
            "OFFSET $1 LIMIT 1", int(args.rows * 0.9),
        )  # fmt: skip
        deep = (cursor_at(row[0], row[1]), cursor_at(arow[0], arow[1]))
        seeded = Seeded(heavy, user_key, admin_key, args.rows)
        server = ServerProcess(data_dir, env={"IMAGEGATE_DATABASE__URL": url, **UNLIMITED}).start()
        try:
            run_backend("PostgreSQL", server, seeded, deep, counts, args, folder)
            if args.explain:
                await explain(url, heavy, deep[0])
            web(server, seeded, args, folder)
        finally:
            server.stop()
    finally:
        if not (args.keep or args.reuse or args.seed_only):
            await drop_database(args.database)


async def explain(url: str, heavy: str, deep: str) -> None:
    """EXPLAIN ANALYZE of the very statements the repository sends (captured as it runs them)."""
    from imagegate.db.engine import AsyncTransactions, create_engine
    from imagegate.db.images import SqlImageRepository
    from imagegate.models import ImageQuery
    from imagegate.services.images import decode_cursor
    from imagegate.settings import DatabaseSettings

    engine = create_engine(url, DatabaseSettings(url=url))
    sent: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        sent.append((statement, params))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    repo = SqlImageRepository(engine, AsyncTransactions(engine).run)
    start = NOW - timedelta(days=90)
    filtered = ImageQuery(
        model=FILTER_MODEL, start=start, end=start + timedelta(days=30), tag=FILTER_TAG
    )
    cases = {
        "first page": (ImageQuery(), None),
        "deep cursor": (ImageQuery(), decode_cursor(deep)),
        "filtered": (filtered, None),
        f"search {SEARCH_TWO}": (ImageQuery(q=SEARCH_TWO), None),
        f"search {SEARCH_COMMON}": (ImageQuery(q=SEARCH_COMMON), None),
        f"search {SEARCH_RARE}": (ImageQuery(q=SEARCH_RARE), None),
    }
    try:
        for name, (query, before) in cases.items():
            sent.clear()
            await repo.page(user_id=heavy, query=query, before=before, limit=51)
            *settings, (statement, params) = list(sent)
            async with engine.connect() as conn:
                for setting, setting_params in settings:  # the page's SET LOCALs, as it sends them
                    await conn.exec_driver_sql(setting, setting_params)
                plan = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                print(f"\n#### EXPLAIN ANALYZE: {name}\n```")
                print("\n".join(row[0] for row in plan))
                print("```", flush=True)
    finally:
        await engine.dispose()


def bench_sqlite(args: argparse.Namespace, folder: Path) -> None:
    data_dir = folder / "sqlite-data"
    env = environment(data_dir, **UNLIMITED)
    started = time.monotonic()
    _migrate(data_dir, env)
    user_key, admin_key = _keys(data_dir, env)
    db_path = data_dir / "imagegate.db"
    heavy = seed_sqlite(db_path, args.sqlite_rows, args.share, args.users)
    seconds = time.monotonic() - started
    print(f"\nSQLite: migrated and seeded {args.sqlite_rows:,} images in {seconds:.0f} s; "
          f"file size {db_path.stat().st_size / 2**20:.0f} MiB", flush=True)  # fmt: skip
    with sqlite3.connect(db_path) as conn:
        counts = {k: conn.execute(q).fetchone()[0] for k, q in _counts_sql(heavy, True).items()}
        for key, q in (("two", SEARCH_TWO), ("common", SEARCH_COMMON), ("rare", SEARCH_RARE)):
            match = "prompt : (" + " AND ".join(f'"{w}"' for w in q.split()) + ")"
            counts[key] = conn.execute(
                "SELECT count(*) FROM images WHERE user_id = ? AND generation_id IN "
                "(SELECT generation_id FROM generations_fts WHERE generations_fts MATCH ?)",
                (heavy, match),
            ).fetchone()[0]
        row = conn.execute(
            "SELECT created_at, id FROM images WHERE user_id = ? ORDER BY created_at DESC, id DESC "
            "LIMIT 1 OFFSET ?", (heavy, int(counts["heavy"] * 0.9)),
        ).fetchone()  # fmt: skip
        arow = conn.execute(
            "SELECT created_at, id FROM images ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
            (int(args.sqlite_rows * 0.9),),
        ).fetchone()
    deep = tuple(cursor_at(datetime.fromisoformat(r[0]), r[1]) for r in (row, arow))
    seeded = Seeded(heavy, user_key, admin_key, args.sqlite_rows)
    server = ServerProcess(data_dir, env=UNLIMITED).start()
    try:
        run_backend("SQLite", server, seeded, deep, counts, args, folder)  # type: ignore[arg-type]
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="images in PostgreSQL")
    parser.add_argument("--sqlite-rows", type=int, default=200_000, help="images in SQLite")
    parser.add_argument("--users", type=int, default=1000, help="users besides the heavy one")
    parser.add_argument("--share", type=float, default=0.25, help="the heavy user's share")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE (PostgreSQL)")
    parser.add_argument("--database", default=DATABASE, help="PostgreSQL database to (re)make")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument(
        "--seed-only", action="store_true", help="seed PostgreSQL, keep it and stop (for --reuse)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="bench the database an earlier --keep run seeded"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_postgres:
            asyncio.run(bench_postgres(args, folder))
        if not args.skip_sqlite:
            bench_sqlite(args, folder)


if __name__ == "__main__":
    main()
