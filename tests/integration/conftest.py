"""The integration suites' own fixtures; the databases (``database_url``, ``postgres_database``)
are in tests/conftest.py, shared with the contract suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, InFlightMeter, MeteredFake


@pytest.fixture
def metered_upstream() -> Iterator[MeteredFake]:
    """The OpenAI fake with its call log, a meter of its concurrent calls, and its URL."""
    state = FakeState()
    meter = InFlightMeter(build_openai_fake(state))
    with FakeServer(meter) as server:
        yield state, meter, server.base_url
