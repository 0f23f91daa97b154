"""A real file-size limit (RLIMIT_FSIZE in a child process, the kernel's EFBIG) makes the local
store fail with StorageFull (507 insufficient_storage), leaving nothing under a real name."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

CHILD = """
import asyncio, json, os, sys
from pathlib import Path
from imagegate.errors import ImagegateError
from imagegate.storage.local import LocalBlobStore

async def main() -> None:
    store = LocalBlobStore(Path(sys.argv[1]), "http://127.0.0.1")
    try:
        await store.put("ab" * 32 + ".png", os.urandom(1024 * 1024))
        print(json.dumps({"stored": True}))
    except ImagegateError as exc:
        print(json.dumps({"status": exc.status, "code": exc.code}))

asyncio.run(main())
"""


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_file_size_limit_is_507_insufficient_storage_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    root = tmp_path / "files"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        preexec_fn=_limit_file_size,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(child.stdout) == {"status": 507, "code": "insufficient_storage"}
    assert [p.name for p in root.rglob("*") if p.is_file()] == []  # temp file removed too
