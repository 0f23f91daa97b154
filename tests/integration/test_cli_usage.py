"""``imagegate usage``, run as a real process over a data dir with real and recorded requests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tests.support import DataDir
from tests.support.generations import generation_row, record_generations
from tests.support.processes import run_cli, table_row

from imagegate.models import Outcome
from imagegate.settings import Settings


def _usd(micro_usd: object) -> str:
    return f"{Decimal(str(micro_usd)) / 1_000_000:.6f}"


async def test_usage_prints_the_totals_of_the_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for _ in range(2):  # the second is answered from the cache
        made = run_cli("generate", "a red fox", "-o", str(tmp_path / "fox.png"), data_dir=data)
        assert made.returncode == 0, made.stderr
    rows = DataDir.at(data)
    [(local_cli,)] = rows.rows("SELECT id FROM users WHERE name = 'local-cli'")
    now = datetime.now(UTC)
    await record_generations(
        Settings(data_dir=data).database_url,
        [
            generation_row(str(local_cli), now, cost=1_250_000, model="gpt-image-1"),
            generation_row(str(local_cli), now, outcome=Outcome.COALESCED, saved=1_250_000),
        ],
    )

    result = run_cli("usage", data_dir=data)
    assert result.returncode == 0, result.stderr
    assert "Usage of every user" in result.stdout
    [(requests, images, generated, hits, coalesced, failed, spend, saved)] = rows.rows(
        "SELECT count(*), sum(CASE WHEN outcome != 'failed' THEN n ELSE 0 END), "
        "sum(outcome = 'generated'), sum(outcome = 'cache_hit'), sum(outcome = 'coalesced'), "
        "sum(outcome = 'failed'), sum(cost_micro_usd), "
        "sum(CASE WHEN outcome IN ('cache_hit', 'coalesced') THEN saved_cost_micro_usd END) "
        "FROM generations"
    )
    figures = (requests, images, generated, hits, coalesced, failed)
    assert table_row(result.stdout, "total") == [
        "total", *(str(f) for f in figures), _usd(spend), _usd(saved)
    ]  # fmt: skip
    assert _usd(spend) == "1.250000"
    assert requests == 4

    by_model = run_cli("usage", "--group-by", "model", data_dir=data)
    assert by_model.returncode == 0, by_model.stderr
    assert table_row(by_model.stdout, "gpt-image-1")[1:2] == ["1"]
    assert table_row(by_model.stdout, "builtin")[1:2] == ["3"]
    assert table_row(by_model.stdout, "total") == table_row(result.stdout, "total")


def test_usage_refuses_bad_input_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    unknown = run_cli("usage", "--user", "nobody", data_dir=data)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert "No user 'nobody'" in unknown.stderr
    backwards = run_cli("usage", "--from", "2026-02-01", "--to", "2026-01-01", data_dir=data)
    assert backwards.returncode == 1
    assert "'from'" in backwards.stderr
    assert run_cli("usage", "--group-by", "week", data_dir=data).returncode == 2
