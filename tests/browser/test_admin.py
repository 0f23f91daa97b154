"""Admin pages in a real browser (and the usage page): revoking a key shuts it out of the API;
screenshots of each page at desktop and phone width."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.browser.conftest import Gateway, screenshot, sign_in

pytestmark = pytest.mark.browser


def _api_status(gateway: Gateway, key: str) -> int:
    answer = httpx.get(
        gateway.base_url + "/v1/images", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return answer.status_code


def test_an_admin_revokes_a_key_and_the_api_refuses_it(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    doomed = gateway.new_key("dora")
    assert _api_status(gateway, doomed) == 200
    sign_in(page, gateway, gateway.admin_key)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    screenshot(page, "admin-keys")
    row = page.get_by_role("row").filter(has_text="dora")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_have_text("Key revoked.")
    expect(page.get_by_role("row").filter(has_text="dora")).to_contain_text("revoked")
    assert _api_status(gateway, doomed) == 401

    page.get_by_role("link", name="Limits").first.click()
    expect(page.locator("#budget_usd_day")).to_be_visible()
    screenshot(page, "admin-key")


def test_an_admin_creates_a_key_shown_once(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, gateway.admin_key)
    page.goto(gateway.base_url + "/admin/keys")
    page.get_by_label("User name").fill("erin")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text()
    assert _api_status(gateway, secret) == 200
    page.goto(gateway.base_url + "/admin/keys")
    expect(page.get_by_role("row").filter(has_text="erin")).to_have_count(1)
    assert secret not in page.content()  # shown once


def test_every_admin_page_and_the_usage_page_render(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, gateway.admin_key)
    page.goto(gateway.base_url + "/admin/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    screenshot(page, "admin-users")
    page.get_by_role("link", name="Set limits of alice").click()
    expect(page.get_by_role("heading", name="alice")).to_be_visible()
    screenshot(page, "admin-user")
    page.get_by_role("navigation", name="Admin").get_by_role(
        "link", name="Health and queues"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screenshot(page, "admin-health")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Cleanup").click()
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(
        page.get_by_role("heading", name="Preview (dry run): nothing was removed")
    ).to_be_visible()
    screenshot(page, "admin-cleanup")


def test_the_usage_page_shows_the_users_spend(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    key = gateway.new_key("ursula")
    body = {"prompt": "a paper boat", "model": "builtin", "size": "256x256", "n": 2}
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(2):  # the second is a cache hit
        made = httpx.post(gateway.base_url + "/v1/images/generations", json=body, headers=auth,
                          timeout=60)  # fmt: skip
        assert made.status_code == 200
    sign_in(page, gateway, key)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    expect(page.locator("dt:text-is('Images') + dd")).to_have_text("4")
    expect(page.locator("dt:text-is('Cache hit rate') + dd")).to_have_text("50%")
    screenshot(page, "usage")


def test_admin_pages_do_not_exist_for_a_user(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, gateway.user_key)
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    answer = page.goto(gateway.base_url + "/admin/keys")
    assert answer.status == 404
