"""A loopback fake of Cloudflare Workers AI (providers.md section 4) and of a custom Worker.

    POST /client/v4/accounts/{account_id}/ai/run/{model}   JSON body, Bearer token
    GET  /worker?prompt=...[&seed=&width=&height=]          a public Worker
    POST /worker   {"prompt", "width", "height", "seed"}    a Worker that wants Bearer {api_key}

Workers AI checks in the real order: the token first (403, code 10000), then the model (400,
code 5007) and the input schema (400, code 5006), in Cloudflare's envelope
``{"result": null, "success": false, "errors": [{"code", "message"}], "messages": []}``.
FLUX.1 schnell answers with the envelope holding a base64 JPEG of 1024x1024 and refuses any
field besides prompt/steps/seed (its schema sets ``additionalProperties: false``) and steps
above 8; SDXL answers with raw PNG bytes of ``width`` x ``height``. The Worker answers with PNG.

Faults (``state.faults``): ``status`` -> that status in the envelope (+ ``Retry-After``),
``malformed`` -> 200 with truncated JSON (truncated PNG on the raw-bytes routes), ``reset`` ->
a dropped connection, ``safety`` -> 400 with an NSFW error (its real code and wording are
UNCONFIRMED: code 3030 and the message below are a plausible guess).

Run it alone: ``python -m tests.fakes.cloudflare --port 8092``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.images import fake_image
from tests.fakes.server import DroppedConnection, FakeState, Fault, apply_timing_fault

FLUX = "@cf/black-forest-labs/flux-1-schnell"
SDXL = "@cf/stabilityai/stable-diffusion-xl-base-1.0"
INPUT_FIELDS = {
    FLUX: frozenset({"prompt", "steps", "seed"}),
    SDXL: frozenset(
        {"prompt", "negative_prompt", "height", "width", "image", "image_b64", "mask"}
        | {"num_steps", "strength", "guidance", "seed"}
    ),
}
MAX_STEPS = {FLUX: ("steps", 8), SDXL: ("num_steps", 20)}
NSFW_CODE, NSFW_MESSAGE = 3030, "AiError: Input prompt contains NSFW content."  # UNCONFIRMED
_FAULT_CODES = {408: 3007, 413: 3006, 429: 3040, 403: 10000}  # others: illustrative 3043

Outcome = Response | DroppedConnection


def cloudflare_error(status: int, code: int, message: str) -> Response:
    body = {"result": None, "success": False, "errors": [{"code": code, "message": message}]}
    return Response(orjson.dumps({**body, "messages": []}), status, media_type="application/json")


def _fault_reply(fault: Fault | None) -> Outcome | None:
    """The answer a reset or status fault forces, before anything is checked."""
    if fault is None or fault.kind not in ("reset", "status"):
        return None
    if fault.kind == "reset":
        return DroppedConnection()
    code = _FAULT_CODES.get(fault.status, 3043)
    response = cloudflare_error(fault.status, code, f"fake: injected HTTP {fault.status}")
    if fault.retry_after is not None:
        response.headers["retry-after"] = f"{fault.retry_after:g}"
    return response


def _png(width: int, height: int, prompt: str, fault: Fault | None) -> Response:
    image = fake_image(width, height, "png", prompt)
    if fault is not None and fault.kind == "malformed":
        image = image[: len(image) // 2]
    return Response(image, media_type="image/png")


def _schema_problem(model: str, body: dict[str, Any]) -> str | None:
    """What Workers AI's input validation would refuse (code 5006), or None."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 2048:
        return "Type mismatch of '/prompt', 'string' not in 1-2048 characters"
    if extra := sorted(set(body) - INPUT_FIELDS[model]):
        return f"Type mismatch: additional properties not allowed: {', '.join(extra)}"
    steps_field, max_steps = MAX_STEPS[model]
    steps = body.get(steps_field, 0)
    if not isinstance(steps, int) or steps > max_steps:
        return f"Type mismatch of '/{steps_field}', must be an integer <= {max_steps}"
    for side in ("width", "height"):
        if side in body and not (isinstance(body[side], int) and 256 <= body[side] <= 2048):
            return f"Type mismatch of '/{side}', must be an integer in 256-2048"
    return None


def build_cloudflare_fake(state: FakeState) -> Starlette:
    async def run_model(request: Request) -> Outcome:
        raw = await state.record(request)
        fault = state.faults.take()
        await apply_timing_fault(fault)
        if (forced := _fault_reply(fault)) is not None:
            return forced
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return cloudflare_error(403, 10000, "Authentication error")
        model = request.path_params["model"]
        if model not in INPUT_FIELDS:
            return cloudflare_error(400, 5007, f"No such model {model} or task")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return cloudflare_error(400, 3003, "Request is missing headers or body")
        if problem := _schema_problem(model, body):
            return cloudflare_error(400, 5006, problem)
        if "image_b64" in body:
            try:
                base64.b64decode(body["image_b64"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                return cloudflare_error(400, 5004, "Invalid data type for base64 input")
        if fault is not None and fault.kind == "safety":
            return cloudflare_error(400, NSFW_CODE, NSFW_MESSAGE)
        if model == SDXL:
            return _png(body.get("width", 1024), body.get("height", 1024), body["prompt"], fault)
        image = base64.b64encode(fake_image(1024, 1024, "jpeg", body["prompt"])).decode()
        payload = orjson.dumps(
            {"result": {"image": image}, "success": True, "errors": [], "messages": []}
        )
        malformed = fault is not None and fault.kind == "malformed"
        return Response(payload[:40] if malformed else payload, media_type="application/json")

    async def worker(request: Request) -> Outcome:
        raw = await state.record(request)
        fault = state.faults.take()
        await apply_timing_fault(fault)
        if (forced := _fault_reply(fault)) is not None:
            return forced
        fields: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            if request.headers.get("authorization") != f"Bearer {state.api_key}":
                return Response(orjson.dumps({"error": "Unauthorized"}), 401)
            try:
                fields = orjson.loads(raw)
            except orjson.JSONDecodeError:
                fields = {}
        if not isinstance(fields, dict) or not fields.get("prompt"):
            return Response(orjson.dumps({"error": "prompt is required"}), 400)
        if fault is not None and fault.kind == "safety":  # a Worker passing on Workers AI's error
            return cloudflare_error(400, NSFW_CODE, NSFW_MESSAGE)
        width, height = int(fields.get("width", 1024)), int(fields.get("height", 1024))
        return _png(width, height, str(fields["prompt"]), fault)

    async def unknown_route(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return cloudflare_error(status, 7003, f"Could not route to {request.url.path}")

    return Starlette(
        routes=[
            Route(
                "/client/v4/accounts/{account_id}/ai/run/{model:path}", run_model, methods=["POST"]
            ),
            Route("/worker", worker, methods=["GET", "POST"]),
        ],
        exception_handlers={404: unknown_route, 405: unknown_route},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Cloudflare Workers AI on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args(argv)
    app = build_cloudflare_fake(FakeState(api_key=args.api_key))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
