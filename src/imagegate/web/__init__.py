"""The Web UI (issue 7): server-rendered pages over the same services as the API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from imagegate.web import admin, generate, library, live, oidc, usage
from imagegate.web.pages import STATIC_DIR, router


def install_web(app: FastAPI) -> None:
    """Mount the pages at ``/`` and their static files at ``/static``."""
    app.include_router(router)
    app.include_router(library.router)
    app.include_router(generate.router)
    app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(oidc.router)
    app.include_router(live.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
