"""Who may call what: every route of the app, every kind of caller (OWASP API1 and API5).

The table ``ROUTES`` classifies each route; ``test_every_route_is_classified`` fails when the
app has a route the table does not name, so a new route cannot ship unchecked. To add one,
give it an ``Access`` (and a body if it takes one): the checks follow from the class. A mount
without routes of its own (static files) is one ``("ANY", "/path")`` entry.

- PUBLIC  anyone, no key (health, the schema, content-addressed files).
- KEY     any valid key; what it lists or counts is the caller's own.
- OWNED   names another object in its path: another user's gets 404, never 403.
- ADMIN   admins only; everyone else gets 404 (the route's existence is not confirmed).
- SESSION the Web UI: a signed session cookie, not a key header; its sign-in, CSRF, admin
          and cross-user 404 checks are in tests/unit/web.

Callers: anonymous, user A, user B (owns every object in the paths), a revoked key, an expired
key, an admin. Revoked and expired keys are refused (401) on every route that takes a key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.support.routes import route_table

from imagegate.api.app import create_app
from imagegate.container import Services
from imagegate.models import Role
from imagegate.settings import Settings


class Access(enum.Enum):
    PUBLIC = "public"
    KEY = "key"
    OWNED = "owned"
    ADMIN = "admin"
    SESSION = "session"


@dataclass(frozen=True)
class Rule:
    access: Access
    body: dict[str, Any] | None = None
    streams: bool = False
    """The owner's answer is an endless stream: only the refusals are checked."""


GENERATE = {"model": "builtin", "prompt": "a paper boat", "size": "256x256"}
LIMITS = {"requests_per_minute": None}

