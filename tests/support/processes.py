"""Real imagegate processes for CLI and end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

IMAGEGATE = [sys.executable, "-m", "imagegate"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    env.update({"IMAGEGATE_DATA_DIR": str(data_dir), **extra})
    return env


def run_cli(
    *args: str, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAGEGATE, *args],
        env=env or environment(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def table_row(stdout: str, label: str) -> list[str]:
    """The cells of the table row (as the CLI prints it) whose first cell is ``label``."""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{stdout}")


class ServerProcess:
    """``imagegate serve`` on a free loopback port, stopped with SIGTERM."""

    def __init__(
        self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready_seconds: float = 30) -> ServerProcess:
        """Start and wait (up to ``ready_seconds``) until ``/readyz`` answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = environment(
            self.data_dir, **{"IMAGEGATE_SERVER__ACCESS_LOG": "false", **self.extra_env}
        )
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [*IMAGEGATE, "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def alive(self) -> bool:
        """Started and not exited (not crashed, not restarted)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def start_gateways(
    folder: Path,
    config: dict[str, object],
    count: int = 1,
    key_options: Sequence[str] = (),
    **env: str,
) -> tuple[list[ServerProcess], str]:
    """``count`` gateway processes sharing one data dir and ``config`` (written as
    imagegate.yaml), and a fresh API key for them (``imagegate keys create`` with
    ``key_options``)."""
    config_file = folder / "imagegate.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    env = {"IMAGEGATE_CONFIG_FILE": str(config_file), **env}
    data_dir = folder / "data"
    created = run_cli("keys", "create", "--name", "gateway", *key_options, data_dir=data_dir,
                      env=environment(data_dir, **env))  # fmt: skip
    if created.returncode != 0:
        raise RuntimeError(f"could not create a key:\n{created.stderr}")
    servers = [ServerProcess(data_dir, env=env).start() for _ in range(count)]
    return servers, created.stdout.strip()


def openai_provider(base_url: str) -> dict[str, object]:
    """imagegate.yaml's ``providers`` pointing ``openai`` at a fake at ``base_url``."""
    return {"openai": {"kind": "openai", "api_key": "test-key", "base_url": f"{base_url}/v1"}}


class WorkerProcess:
    """``imagegate worker`` with the environment of the gateways it serves."""

    def __init__(self, data_dir: Path, env: dict[str, str], name: str, concurrency: int) -> None:
        self.name = name
        self.log = data_dir.parent / f"{name}.log"
        self._args = [*IMAGEGATE, "worker", "--name", name, "--concurrency", str(concurrency)]
        self._env = environment(data_dir, **env)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self._args, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_until_running(self, seconds: float = 30) -> WorkerProcess:
        """Until the worker has said it is taking jobs (its services are built)."""
        assert self._process is not None, "not started"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()}")
            if f"{self.name}: running" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    def alive(self) -> bool:
        """Started and not exited (not crashed, not restarted)."""
        return self._process is not None and self._process.poll() is None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, and the exit code once it has shut down."""
        assert self._process is not None
        self._process.terminate()
        return self._process.wait(timeout=timeout)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
