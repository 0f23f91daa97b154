"""The ImageProvider protocol every adapter implements, the router's protocol, and the chat
model the prompt enhancer talks to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from imagegate.catalog import ModelSpec, Target
from imagegate.errors import InvalidRequest, UnsupportedParameter
from imagegate.models import Attempt, InputImage, NormalizedRequest, ProviderResult


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


ResultCheck = Callable[[ProviderResult], Awaitable[None]]


class ModelRouter(Protocol):
    """Sends a request for a public model to the target(s) that serve it."""

    def models(self) -> list[ModelSpec]:
        """The public models a configured provider can serve now."""
        ...

    def resolve(self, name: str) -> ModelSpec:
        """The limits of public model ``name``; ``ModelNotFound`` if it is not served."""
        ...

    async def generate(
        self,
        spec: ModelSpec,
        request: NormalizedRequest,
        attempts: list[Attempt],
        verify: ResultCheck | None = None,
    ) -> ProviderResult:
        """Make the images; every upstream call is appended to ``attempts``, even on failure.

        ``verify`` looks at each call's result before it counts as a success: the
        ``ProviderError`` it raises (undecodable bytes, say) fails that attempt like any other
        retryable upstream error, so the call is retried or the next target tried."""
        ...

    def capacity(self, name: str) -> int:
        """How many requests for public model ``name`` may run at once in this process."""
        ...

    def breaker_states(self) -> dict[str, str]:
        """Circuit state (closed, open, half_open) of every route target, by target name."""
        ...


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What a chat model answered, before any cleaning."""

    text: str
    finish_reason: str | None = None
    """``stop``, ``length`` (cut off at max_tokens), ``content_filter``, ... as the server said."""
    refused: bool = False
    """The model declined (OpenAI's ``refusal``)."""


class ChatModel(Protocol):
    """An OpenAI-compatible chat-completions endpoint (``providers/chat.py``); the protocol
    keeps ``services/`` free of HTTP, as ``ModelRouter`` does for images."""

    model: str

    async def complete(self, prompt: str) -> ChatAnswer:
        """One completion for ``prompt`` under the configured system prompt; failures are
        ``imagegate.errors`` classes (``ProviderTimeout``, ``ProviderError``, ...)."""
        ...


def single_reference_image(
    request: NormalizedRequest, spec: ModelSpec, *, takes_edits: bool
) -> InputImage:
    """The one reference image of an edit, for upstreams that take exactly one and no mask.

    The catalogue (``kinds``, ``max_input_images``, ``supports_mask``) keeps other requests away;
    this guards a catalogue override that forgot to.
    """
    if not takes_edits:
        raise UnsupportedParameter(
            f"Model {spec.name!r} does not take a reference image.", param="image"
        )
    if request.mask is not None:
        raise UnsupportedParameter(f"Model {spec.name!r} does not take a mask.", param="mask")
    if len(request.images) != 1:
        raise InvalidRequest(
            f"Model {spec.name!r} edits exactly one reference image; got {len(request.images)}.",
            param="image",
        )
    return request.images[0]
