"""What the bot says: every text it sends, as pure functions of what happened.

Plain text only (no Markdown or HTML parse mode), so nothing a user or a model writes can break
a message. Failures say what to do next: wait, rephrase, or try another model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from imagegate.bots.commands import ENHANCE_SYNTAX, IMAGE_SYNTAX
from imagegate.models import JobStatus, Outcome
from imagegate.services.jobs import JobView
from imagegate.services.usage import UsageReport, format_usd

CAPTION_LIMIT = 1024
"""Telegram's longest photo caption."""
DONE = "✅ Done."
CANCELED = "Canceled."

_RATE_CODES = frozenset(
    {"rate_limit_exceeded", "concurrency_limit_exceeded", "queue_full", "upstream_rate_limited"}
)
_LIMIT_CODES = frozenset({"budget_exceeded", "quota_exceeded"})
_PROVIDER_CODES = frozenset(
    {
        "upstream_error",
        "upstream_timeout",
        "upstream_unavailable",
        "upstream_rejected",
        "upstream_invalid_request",
        "service_unavailable",
    }
)
_TRY_AGAIN = re.compile(r"[Tt]ry again in (\d+)\s*s")


def help_text(default_model: str, enhancer: bool = False) -> str:
    """``enhancer``: a prompt enhancer is configured, so ``/enhance`` is offered."""
    enhance: tuple[str, ...] = ()
    if enhancer:
        enhance = (f"{ENHANCE_SYNTAX} — let an AI improve your prompts first, or not",)
    return "\n".join(
        (
            "I draw images for you.",
            "",
            f"/image <prompt> — draw with {default_model}",
            f"{IMAGE_SYNTAX} — draw with a model of your choice",
            *enhance,
            "/models — the models you can use",
            "/usage — what you have spent and what is left of your quota",
            "/help — this message",
        )
    )


NO_ENHANCER = "Prompt enhancement is not available here: your prompts are drawn as you write them."


def enhance_text(choice: bool | None, enhanced_by_default: Sequence[str]) -> str:
    """The user's prompt-enhancement choice, and how to change it."""
    if choice is True:
        return (
            "✍️ Prompt enhancement is on: an AI rewrites each of your prompts before it is "
            "drawn. /enhance off to stop, /enhance default for each model's default."
        )
    if choice is False:
        return (
            "Prompt enhancement is off: your prompts are drawn as you write them. /enhance on "
            "to turn it on, /enhance default for each model's default."
        )
    which = (
        f"on for {', '.join(enhanced_by_default)}, off for the others"
        if enhanced_by_default
        else "off for every model"
    )
    return (
        f"Prompt enhancement follows each model's default ({which}). "
        "/enhance on or /enhance off to choose for yourself."
    )


def not_allowed(telegram_user_id: int) -> str:
    return (
        "Sorry, this bot is private. Your Telegram user id is "
        f"{telegram_user_id}: ask its admin to add it to the allowlist."
    )


def models_text(names: Sequence[str], default_model: str) -> str:
    lines = [f"• {name}{' (default)' if name == default_model else ''}" for name in names]
    return "\n".join(("Models:", *lines, "", f"Use {IMAGE_SYNTAX}."))


def unknown_model(model: str, names: Sequence[str]) -> str:
    return f"Unknown model “{model}”. Choose one of: {', '.join(names)}."


def rate_limited(retry_after: float | None) -> str:
    return f"⏱ Slow down: too many requests. Try again in {_seconds(retry_after)} seconds."


def status(view: JobView) -> str:
    """The status message of a job not yet finished."""
    job = view.job
    if job.status is JobStatus.QUEUED:
        return f"⏳ Queued: position {view.position or 1} in the {job.model} queue."
    if job.stage == "enhancing":
        return "✍️ Improving your prompt…"
    if job.stage == "waiting":
        return f"⏳ Waiting for your other images to finish before {job.model} starts…"
    return f"🎨 Generating with {job.model}…"


def caption(view: JobView) -> str:
    """The photo's caption: the prompt the model drew (revised, if it rewrote it), the model,
    and whether it came from the cache."""
    job, generation = view.job, view.generation
    revised = next((d.image.revised_prompt for d in view.images if d.image.revised_prompt), None)
    outcome = generation.outcome if generation is not None else Outcome.GENERATED
    source = {
        Outcome.CACHE_HIT: "from the cache",
        Outcome.SEMANTIC_HIT: "from the cache (a near-identical prompt)",
        Outcome.COALESCED: "shared with an identical request",
    }.get(outcome, "new image")
    footer = f"\n\n{job.model} · {source}"
    prompt = revised or job.request.prompt
    room = CAPTION_LIMIT - len(footer)
    if len(prompt) > room:
        prompt = prompt[: room - 1] + "…"
    return prompt + footer


def failure(
    model: str,
    code: str,
    message: str,
    other_models: Sequence[str],
    retry_after: float | None = None,
) -> str:
    """A failed request, friendly, with what to do about it."""
    if code in _RATE_CODES:
        if retry_after is None and (found := _TRY_AGAIN.search(message)):
            retry_after = float(found.group(1))
        return f"⏱ {model} is busy. Please wait {_seconds(retry_after)} seconds and try again."
    if code in _LIMIT_CODES:
        return f"💸 You have reached your limit. {message}"
    if code == "content_policy_violation":
        return (
            f"🚫 {model} refused this prompt under its content policy. "
            "Please rephrase it and try again."
        )
    if code in _PROVIDER_CODES or code.startswith("upstream_"):
        others = [name for name in other_models if name != model]
        hint = f", e.g. /image={others[0]}=<prompt>" if others else ""
        return f"⚠️ {model} failed to make the image. Try another model{hint}; /models lists them."
    if code == "canceled":
        return CANCELED
    if code in {"invalid_value", "unsupported_parameter", "invalid_request_error"}:
        return f"⚠️ {message}"
    return f"❌ Something went wrong on our side ({code}). Please try again later."


def usage_text(report: UsageReport) -> str:
    totals = report.totals
    hits = totals.cache_hit + totals.semantic_hit
    lines = [
        f"Your usage since {report.start:%Y-%m-%d} (UTC): {totals.images} images, "
        f"{_usd(totals.spend_micro_usd)} spent; {hits} from the cache "
        f"({_usd(totals.saved_micro_usd)} saved).",
    ]
    quota = []
    for limit in report.budget:
        parts = []
        if limit.limit_micro_usd is not None:
            spent = limit.spent_micro_usd + limit.reserved_micro_usd
            parts.append(f"{_usd(spent)} of {_usd(limit.limit_micro_usd)}")
        if limit.images_limit is not None:
            parts.append(f"{limit.images} of {limit.images_limit} images")
        if parts:
            quota.append(
                f"• this {limit.window}: {', '.join(parts)} used "
                f"(resets {limit.resets_at:%Y-%m-%d %H:%M} UTC)"
            )
    lines.extend(("Your quota:", *quota) if quota else ("No quota applies to you.",))
    return "\n".join(lines)


def _seconds(retry_after: float | None) -> int:
    return max(1, math.ceil(retry_after)) if retry_after is not None else 60


def _usd(micro_usd: int) -> str:
    whole, _, fraction = format_usd(micro_usd).partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"
