"""The JSON documents imagegate sends: images responses, jobs and batches.

The API answers with them and webhooks carry them, so both say the same thing. Built by hand
from the domain types: image bytes are base64-encoded once and never re-parsed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from datetime import datetime

from imagegate.models import Generation, JobStatus, ResponseFormat
from imagegate.services.generations import DeliveredImage
from imagegate.services.jobs import BatchView, JobView


def images_payload(
    generation: Generation, images: Sequence[DeliveredImage], created: int | None = None
) -> dict[str, object]:
    params = generation.params
    as_b64 = params["response_format"] == ResponseFormat.B64_JSON.value
    data = [
        {
            "b64_json" if as_b64 else "url": (
                base64.b64encode(item.data).decode("ascii") if as_b64 else item.url
            ),
            "revised_prompt": item.image.revised_prompt,
        }
        for item in images
    ]
    return {
        "created": int(time.time()) if created is None else created,
        "data": data,
        "output_format": params["output_format"],
        # what was made: providers that take aspect ratios return their own pixel sizes
        "size": (f"{images[0].image.width}x{images[0].image.height}" if images else params["size"]),
        "quality": params["quality"],
    }


def _unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def job_object(view: JobView, base: str) -> dict[str, object]:
    """A job as the API shows it (``base``: this gateway's URL, for the job's links)."""
    job = view.job
    generation = view.generation
    result = None
    if generation is not None and view.images:
        result = images_payload(generation, view.images, created=_unix(job.finished_at))
    error = None
    if job.error is not None:
        error = {"message": job.error.message, "type": job.error.type,
                 "param": job.error.param, "code": job.error.code}  # fmt: skip
    link = f"{base}/v1/jobs/{job.id}"
    return {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "model": job.model,
        "position": view.position,
        "stage": job.stage if job.status is JobStatus.RUNNING else None,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": _unix(job.created_at),
        "started_at": _unix(job.started_at),
        "finished_at": _unix(job.finished_at),
        "batch_id": job.batch_id,
        "generation_id": job.generation_id,
        "cost_usd": None if generation is None else f"{generation.cost_micro_usd / 1_000_000:.6f}",
        "cache": None if generation is None else generation.outcome.value,
        "result": result,
        "error": error,
        "metadata": job.metadata,
        "urls": {"self": link, "events": f"{link}/events", "cancel": f"{link}/cancel"},
    }


def batch_object(view: BatchView, base: str) -> dict[str, object]:
    batch = view.batch
    total = len(batch.job_ids)
    waiting = view.counts.get(JobStatus.QUEUED, 0)
    status = "finished" if view.finished == total else "queued" if waiting == total else "running"
    return {
        "id": batch.id,
        "object": "batch",
        "status": status,
        "total": total,
        "finished": view.finished,
        "progress": round(view.finished / total, 4) if total else 1.0,
        "counts": {s.value: view.counts.get(s, 0) for s in JobStatus},
        "concurrency": batch.concurrency,
        "created_at": _unix(batch.created_at),
        "metadata": batch.metadata,
        "jobs": [job_object(job, base) for job in view.jobs],
    }
