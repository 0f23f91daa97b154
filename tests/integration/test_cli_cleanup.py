"""``imagegate cleanup`` run as a real process on a real data directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.processes import environment, run_cli, table_row

from imagegate.models import OutputFormat
from imagegate.storage.base import content_key


def _plant(files: Path, data: bytes, age_seconds: float) -> Path:
    key = content_key(data, OutputFormat.PNG)
    path = files / key[:2] / key[2:4] / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_cleanup_dry_run_reports_and_a_real_run_removes_old_orphans(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("migrate", data_dir=data).returncode == 0
    files = data / "files"
    old = _plant(files, b"x" * 2048, age_seconds=7200)
    young = _plant(files, b"in flight", age_seconds=0)
    env = environment(data, IMAGEGATE_CLEANUP_GRACE_SECONDS="3600")

    dry = run_cli("cleanup", "--dry-run", data_dir=data, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    assert table_row(dry.stdout, "orphan blobs (would remove)")[1:] == ["1", "2.0 KiB"]
    assert table_row(dry.stdout, "young unreferenced blobs (kept)")[1:] == ["1", "9 B"]
    assert old.exists()
    assert young.exists()

    done = run_cli("cleanup", data_dir=data, env=env)
    assert done.returncode == 0, done.stderr
    assert table_row(done.stdout, "orphan blobs (removed)")[1:] == ["1", "2.0 KiB"]
    assert not old.exists()
    assert young.exists()
