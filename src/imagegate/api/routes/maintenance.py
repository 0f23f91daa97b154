"""``POST /v1/admin/cleanup``: the ``imagegate cleanup`` command over HTTP, admins only."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from imagegate.api.deps import AdminPrincipal, ServicesDep

router = APIRouter(prefix="/v1/admin", tags=["Admin"])

MAX_LISTED = 100


class CleanupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(
        default=True, description="Only report what would be removed (the default)."
    )


class TallyBody(BaseModel):
    count: int
    bytes: int


class CleanupReportBody(BaseModel):
    dry_run: bool
    categories: dict[str, TallyBody] = Field(
        description="orphan_blobs, young_orphans_kept, repaired_thumbnails (missing "
        "thumbnails made again from their image; 0 bytes in a dry run), missing_blobs (records "
        "that cannot be repaired: their image is gone), expired_cache_entries, expired_images: "
        "how many, and how many bytes."
    )
    missing_records: list[str] = Field(
        description=f"Ids of image records whose blob is missing and cannot be repaired (at "
        f"most {MAX_LISTED})."
    )
    repaired_records: list[str] = Field(
        description="Ids of image records whose missing thumbnail was made again (in a dry run: "
        f"would be) (at most {MAX_LISTED})."
    )


@router.post(
    "/cleanup",
    response_model=CleanupReportBody,
    summary="Remove orphan blobs, expired cache entries and images past retention; remake "
    "missing thumbnails",
    description="Blobs younger than IMAGEGATE_CLEANUP_GRACE_SECONDS are always kept; images "
    "are only removed when IMAGEGATE_RETENTION_DAYS is set, pinned ones never. A missing "
    "thumbnail is made again from its image (not in a dry run).",
)
async def cleanup(body: CleanupBody, _: AdminPrincipal, services: ServicesDep) -> CleanupReportBody:
    report = await services.maintenance.cleanup(dry_run=body.dry_run)
    return CleanupReportBody(
        dry_run=report.dry_run,
        categories={
            name: TallyBody(count=t.count, bytes=t.bytes) for name, t in report.tallies().items()
        },
        missing_records=report.missing_records[:MAX_LISTED],
        repaired_records=report.repaired_records[:MAX_LISTED],
    )
