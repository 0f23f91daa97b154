"""Browser tests: Debian's headless Chromium, driven by Playwright, against a real
``imagegate serve`` process on loopback (with a loopback OpenAI fake for forced failures).

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it); Playwright
never downloads a browser here (``executable_path``). Without Chromium the suite is skipped
with that reason; in CI (``CI`` set) a missing browser fails it instead.

Screenshots of each page at desktop (1280 px) and phone (390 px) width go to
``tests/.screenshots/`` (git-ignored) for a reviewer to look at.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState
from tests.support.processes import ServerProcess, environment, openai_provider, run_cli

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(f"browser suite: {reason}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = os.environ.get("IMAGEGATE_TEST_CHROMIUM") or shutil.which("chromium")
    if not found:
        _missing("Debian's chromium is not installed (apt-get install -y chromium)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Module-scoped, not session-scoped: Playwright's sync API keeps its event loop marked as
    running in this thread until it stops, which breaks every asyncio test run after it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Gateway:
    server: ServerProcess
    base_url: str
    admin_key: str
    user_key: str
    other_key: str
    fake: FakeState

    def new_key(self, name: str, role: str = "user") -> str:
        created = run_cli("keys", "create", "--name", name, "--role", role,
                          data_dir=self.server.data_dir, env=self._env)  # fmt: skip
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()

    @property
    def _env(self) -> dict[str, str]:
        return environment(self.server.data_dir, **self.server.extra_env)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[Gateway]:
    """One gateway (builtin renderer and an OpenAI fake) with an admin and two users."""
    folder = tmp_path_factory.mktemp("browser")
    state = FakeState()
    fake = FakeServer(build_openai_fake(state)).start()
    config_file = folder / "imagegate.yaml"
    config_file.write_text(json.dumps({"providers": openai_provider(fake.base_url)}))
    env = {"IMAGEGATE_CONFIG_FILE": str(config_file)}
    data_dir = folder / "data"
    server = ServerProcess(data_dir, env=env)
    gateway = Gateway(server, server.base_url, "", "", "", state)
    gateway.admin_key = gateway.new_key("admin", "admin")
    gateway.user_key = gateway.new_key("alice")
    gateway.other_key = gateway.new_key("bob")
    server.start()
    try:
        yield gateway
    finally:
        server.stop()
        fake.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)  # the same patience for expectations (default 5 s)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"


def sign_in(page: Any, gateway: Gateway, key: str) -> None:
    page.goto(gateway.base_url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Gallery").wait_for()


def screenshot(page: Any, name: str) -> None:
    """``name``-desktop.png and ``name``-phone.png of the page as it is now; at both widths
    the page must fit (no sideways scrolling of the whole page: wide tables scroll in their
    own box)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} is {width} px wide at {label} width"
    page.set_viewport_size(DESKTOP)
