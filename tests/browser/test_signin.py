"""Signing in and out in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from tests.browser.conftest import Gateway, screenshot, sign_in

pytestmark = pytest.mark.browser


def test_sign_in_with_a_key_and_out_again(page: Any, gateway: Gateway) -> None:
    page.goto(gateway.base_url + "/")
    screenshot(page, "signin")
    page.get_by_label("API key").fill("ig_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That API key is not valid."

    sign_in(page, gateway, gateway.user_key)
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "imagegate_session"] == [True]
    assert page.evaluate("document.cookie") == ""  # the key is not readable by scripts
    screenshot(page, "gallery-empty")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
