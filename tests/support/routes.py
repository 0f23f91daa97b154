"""The app's route table, flattened: every (method, path) a client can call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute
from starlette.types import ASGIApp


def route_table(app: ASGIApp) -> set[tuple[str, str]]:
    """Every (METHOD, path template) of ``app``, HEAD folded into GET, mounts and included
    routers walked (FastAPI keeps included routers as nested route objects)."""
    routes: Iterable[BaseRoute] = getattr(app, "routes", ())
    return {(method, path) for method, path in _walk(routes, "") if method != "HEAD"}


def _walk(routes: Iterable[object], prefix: str) -> Iterator[tuple[str, str]]:
    for route in routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):  # fastapi's included router
            yield from _walk(nested(), prefix)
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        methods = getattr(route, "methods", None)
        if methods:
            for method in methods:
                yield method, prefix + path
        elif getattr(route, "routes", None):  # a Mount of routes
            yield from _walk(route.routes, prefix + path)
        else:
            yield (
                "WEBSOCKET" if "websocket" in type(route).__name__.lower() else "ANY",
                prefix + path,
            )
