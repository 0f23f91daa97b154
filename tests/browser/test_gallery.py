"""The gallery in a real browser: infinite scroll, search, the lightbox by keyboard, and
editing an image's alt text and tags in place."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.browser.conftest import Gateway, screenshot, sign_in

pytestmark = pytest.mark.browser
PAGE_SIZE = 40  # imagegate.web.pages.PAGE_SIZE


@pytest.fixture(scope="module")
def painter(gateway: Gateway) -> str:
    """A user with 45 images (more than one gallery page): 44 kites, then one harbour."""
    key = gateway.new_key("painter")
    auth = {"Authorization": f"Bearer {key}"}
    for batch in range(4):
        body = {"prompt": f"kite number {batch}", "model": "builtin", "size": "256x256", "n": 10}
        made = httpx.post(gateway.base_url + "/v1/images/generations", json=body, headers=auth,
                          timeout=60)  # fmt: skip
        assert made.status_code == 200, made.text
    for prompt in ("kite number 4", "kite number 5", "kite number 6", "kite number 7",
                   "a harbour at dawn"):  # fmt: skip
        body = {"prompt": prompt, "model": "builtin", "size": "256x256"}
        made = httpx.post(gateway.base_url + "/v1/images/generations", json=body, headers=auth,
                          timeout=60)  # fmt: skip
        assert made.status_code == 200, made.text
    return key


def test_scrolling_loads_older_images_and_search_filters_them(
    page: Any, gateway: Gateway, painter: str
) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, painter)
    tiles = page.locator("#gallery a.thumb")
    expect(tiles).to_have_count(PAGE_SIZE)
    screenshot(page, "gallery")
    page.get_by_role("link", name="Older images").scroll_into_view_if_needed()
    expect(tiles).to_have_count(45)
    expect(page.locator("#gallery-status")).to_have_text("45 images.")
    expect(page.get_by_role("link", name="Older images")).to_be_hidden()

    page.get_by_label("Search prompts").fill("harbour")
    expect(tiles).to_have_count(1)
    expect(tiles.locator("img.pic")).to_have_attribute("alt", "A harbour at dawn")
    assert page.url.endswith("/?q=harbour")
    screenshot(page, "gallery-search")
    page.get_by_label("Search prompts").fill("nothing-like-this")
    expect(page.locator("#gallery li.empty")).to_have_text("No images match.")
    page.get_by_label("Search prompts").fill("")
    page.get_by_label("Since").fill("2999-01-01")
    expect(page.locator("#gallery li.empty")).to_have_text("No images match.")
    page.get_by_label("Since").fill("")
    page.get_by_label("Model").select_option("builtin")
    expect(tiles).to_have_count(PAGE_SIZE)


def test_the_lightbox_moves_with_the_keyboard_and_keeps_focus(
    page: Any, gateway: Gateway, painter: str
) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, painter)
    tiles = page.locator("#gallery a.thumb")
    expect(tiles).to_have_count(PAGE_SIZE)
    tiles.nth(0).focus()
    page.keyboard.press("Enter")
    box = page.get_by_role("dialog")
    expect(box).to_be_visible()
    caption = page.locator("#lightbox-caption")
    expect(caption).to_have_text(f"A harbour at dawn (1 of {PAGE_SIZE}+)")
    expect(page.get_by_role("button", name="Close")).to_be_focused()
    big = page.locator("#lightbox-image")
    expect(big).to_have_attribute("src", tiles.nth(0).get_attribute("data-full"))
    expect(page.get_by_role("link", name="Download")).to_have_attribute(
        "href", tiles.nth(0).get_attribute("data-full")
    )
    expect(page.get_by_role("link", name="Open full size")).to_have_attribute(
        "href", tiles.nth(0).get_attribute("data-full")
    )
    screenshot(page, "gallery-lightbox")

    page.keyboard.press("ArrowRight")
    expect(caption).to_have_text(f"Kite number 7 (2 of {PAGE_SIZE}+)")
    expect(big).to_have_attribute("src", tiles.nth(1).get_attribute("data-full"))
    page.keyboard.press("ArrowLeft")
    expect(caption).to_contain_text("A harbour at dawn (1 of")
    page.keyboard.press("ArrowLeft")  # the first stays the first
    expect(caption).to_contain_text("(1 of")

    for _ in range(12):  # Tab never leaves the dialog
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('lightbox').contains(document.activeElement)")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.getElementById('lightbox').contains(document.activeElement)")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator("#lightbox-status")).to_have_text("Link copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(gateway.base_url + "/files/")

    page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    expect(tiles.nth(0)).to_be_focused()  # focus goes back to where it was


def test_alt_text_and_tags_are_edited_in_place(page: Any, gateway: Gateway, painter: str) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, painter)
    page.locator("#gallery a.thumb").nth(2).click()  # not one the lightbox test reads
    page.get_by_role("link", name="Details").click()
    expect(page.get_by_role("heading", name="Image")).to_be_visible()
    screenshot(page, "detail")
    page.evaluate("window.notReloaded = true")
    page.get_by_label("Alt text").fill("Fishing boats moored at first light")
    page.get_by_label("Alt text").press("Enter")
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator("#detail-image")).to_have_attribute(
        "alt", "Fishing boats moored at first light"
    )
    page.get_by_label("Tags (comma-separated)").fill("Sea, dawn")
    page.get_by_label("Tags (comma-separated)").blur()
    expect(page.get_by_label("Tags (comma-separated)")).to_have_value("sea, dawn")
    assert page.evaluate("window.notReloaded") is True  # saved by script, no page load

    page.reload()
    expect(page.get_by_label("Alt text")).to_have_value("Fishing boats moored at first light")
    page.goto(gateway.base_url + "/?tag=dawn")
    expect(page.locator("#gallery a.thumb img.pic")).to_have_attribute(
        "alt", "Fishing boats moored at first light"
    )
