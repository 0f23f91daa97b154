"""The report period and money formatting: the pure parts of ``services.usage``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagegate.errors import InvalidRequest
from imagegate.services.usage import format_usd, report_window

NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "window"),
    [
        (None, None, (utc(2026, 3, 1), NOW)),
        (utc(2026, 2, 10), None, (utc(2026, 2, 10), NOW)),
        # ``to`` is excluded, so a month boundary reports the month before it
        (None, utc(2026, 2, 1), (utc(2026, 1, 1), utc(2026, 2, 1))),
        (None, utc(2026, 2, 1, 0, 0, 1), (utc(2026, 2, 1), utc(2026, 2, 1, 0, 0, 1))),
        # naive times are UTC; offsets are converted
        (datetime(2026, 3, 2), None, (utc(2026, 3, 2), NOW)),
        (
            datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            None,
            (utc(2026, 3, 1, 23), NOW),
        ),
        (utc(2026, 3, 5), utc(2026, 3, 5), (utc(2026, 3, 5), utc(2026, 3, 5))),  # empty, allowed
    ],
)
def test_report_window(
    start: datetime | None, end: datetime | None, window: tuple[datetime, datetime]
) -> None:
    found = report_window(start, end, NOW)
    assert found == window
    assert all(moment.utcoffset() == timedelta(0) for moment in found)


def test_a_start_after_the_end_names_from() -> None:
    with pytest.raises(InvalidRequest) as caught:
        report_window(utc(2026, 3, 2), utc(2026, 3, 1), NOW)
    assert caught.value.param == "from"
    with pytest.raises(InvalidRequest):  # a start in the future, with the default end (now)
        report_window(utc(2026, 4, 1), None, NOW)


@pytest.mark.parametrize(
    ("micro_usd", "shown"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (40_000, "0.040000"),
        (1_000_000, "1.000000"),
        (1_234_567_890, "1234.567890"),
        (-5, "-0.000005"),
        (10**18 + 1, "1000000000000.000001"),  # beyond a float's exact integers
    ],
)
def test_format_usd_is_exact(micro_usd: int, shown: str) -> None:
    assert format_usd(micro_usd) == shown
