"""The imagegate command, run as a real process."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from tests.support.processes import environment, run_cli


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
