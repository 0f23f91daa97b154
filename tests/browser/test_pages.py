"""Things every page owes its users: keyboard-only use with visible focus, and the system's
dark theme."""

from __future__ import annotations

from typing import Any

import pytest
from tests.browser.conftest import DESKTOP, Gateway, screenshot, sign_in

pytestmark = pytest.mark.browser


def _tab_until(page: Any, what: str, test: str, limit: int = 25) -> None:
    """Tab until ``test`` (JavaScript about ``el``, the focused element) holds, as a keyboard
    user would; fails if ``limit`` presses never get there."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(el => {test})(document.activeElement)"):
            return
    raise AssertionError(f"{what} is not reachable with Tab")


def test_generate_with_the_keyboard_alone(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, gateway.user_key)
    page.goto(gateway.base_url + "/generate")
    _tab_until(page, "the prompt", "el.id === 'prompt'")
    page.keyboard.type("a small boat by keyboard")
    _tab_until(page, "the size", "el.id === 'size'")
    page.keyboard.type("256x256")
    _tab_until(page, "Generate", "el.textContent.trim() === 'Generate'")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    image = page.locator("#live-images img")
    expect(image).to_have_class("fade shown")
    expect(image).to_have_attribute("alt", "a small boat by keyboard")
    first = image.get_attribute("src")
    _tab_until(page, "Variations", "el.textContent.trim() === 'Variations'")
    page.keyboard.press("Enter")
    expect(image).not_to_have_attribute("src", first)  # another seed, another picture
    expect(image).to_have_class("fade shown")


def test_pages_follow_the_systems_dark_theme(browser: Any, gateway: Gateway) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=DESKTOP, color_scheme=scheme)
        context.set_default_timeout(15_000)
        try:
            page = context.new_page()
            sign_in(page, gateway, gateway.user_key)
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            if scheme == "dark":
                screenshot(page, "gallery-dark")
                page.goto(gateway.base_url + "/generate")
                screenshot(page, "generate-dark")
        finally:
            context.close()
    assert backgrounds == {"light": "rgb(250, 250, 250)", "dark": "rgb(23, 23, 27)"}


def test_generate_and_search_work_with_javascript_off(browser: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, gateway, gateway.other_key)
        page.goto(gateway.base_url + "/generate")
        page.get_by_label("Prompt").fill("a lantern without scripts")
        page.get_by_label("Size").fill("256x256")
        page.get_by_role("button", name="Generate").click()  # a plain form post, then waits
        expect(page.get_by_role("heading", name="Result (miss)")).to_be_visible()
        expect(page.locator("#server-result img")).to_have_attribute(
            "alt", "a lantern without scripts"
        )
        screenshot(page, "generate-no-js")
        page.goto(gateway.base_url + "/")
        page.get_by_label("Search prompts").fill("lantern")
        page.get_by_role("button", name="Search").click()
        assert page.url.endswith("/?q=lantern&model=&tag=&from=")
        expect(page.locator("#gallery img.pic")).to_have_attribute(
            "alt", "A lantern without scripts"
        )
    finally:
        context.close()
