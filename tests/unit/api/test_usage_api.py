"""GET /v1/usage and GET /v1/events through the real app, checked against the rows themselves.

Every expected figure is computed here from the ``generations`` rows read with sqlite3, so the
report is compared with the data, not with its own query.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from tests.support import DataDir
from tests.support.generations import generation_row, record_generations

from imagegate.container import Services
from imagegate.models import Outcome, Role
from imagegate.settings import Settings

OUTCOMES = ("generated", "cache_hit", "semantic_hit", "coalesced", "failed")
SAVING = ("cache_hit", "semantic_hit", "coalesced")


@dataclass(frozen=True)
class Row:
    user: str
    user_id: str
    key_prefix: str | None
    key_name: str | None
    model: str
    provider: str | None
    outcome: str
    n: int
    cost: int
    saved: int
    at: datetime


def _rows(data_dir: DataDir) -> list[Row]:
    found = data_dir.rows(
        "SELECT u.name, u.id, k.prefix, k.name, g.model, g.provider, g.outcome, g.n, "
        "g.cost_micro_usd, g.saved_cost_micro_usd, g.created_at FROM generations g "
        "JOIN users u ON u.id = g.user_id LEFT JOIN api_keys k ON k.id = g.api_key_id"
    )
    return [
        Row(*fields[:10], at=datetime.fromisoformat(str(fields[10])).replace(tzinfo=UTC))  # type: ignore[arg-type]
        for fields in found
    ]


def _usd(micro_usd: int) -> str:
    return f"{Decimal(micro_usd) / 1_000_000:.6f}"


def _counts(rows: list[Row]) -> dict[str, object]:
    return {
        "requests": len(rows),
        "images": sum(r.n for r in rows if r.outcome != "failed"),
        **{outcome: sum(r.outcome == outcome for r in rows) for outcome in OUTCOMES},
        "spend_usd": _usd(sum(r.cost for r in rows)),
        "saved_usd": _usd(sum(r.saved for r in rows if r.outcome in SAVING)),
    }


def _grouped(rows: list[Row], key: Callable[[Row], Hashable]) -> dict[Hashable, dict[str, object]]:
    groups: dict[Hashable, list[Row]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return {k: _counts(members) for k, members in groups.items()}


def _without_key(group: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in group.items() if k not in ("key", "key_name")}


@dataclass(frozen=True)
class World:
    """User A (the ``auth`` fixture), user B and an admin, with real and recorded requests."""

    user_a_id: str
    user_b: dict[str, str]
    admin: dict[str, str]
    now: datetime

    @property
    def window(self) -> dict[str, str]:
        start, end = self.now - timedelta(days=3), self.now + timedelta(minutes=1)
        return {"from": start.isoformat(), "to": end.isoformat()}

    def in_window(self, rows: list[Row], user: str | None = None) -> list[Row]:
        start, end = self.now - timedelta(days=3), self.now + timedelta(minutes=1)
        return [r for r in rows if start <= r.at < end and user in (None, r.user)]


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def world(
    client: httpx.AsyncClient, services: Services, settings: Settings, auth: dict[str, str]
) -> World:
    user_a = await services.keys.authenticate(auth["Authorization"])
    issued_b = await services.keys.create("user-b")
    admin = await services.keys.create("boss", Role.ADMIN)
    for prompt in ("a red fox", "a red fox", "a blue whale"):  # real requests, builtin, free
        response = await client.post(
            "/v1/images/generations",
            json={"prompt": prompt, "size": "256x256", "n": 2},
            headers=auth,
        )
        assert response.status_code == 200
    now = datetime.now(UTC)
    a, b = user_a.user_id, issued_b.key.user_id
    key_a, key_b = user_a.key_id, issued_b.key.id
    paid = {"model": "gpt-image-1", "provider": "openai"}
    imagen = {"model": "imagen-4", "provider": "google"}
    await record_generations(
        settings.database_url,
        [
            generation_row(a, now - timedelta(days=2), key_id=key_a, cost=40_000, **paid),
            generation_row(
                a, now - timedelta(days=1), key_id=key_a, outcome=Outcome.CACHE_HIT,
                saved=40_000, **paid,
            ),
            generation_row(
                a, now - timedelta(days=1), outcome=Outcome.COALESCED, n=2, saved=60_000,
                **imagen,
            ),
            generation_row(
                a, now - timedelta(hours=1), key_id=key_a, outcome=Outcome.FAILED, n=2,
                **imagen,
            ),
            generation_row(a, now - timedelta(hours=1), n=2, cost=60_000, provider=None),
            generation_row(a, now - timedelta(days=40), key_id=key_a, cost=999_999, **paid),
            generation_row(b, now - timedelta(hours=2), key_id=key_b, cost=1_000_000, **paid),
            generation_row(
                b, now - timedelta(hours=2), key_id=key_b, outcome=Outcome.CACHE_HIT,
                saved=1_000_000, **paid,
            ),
        ],
    )  # fmt: skip
    return World(user_a_id=a, user_b=_bearer(issued_b.secret), admin=_bearer(admin.secret), now=now)


async def test_totals_are_the_sums_of_the_rows_and_saved_is_hits_plus_coalesced(
    client: httpx.AsyncClient, auth: dict[str, str], world: World, data_dir: DataDir
) -> None:
    response = await client.get("/v1/usage", params=world.window, headers=auth)
    assert response.status_code == 200
    body = response.json()
    mine = world.in_window(_rows(data_dir), "user-a")
    assert body["totals"] == _counts(mine)
    assert body["totals"]["spend_usd"] == "0.100000"  # 0.04 + 0.06, exactly
    assert body["totals"]["saved_usd"] == "0.100000"  # the hit (0.04) + the coalesced (0.06)
    assert body["totals"]["failed"] == 1
    assert body["user"] == "user-a"
    assert body["group_by"] is None
    assert body["groups"] == []
    assert body["budget"] == []  # no limits on this key or its user
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert (start, end) == (world.now - timedelta(days=3), world.now + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("group_by", "key"),
    [
        ("day", lambda r: r.at.strftime("%Y-%m-%d")),
        ("model", lambda r: r.model),
        ("provider", lambda r: r.provider),
        ("key", lambda r: (r.key_prefix, r.key_name)),
    ],
)
async def test_each_grouping_partitions_the_totals(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    world: World,
    data_dir: DataDir,
    group_by: str,
    key: Callable[[Row], Hashable],
) -> None:
    for who, user in ((auth, "user-a"), (world.admin, None)):
        params = {**world.window, "group_by": group_by}
        body = (await client.get("/v1/usage", params=params, headers=who)).json()
        ungrouped = (await client.get("/v1/usage", params=world.window, headers=who)).json()
        expected = _grouped(world.in_window(_rows(data_dir), user), key)
        if group_by == "key":
            found = {(g["key"], g["key_name"]): _without_key(g) for g in body["groups"]}
        else:
            assert all(g["key_name"] is None for g in body["groups"])
            found = {g["key"]: _without_key(g) for g in body["groups"]}
        assert found == expected
        assert body["totals"] == ungrouped["totals"]
        figures = [k for k in body["totals"] if not k.endswith("_usd")]
        for figure in figures:
            assert sum(g[figure] for g in body["groups"]) == body["totals"][figure]


async def test_keys_show_their_prefix_and_name_never_their_hash(
    client: httpx.AsyncClient, auth: dict[str, str], user_key: str, world: World, data_dir: DataDir
) -> None:
    params = {**world.window, "group_by": "key"}
    response = await client.get("/v1/usage", params=params, headers=world.admin)
    keys = {(g["key"], g["key_name"]) for g in response.json()["groups"]}
    assert (user_key[:11], "user-a") in keys
    assert (None, None) in keys  # requests recorded without a key
    for (key_hash,) in data_dir.rows("SELECT key_hash FROM api_keys"):
        assert str(key_hash) not in response.text
    assert user_key not in response.text


async def test_a_user_never_sees_another_users_usage(
    client: httpx.AsyncClient, auth: dict[str, str], world: World, data_dir: DataDir
) -> None:
    rows = _rows(data_dir)
    b = (await client.get("/v1/usage", params=world.window, headers=world.user_b)).json()
    assert b["totals"] == _counts(world.in_window(rows, "user-b"))
    assert b["totals"]["spend_usd"] == "1.000000"
    a = (await client.get("/v1/usage", params=world.window, headers=auth)).json()
    assert a["totals"] == _counts(world.in_window(rows, "user-a"))

    # naming any user, even yourself or no one, is an admin's parameter: 404, like a stranger
    for user in ("user-a", world.user_a_id, "user-b", "nobody"):
        refused = await client.get("/v1/usage", params={"user": user}, headers=world.user_b)
        assert refused.status_code == 404
        assert refused.json()["error"] == {
            "message": f"No user {user!r}.",
            "type": "invalid_request_error",
            "param": "user",
            "code": "not_found",
        }


async def test_an_admin_sees_everyone_or_one_user(
    client: httpx.AsyncClient, world: World, data_dir: DataDir
) -> None:
    rows = _rows(data_dir)
    everyone = (await client.get("/v1/usage", params=world.window, headers=world.admin)).json()
    assert everyone["user"] is None
    assert everyone["totals"] == _counts(world.in_window(rows))
    for user in ("user-a", world.user_a_id):
        params = {**world.window, "user": user}
        one = (await client.get("/v1/usage", params=params, headers=world.admin)).json()
        assert one["user"] == "user-a"
        assert one["totals"] == _counts(world.in_window(rows, "user-a"))
    unknown = await client.get("/v1/usage", params={"user": "nobody"}, headers=world.admin)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "user"


async def test_the_period_is_half_open_and_defaults_to_this_utc_month(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    world: World,
    data_dir: DataDir,
    settings: Settings,
) -> None:
    boundary = (world.now - timedelta(hours=3)).replace(microsecond=0)
    await record_generations(
        settings.database_url, [generation_row(world.user_a_id, boundary, cost=7)]
    )
    second = timedelta(seconds=1)

    async def spend(start: datetime, end: datetime) -> str:
        params = {"from": start.isoformat(), "to": end.isoformat()}
        body = (await client.get("/v1/usage", params=params, headers=auth)).json()
        return str(body["totals"]["spend_usd"])

    assert await spend(boundary, boundary + second) == "0.000007"  # from is included
    assert await spend(boundary - second, boundary) == "0.000000"  # to is excluded

    body = (await client.get("/v1/usage", headers=auth)).json()
    end = datetime.fromisoformat(body["to"])
    month_start = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(body["from"]) == month_start
    assert world.now < end <= datetime.now(UTC)
    mine = [r for r in _rows(data_dir) if r.user == "user-a" and month_start <= r.at < end]
    assert body["totals"] == _counts(mine)

    january = await client.get("/v1/usage", params={"to": "2026-02-01"}, headers=auth)
    assert january.json()["from"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
    ],
)
async def test_bad_values_are_400_in_openai_shape(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], param: str
) -> None:
    response = await client.get("/v1/usage", params=params, headers=auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].rpartition(".")[2] == param


async def test_events_are_not_found_for_non_admins(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    unknown = await client.get("/v1/no-such-route", headers=auth)
    for params in ({}, {"limit": "100000"}):
        response = await client.get("/v1/events", params=params, headers=auth)
        assert (response.status_code, response.json()) == (404, unknown.json())


async def test_events_page_newest_first_for_admins(
    client: httpx.AsyncClient, world: World, data_dir: DataDir
) -> None:
    everything = [int(str(i)) for (i,) in data_dir.rows("SELECT id FROM events ORDER BY id DESC")]
    assert len(everything) > 7
    seen: list[int] = []
    params: dict[str, str | int] = {"limit": 3}
    while True:
        page = (await client.get("/v1/events", params=params, headers=world.admin)).json()
        assert len(page["data"]) <= 3
        seen += [event["id"] for event in page["data"]]
        if page["next_cursor"] is None:
            break
        assert page["next_cursor"] == seen[-1]
        params = {"limit": 3, "cursor": page["next_cursor"]}
    assert seen == everything

    only_failed = {"type": "generation_failed"}
    failed = (await client.get("/v1/events", params=only_failed, headers=world.admin)).json()
    [(failures,)] = data_dir.rows("SELECT count(*) FROM events WHERE type = 'generation_failed'")
    assert len(failed["data"]) == failures == 1
    assert {e["type"] for e in failed["data"]} == {"generation_failed"}

    generation_id = failed["data"][0]["generation_id"]
    one = await client.get(
        "/v1/events", params={"generation_id": generation_id}, headers=world.admin
    )
    assert [e["type"] for e in one.json()["data"]] == ["generation_failed", "generation_started"]

    since = world.now - timedelta(hours=1, minutes=30)
    recent = await client.get(
        "/v1/events", params={"from": since.isoformat(), "limit": 200}, headers=world.admin
    )
    times = [datetime.fromisoformat(e["created_at"]) for e in recent.json()["data"]]
    assert times
    assert all(t >= since for t in times)


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"cursor": 0}, {"type": "DROP TABLE"}]
)
async def test_bad_event_queries_are_400(
    client: httpx.AsyncClient, world: World, params: dict[str, object]
) -> None:
    response = await client.get("/v1/events", params=params, headers=world.admin)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