ROUTES: dict[tuple[str, str], Rule] = {
    # documentation and health
    ("GET", "/openapi.json"): Rule(Access.PUBLIC),
    ("GET", "/docs"): Rule(Access.PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(Access.PUBLIC),
    ("GET", "/redoc"): Rule(Access.PUBLIC),
    ("GET", "/healthz"): Rule(Access.PUBLIC),
    ("GET", "/readyz"): Rule(Access.PUBLIC),
    # content-addressed image bytes: the unguessable sha256 key is the capability
    ("GET", "/files/{key}"): Rule(Access.PUBLIC),
    # the Web UI (session cookie; see tests/unit/web)
    ("ANY", "/static"): Rule(Access.SESSION),
    ("GET", "/"): Rule(Access.SESSION),
    ("POST", "/signin"): Rule(Access.SESSION),
    ("POST", "/signout"): Rule(Access.SESSION),
    ("GET", "/signin/oidc"): Rule(Access.SESSION),
    ("GET", "/signin/oidc/callback"): Rule(Access.SESSION),
    ("GET", "/generate"): Rule(Access.SESSION),
    ("POST", "/generate"): Rule(Access.SESSION),
    ("GET", "/images/{image_id}"): Rule(Access.SESSION),
    ("POST", "/images/{image_id}/edit"): Rule(Access.SESSION),
    ("POST", "/images/{image_id}/delete"): Rule(Access.SESSION),
    ("GET", "/admin/keys"): Rule(Access.SESSION),
    ("POST", "/admin/keys"): Rule(Access.SESSION),
    ("GET", "/admin/keys/{prefix}"): Rule(Access.SESSION),
    ("POST", "/admin/keys/{prefix}"): Rule(Access.SESSION),
    ("GET", "/admin/users"): Rule(Access.SESSION),
    ("GET", "/admin/users/{name}"): Rule(Access.SESSION),
    ("POST", "/admin/users/{name}"): Rule(Access.SESSION),
    ("GET", "/admin/health"): Rule(Access.SESSION),
    ("GET", "/admin/cleanup"): Rule(Access.SESSION),
    ("POST", "/admin/cleanup"): Rule(Access.SESSION),
    # any other method on an admin page: 404 to non-admins, 405 to admins (test_web_admin.py)
    ("POST", "/admin/{rest:path}"): Rule(Access.SESSION),
    ("PUT", "/admin/{rest:path}"): Rule(Access.SESSION),
    ("PATCH", "/admin/{rest:path}"): Rule(Access.SESSION),
    ("DELETE", "/admin/{rest:path}"): Rule(Access.SESSION),
    ("GET", "/usage"): Rule(Access.SESSION),
    # the pages' scripts (session cookie, CSRF header, owner-scoped; see test_web_live.py)
    ("POST", "/web/jobs"): Rule(Access.SESSION),
    ("GET", "/web/jobs/{job_id}"): Rule(Access.SESSION),
    ("GET", "/web/jobs/{job_id}/events"): Rule(Access.SESSION),
    ("POST", "/web/estimate"): Rule(Access.SESSION),
    ("GET", "/web/images"): Rule(Access.SESSION),
    # any key; results are the caller's own
    ("POST", "/v1/images/generations"): Rule(Access.KEY, GENERATE),
    ("POST", "/v1/images/estimate"): Rule(Access.KEY, GENERATE),
    ("POST", "/v1/images/edits"): Rule(Access.KEY, {"prompt": "x", "model": "builtin"}),
    ("GET", "/v1/images"): Rule(Access.KEY),
    ("GET", "/v1/models"): Rule(Access.KEY),
    ("POST", "/v1/jobs"): Rule(Access.KEY, GENERATE),
    ("GET", "/v1/jobs"): Rule(Access.KEY),
    ("POST", "/v1/batches"): Rule(Access.KEY, {"request": GENERATE, "prompts": ["a", "b"]}),
    ("GET", "/v1/usage"): Rule(Access.KEY),
    # another user's objects
    ("GET", "/v1/images/{image_id}"): Rule(Access.OWNED),
    ("PATCH", "/v1/images/{image_id}"): Rule(Access.OWNED, {"alt_text": "mine now"}),
    ("DELETE", "/v1/images/{image_id}"): Rule(Access.OWNED),
    ("GET", "/v1/generations/{generation_id}"): Rule(Access.OWNED),
    ("GET", "/v1/jobs/{job_id}"): Rule(Access.OWNED),
    ("POST", "/v1/jobs/{job_id}/cancel"): Rule(Access.OWNED),
    ("GET", "/v1/jobs/{job_id}/events"): Rule(Access.OWNED, streams=True),
    ("GET", "/v1/batches/{batch_id}"): Rule(Access.OWNED),
    # operators
    ("GET", "/v1/providers"): Rule(Access.ADMIN),
    ("GET", "/v1/events"): Rule(Access.ADMIN),
    ("GET", "/metrics"): Rule(Access.ADMIN),  # or IMAGEGATE_METRICS_TOKEN; 404 to all others
    ("PUT", "/v1/keys/{prefix}/limits"): Rule(Access.ADMIN, LIMITS),
    ("PUT", "/v1/keys/{prefix}/expiry"): Rule(Access.ADMIN, {"expires_at": None}),
    ("PUT", "/v1/users/{name}/limits"): Rule(Access.ADMIN, {}),
    ("POST", "/v1/admin/cleanup"): Rule(Access.ADMIN, {"dry_run": True}),
}

KEYED = [
    route for route, rule in ROUTES.items() if rule.access not in (Access.PUBLIC, Access.SESSION)
]


@dataclass
class World:
    client: httpx.AsyncClient
    keys: dict[str, str]  # caller -> Authorization header value
    params: dict[str, str]  # path parameter -> one of user B's objects
    b_ids: list[str]

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": self.keys[caller]} if caller in self.keys else {}

    async def call(self, route: tuple[str, str], caller: str) -> httpx.Response:
        method, template = route
        rule = ROUTES[route]
        path = template.format(**self.params)
        kwargs: dict[str, Any] = {"headers": self.headers(caller)}
        if rule.body is not None:
            kwargs["json"] = rule.body
        return await self.client.request("GET" if method == "ANY" else method, path, **kwargs)


@pytest.fixture
async def world(services: Services) -> World:
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    a = await services.keys.create("user-a")
    b = await services.keys.create("user-b")
    revoked = await services.keys.create("user-c")
    await services.keys.revoke(revoked.key.prefix)
    expired = await services.keys.create(
        "user-d", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    admin = await services.keys.create("root", Role.ADMIN)
    keys = {
        name: f"Bearer {issued.secret}"
        for name, issued in [
            ("a", a), ("b", b), ("revoked", revoked), ("expired", expired), ("admin", admin)
        ]
    }  # fmt: skip
    auth_b = {"Authorization": keys["b"]}
    made = await client.post("/v1/images/generations", json=GENERATE, headers=auth_b)
    assert made.status_code == 200, made.text
    [image] = (await client.get("/v1/images", headers=auth_b)).json()["data"]
    job = (await client.post("/v1/jobs", json=GENERATE, headers=auth_b)).json()
    batch_body = ROUTES[("POST", "/v1/batches")].body
    batch = (await client.post("/v1/batches", json=batch_body, headers=auth_b)).json()
    params = {
        "image_id": image["id"],
        "generation_id": image["generation_id"],
        "job_id": job["id"],
        "batch_id": batch["id"],
        "key": made.json()["data"][0]["url"].rsplit("/", 1)[-1],
        "prefix": b.key.prefix,
        "name": "user-b",
    }
    b_ids = [image["id"], image["generation_id"], job["id"], batch["id"]]
    return World(client, keys, params, b_ids)


def test_every_route_is_classified(settings: Settings) -> None:
    routes = route_table(create_app(settings=settings))
    unclassified = sorted(routes - ROUTES.keys())
    assert not unclassified, f"classify these routes in ROUTES: {unclassified}"
    assert sorted(ROUTES.keys() - routes) == [], "ROUTES names routes the app no longer has"


@pytest.mark.parametrize("route", KEYED, ids=" ".join)
async def test_no_key_revoked_or_expired_keys_are_refused(
    world: World, route: tuple[str, str]
) -> None:
    for caller, code in [
        ("anonymous", None), ("revoked", "invalid_api_key"), ("expired", "api_key_expired")
    ]:  # fmt: skip
        answer = await world.call(route, caller)
        if ROUTES[route].access is Access.ADMIN:  # may hide itself from refused callers too
            assert answer.status_code in (401, 404), (route, caller, answer.text)
            continue
        assert answer.status_code == 401, (route, caller, answer.text)
        if code is not None:
            assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "route", [r for r in KEYED if ROUTES[r].access is Access.OWNED], ids=" ".join
)
async def test_user_a_never_reaches_user_bs_objects(world: World, route: tuple[str, str]) -> None:
    answer = await world.call(route, "a")
    assert answer.status_code == 404, (route, answer.text)
    assert answer.json()["error"]["code"] == "not_found"
    if not ROUTES[route].streams:
        owner = await world.call(route, "b")  # the same path is real: its owner reaches it
        assert owner.status_code < 400, (route, owner.text)


@pytest.mark.parametrize(
    "route", [r for r in KEYED if ROUTES[r].access is Access.ADMIN], ids=" ".join
)
async def test_only_admins_reach_admin_routes(world: World, route: tuple[str, str]) -> None:
    for caller in ("a", "b"):
        answer = await world.call(route, caller)
        assert answer.status_code == 404, (route, caller, answer.text)
    answer = await world.call(route, "admin")
    assert answer.status_code < 400, (route, answer.text)


@pytest.mark.parametrize(
    "route",
    [r for r in KEYED if ROUTES[r].access is Access.KEY and r[0] == "GET"],
    ids=" ".join,
)
async def test_lists_and_reports_show_user_a_nothing_of_user_b(
    world: World, route: tuple[str, str]
) -> None:
    answer = await world.call(route, "a")
    assert answer.status_code == 200, (route, answer.text)
    for object_id in world.b_ids:
        assert object_id not in answer.text, route
    assert "user-b" not in answer.text


@pytest.mark.parametrize(
    "route", [r for r, rule in ROUTES.items() if rule.access is Access.PUBLIC], ids=" ".join
)
async def test_public_routes_answer_without_a_key(world: World, route: tuple[str, str]) -> None:
    answer = await world.call(route, "anonymous")
    assert answer.status_code < 400, (route, answer.text)


async def test_user_a_cannot_ask_for_user_bs_usage_by_name(world: World) -> None:
    answer = await world.client.get(
        "/v1/usage", params={"user": "user-b"}, headers=world.headers("a")
    )
    assert answer.status_code == 404
    admin = await world.client.get(
        "/v1/usage", params={"user": "user-b"}, headers=world.headers("admin")
    )
    assert admin.status_code == 200
