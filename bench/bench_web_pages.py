"""Bytes per Web UI page: its HTML plus the CSS and JS it links, as a browser first loads it.

Starts one ``imagegate serve`` (SQLite, the builtin renderer) on loopback, makes ``--images``
images for a user (so the gallery has a full first page), signs in a user and an admin with
session cookies, fetches every page and each stylesheet and script it links, and prints a
Markdown table: HTML, CSS, JS, total, and the total gzip-compressed (level 6; the app itself
does not compress, a reverse proxy may). Images (thumbnails, blur-up data URIs aside, which
are inline in the HTML) are not counted. With ``--base-url`` and ``--key``/``--admin-key`` it
measures a running gateway instead.

    python bench/bench_web_pages.py [--images 45] [--base-url URL --key K --admin-key K]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import ServerProcess, run_cli

ASSET = re.compile(rb'<(?:link[^>]+rel="stylesheet"[^>]+href|script[^>]+src)="([^"]+)"')


@contextlib.contextmanager
def local_gateway(images: int) -> Iterator[tuple[str, str, str]]:
    """A fresh gateway with a user owning ``images`` images: (base URL, user key, admin key)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = ServerProcess(data_dir)
        keys = []
        for name, role in (("bench", "user"), ("benchadmin", "admin")):
            made = run_cli("keys", "create", "--name", name, "--role", role,
                           "--requests-per-minute", "0", data_dir=data_dir)  # fmt: skip
            if made.returncode != 0:
                raise RuntimeError(made.stderr)
            keys.append(made.stdout.strip())
        server.start()
        try:
            auth = {"Authorization": f"Bearer {keys[0]}"}
            for start in range(0, images, 10):
                body = {"prompt": f"a red fox in snow {start}", "model": "builtin",
                        "size": "256x256", "n": min(10, images - start)}  # fmt: skip
                httpx.post(f"{server.base_url}/v1/images/generations", json=body, headers=auth,
                           timeout=120).raise_for_status()  # fmt: skip
            yield server.base_url, keys[0], keys[1]
        finally:
            server.stop()


def signed_in(base_url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=60)
    if client.post("/signin", data={"api_key": key}).status_code != 303:
        raise SystemExit(f"could not sign in with the key {key[:10]}...")
    return client


def weigh(
    client: httpx.Client, path: str, params: dict[str, str] | None = None
) -> tuple[int, int, int, int]:
    """HTML, CSS and JS bytes of the page at ``path`` with the assets it links, and all of
    them gzip-compressed."""
    page = client.get(path, params=params)
    page.raise_for_status()
    css = js = 0
    compressed = len(gzip.compress(page.content, 6))
    for asset in ASSET.findall(page.content):
        body = client.get(asset.decode()).content
        if asset.endswith(b".css"):
            css += len(body)
        else:
            js += len(body)
        compressed += len(gzip.compress(body, 6))
    return len(page.content), css, js, compressed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=45)
    parser.add_argument("--base-url")
    parser.add_argument("--key", help="a user's API key (with --base-url)")
    parser.add_argument("--admin-key", help="an admin's API key (with --base-url)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.base_url:
            base_url, key, admin_key = args.base_url, args.key, args.admin_key
        else:
            base_url, key, admin_key = stack.enter_context(local_gateway(args.images))
        anonymous = stack.enter_context(httpx.Client(base_url=base_url, timeout=60))
        user = signed_in(base_url, key)
        stack.callback(user.close)
        admin = signed_in(base_url, admin_key)
        stack.callback(admin.close)
        gallery = user.get("/").text
        found = re.search(r'href="/images/([0-9a-f]+)"', gallery)
        if found is None:
            raise SystemExit("the user has no images: generate some first")
        thumbnails = gallery.count('class="thumb"')
        pages = [
            ("sign in", anonymous, "/", None),
            (f"gallery, first page ({thumbnails} thumbnails)", user, "/", None),
            ("gallery search", user, "/", {"q": "fox"}),
            ("image detail", user, f"/images/{found.group(1)}", None),
            ("generate", user, "/generate", None),
            ("usage", user, "/usage", None),
            ("admin: keys", admin, "/admin/keys", None),
            ("admin: users", admin, "/admin/users", None),
            ("admin: health and queues", admin, "/admin/health", None),
            ("admin: cleanup", admin, "/admin/cleanup", None),
        ]  # fmt: skip
        print("| page | HTML | CSS | JS | total | total gzip -6 |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, client, path, params in pages:
            html, css, js, compressed = weigh(client, path, params)
            print(f"| {name} | {html:,} | {css:,} | {js:,} | {html + css + js:,} | "
                  f"{compressed:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
