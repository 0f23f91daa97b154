"""The ImageProvider protocol every adapter implements, and the router's protocol."""

from __future__ import annotations

from typing import Protocol

from imagegate.catalog import ModelSpec, Target
from imagegate.models import NormalizedRequest, ProviderResult


class ImageProvider(Protocol):
    """One configured upstream service (an instance of a provider kind).

    ``generate`` makes exactly ``request.n`` images (the router never asks for more than the
    target's ``spec.per_call``), in ``target.spec.upstream_format(request.output_format)``, using
    ``target.spec.upstream_model`` and merging ``target.params`` into the upstream request. It
    classifies every failure into ``imagegate.errors`` (see ``providers/http.py``); it never
    retries: retries, fallback and breakers are the router's.
    """

    name: str

    async def generate(self, request: NormalizedRequest, target: Target) -> ProviderResult: ...

    async def aclose(self) -> None: ...


class ModelRouter(Protocol):
    """Sends a request for a public model to the target(s) that serve it."""

    def serves(self, spec: ModelSpec) -> bool:
        """Whether a configured provider can serve ``spec``."""
        ...

    async def generate(self, spec: ModelSpec, request: NormalizedRequest) -> ProviderResult: ...
