"""The imagegate command, run as a real process."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image
from tests.support.processes import environment, run_cli, table_row

from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.settings import Settings


def test_keys_create_prints_only_the_secret_then_list_and_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli("keys", "create", "--name", "ci-bot", "--role", "admin", data_dir=data)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n"
    assert secret.startswith("ig_")

    listed = run_cli("keys", "list", data_dir=data)
    assert listed.returncode == 0
    assert secret[:11] in listed.stdout
    assert secret not in listed.stdout
    assert "ci-bot" in listed.stdout

    revoked = run_cli("keys", "revoke", secret[:11], data_dir=data)
    assert revoked.returncode == 0
    assert "revoked 1 key(s): ci-bot" in revoked.stdout
    assert secret[:11] not in run_cli("keys", "list", data_dir=data).stdout
    again = run_cli("keys", "revoke", secret[:11], data_dir=data)
    assert again.returncode == 1
    assert "No active API key" in again.stderr


async def _statuses(data: Path, secret: str, count: int) -> list[tuple[int, str | None]]:
    """Send ``count`` requests as ``secret`` to a gateway on ``data``: (status, RPM header)."""
    async with build_services(Settings(data_dir=data)) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            responses = [
                await client.post(
                    "/v1/images/generations",
                    json={"model": "builtin", "prompt": "a kite", "size": "256x256"},
                    headers={"Authorization": f"Bearer {secret}"},
                )
                for _ in range(count)
            ]
    return [(r.status_code, r.headers.get("x-ratelimit-limit-requests")) for r in responses]


async def test_keys_create_and_update_set_the_keys_traffic_limits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli(
        "keys", "create", "--name", "bot", "--requests-per-minute", "2", "--concurrency", "1",
        data_dir=data,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    prefix = secret[:11]
    row = table_row(run_cli("keys", "list", data_dir=data).stdout, prefix)
    assert row[4:6] == ["2", "1"]
    assert await _statuses(data, secret, 3) == [(200, "2"), (200, "2"), (429, "2")]

    updated = run_cli("keys", "update", prefix, "--requests-per-minute", "0", data_dir=data)
    assert updated.returncode == 0, updated.stderr
    assert "updated 1 key(s): bot" in updated.stdout
    row = table_row(run_cli("keys", "list", data_dir=data).stdout, prefix)
    assert row[4:6] == ["unlimited", "default"]  # a limit not given is the default again
    assert await _statuses(data, secret, 3) == [(200, None)] * 3

    negative = run_cli("keys", "update", prefix, "--concurrency", "-1", data_dir=data)
    assert negative.returncode == 2
    assert "--concurrency" in negative.stderr
    unknown = run_cli("keys", "update", "ig_nothere", "--requests-per-minute", "5", data_dir=data)
    assert unknown.returncode == 1
    assert "No active API key" in unknown.stderr


def test_generate_writes_decodable_files_in_the_format_of_the_name(tmp_path: Path) -> None:
    out = tmp_path / "out" / "fox.webp"
    result = run_cli(
        "generate", "a red fox", "-o", str(out), "--size", "512x512", "-n", "2",
        data_dir=tmp_path / "data",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert paths == [out.with_name("fox-1.webp"), out.with_name("fox-2.webp")]
    for path in paths:
        image = Image.open(io.BytesIO(path.read_bytes()))
        assert (image.format, image.size) == ("WEBP", (512, 512))


def test_generate_refuses_bad_input_with_a_message(tmp_path: Path) -> None:
    result = run_cli(
        "generate", "fox", "-o", str(tmp_path / "x.png"), "--size", "3x3", data_dir=tmp_path
    )
    assert result.returncode == 1
    assert "size '3x3' is not supported" in result.stderr
    assert not (tmp_path / "x.png").exists()
    wrong_suffix = run_cli("generate", "fox", "-o", str(tmp_path / "x.gif"), data_dir=tmp_path)
    assert wrong_suffix.returncode == 2


def test_a_bad_setting_is_named_and_exits_2(tmp_path: Path) -> None:
    env = environment(tmp_path, IMAGEGATE_SERVER__PORT="eighty")
    result = run_cli("keys", "list", data_dir=tmp_path, env=env)
    assert result.returncode == 2
    assert "IMAGEGATE_SERVER__PORT" in result.stderr


def test_migrate_reports_an_up_to_date_database(tmp_path: Path) -> None:
    result = run_cli("migrate", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "data" / "imagegate.db").exists()


def test_keys_get_an_expiry_on_create_and_update(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli("keys", "create", "--name", "temp", "--expires-in", "30d",
                      "--requests-per-minute", "7", data_dir=data)  # fmt: skip
    assert created.returncode == 0, created.stderr
    prefix = created.stdout.strip()[:11]
    listed = run_cli("keys", "list", data_dir=data).stdout
    assert "never" in listed  # not used yet
    updated = run_cli("keys", "update", prefix, "--expires-at", "2031-05-06", data_dir=data)
    assert updated.returncode == 0, updated.stderr
    listed_row = table_row(run_cli("keys", "list", data_dir=data).stdout, prefix)
    assert "2031-05-06 00:00" in listed_row
    assert "7" in listed_row  # an expiry-only update leaves the limits alone
    cleared = run_cli("keys", "update", prefix, "--no-expiry", data_dir=data)
    assert cleared.returncode == 0, cleared.stderr
    assert "2031-05-06" not in run_cli("keys", "list", data_dir=data).stdout
    bad = run_cli("keys", "create", "--name", "x", "--expires-in", "soon", data_dir=data)
    assert bad.returncode == 2
    assert "30d" in bad.stderr
