"""What a gateway on the defaults (SQLite, local disk) keeps out of its memory.

Every module a serving process imports stays resident for good; these are the ones it never
needs on the defaults, each a few MiB (docs/benchmarks.md, "Resident memory cuts").
"""

from __future__ import annotations

import asyncio
import json
from asyncio.subprocess import PIPE
from pathlib import Path

from tests.support.processes import IMAGEGATE, environment, run_cli

# A generation served as a URL, its thumbnail made, then what the process has imported.
SCRIPT = """
import asyncio, json, sys
import httpx
from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.settings import load_settings

async def main():
    async with build_services(load_settings()) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/v1/images/generations",
                json={"model": "builtin", "prompt": "a kite", "size": "256x256",
                      "response_format": "url"},
                headers={"Authorization": f"Bearer {sys.argv[1]}"},
            )
            assert answer.status_code == 200, answer.text
        await services.thumbnails.idle()
        return answer.json()["data"][0]["url"]

url = asyncio.run(main())
print(json.dumps({"url": url, "modules": sorted(sys.modules)}))
"""

NEVER_ON_THE_DEFAULTS = {
    "sqlalchemy.dialects.postgresql": "the PostgreSQL dialect, on SQLite",
    "jinja2": "the Web UI's templates, before a page is asked",
    "PIL.TiffImagePlugin": "Pillow's other format plugins (TIFF stands for them all)",
    "alembic": "migrations, on a database already at head",
    "limits": "the rate-limit library (with all its storage backends), on in-memory limits",
}


async def test_a_gateway_on_the_defaults_never_imports_what_it_does_not_use(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    created = run_cli("keys", "create", "--name", "probe", data_dir=data)  # migrates, too
    assert created.returncode == 0, created.stderr
    run = await asyncio.create_subprocess_exec(
        IMAGEGATE[0], "-c", SCRIPT, created.stdout.strip(), env=environment(data), stdout=PIPE,
        stderr=PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(run.communicate(), 120)
    assert run.returncode == 0, err.decode()
    found = json.loads(out)
    assert found["url"]
    assert list((data / "files").rglob("*.webp"))  # the thumbnail (a PNG was asked)
    modules = set(found["modules"])
    loaded = {name: why for name, why in NEVER_ON_THE_DEFAULTS.items() if name in modules}
    assert loaded == {}
