"""The generate page in a real browser: estimate, queue state over SSE, images, failures.

This module's gateway runs without embedded workers, so a submitted job waits in the queue
(and the page must say so) until the test starts an ``imagegate worker`` process.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image
from tests.browser.conftest import Gateway, screenshot, sign_in
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.processes import ServerProcess, WorkerProcess, openai_provider

pytestmark = pytest.mark.browser


@dataclass
class QueuedGateway(Gateway):
    """A gateway whose jobs wait in the queue until ``start_worker``."""

    worker: WorkerProcess | None = None
    worker_env: dict[str, str] = field(default_factory=dict)

    def start_worker(self) -> None:
        if self.worker is None:
            self.worker = WorkerProcess(self.server.data_dir, self.worker_env, "w1", 2).start()


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[QueuedGateway]:
    folder = tmp_path_factory.mktemp("browser-queue")
    state = FakeState()
    fake = FakeServer(build_openai_fake(state)).start()
    config_file = folder / "imagegate.yaml"
    config_file.write_text(json.dumps({"providers": openai_provider(fake.base_url)}))
    env = {"IMAGEGATE_CONFIG_FILE": str(config_file), "IMAGEGATE_JOBS__EMBEDDED_WORKERS": "false",
           "IMAGEGATE_JOBS__POLL_SECONDS": "0.1"}  # fmt: skip
    server = ServerProcess(folder / "data", env=env)
    gateway = QueuedGateway(server, server.base_url, "", "", "", state, worker_env=env)
    gateway.user_key = gateway.new_key("carol")
    server.start()
    try:
        yield gateway
    finally:
        if gateway.worker is not None:
            gateway.worker.stop()
        server.stop()
        fake.stop()


def _decoded_size(page: Any, src: str) -> tuple[int, int]:
    answer = page.request.get(src)
    assert answer.ok
    with Image.open(io.BytesIO(answer.body())) as image:
        return image.size


def _fill(page: Any, prompt: str, model: str, size: str) -> None:
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Model").select_option(model)
    page.get_by_label("Size").fill(size)


def test_a_job_waits_in_the_queue_then_its_image_fades_in(page: Any, queued: QueuedGateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, queued, queued.user_key)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Generate").click()
    _fill(page, "a lighthouse in fog", "builtin", "256x256")
    estimate = page.locator("#estimate")
    expect(estimate).to_contain_text("Estimated cost: $0.0000 for 1 × 256x256")
    page.get_by_label("Size").fill("3x3")
    expect(estimate).to_contain_text("3x3")  # the model's refusal, before submitting
    page.get_by_label("Size").fill("256x256")
    expect(estimate).to_contain_text("Estimated cost")
    screenshot(page, "generate")

    page.get_by_role("button", name="Generate").click()
    status = page.locator("#status")
    expect(status).to_have_text("Queued: number 1 in line.")
    screenshot(page, "generate-queued")

    queued.start_worker()
    first = page.locator("#live-images img")
    expect(first).to_have_class("fade shown")
    expect(status).to_have_text("Done: new image, cost $0.0000.")
    src = first.get_attribute("src")
    assert _decoded_size(page, src) == (256, 256)
    expect(first).to_have_attribute("alt", "a lighthouse in fog")
    screenshot(page, "generate-result")

    page.get_by_role("button", name="Variations").click()
    expect(first).to_have_class("fade shown")
    assert first.get_attribute("src") != src  # a new seed, another picture
    page.get_by_role("button", name="Regenerate").click()
    expect(status).to_contain_text("Done: new image")  # not the cached one
    expect(first).to_have_class("fade shown")


def test_a_failure_is_explained_and_try_again_works(page: Any, queued: QueuedGateway) -> None:
    from playwright.sync_api import expect

    queued.start_worker()
    queued.fake.faults.next(Fault.safety(), Fault.latency(2))
    sign_in(page, queued, queued.user_key)
    page.goto(queued.base_url + "/generate")
    _fill(page, "a stormy sea", "dall-e-2", "256x256")
    page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The provider declined this prompt. Try wording it differently.")
    retry = page.get_by_role("button", name="Try again")
    expect(retry).to_be_focused()
    screenshot(page, "generate-failed")

    retry.click()  # the fake answers this one, slowly: the page shows the running time
    expect(page.locator("#status")).to_contain_text("Running")
    expect(page.locator("#elapsed")).to_have_text(re.compile(r"^\d+ s$"))
    expect(alert).to_be_hidden()
    image = page.locator("#live-images img")
    expect(image).to_have_class("fade shown")
    assert _decoded_size(page, image.get_attribute("src")) == (256, 256)


def test_reference_images_dropped_on_the_form_are_sent(page: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, gateway.user_key)
    page.goto(gateway.base_url + "/generate")
    _fill(page, "the same, in blue", "dall-e-2", "256x256")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
    dropped = page.evaluate_handle(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "red.png", {type: "image/png"}));
            return dt;
        }""",
        list(buffer.getvalue()),
    )
    page.locator("#drop").dispatch_event("drop", {"dataTransfer": dropped})
    expect(page.locator("#reference-list li")).to_have_text("red.png")
    calls_before = len(gateway.fake.calls)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#live-images img")).to_have_class("fade shown")
    edits = [c for c in gateway.fake.calls[calls_before:] if c.path == "/v1/images/edits"]
    assert len(edits) == 1
    assert buffer.getvalue() in edits[0].body  # the dropped bytes
