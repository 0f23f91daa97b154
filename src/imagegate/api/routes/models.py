"""``GET /v1/models``: the models this gateway can serve right now."""

from __future__ import annotations

from fastapi import APIRouter

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.schemas import ModelList, ModelObject

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

CATALOGUE_EPOCH = 1767225600  # 2026-01-01: catalogue entries have no creation date of their own


@router.get("/models", response_model=ModelList, summary="List available models")
async def list_models(_: CurrentPrincipal, services: ServicesDep) -> ModelList:
    return ModelList(
        data=[
            ModelObject(
                id=spec.name,
                created=CATALOGUE_EPOCH,
                owned_by=spec.provider,
                description=spec.description,
            )
            for spec in services.generations.available_models()
        ]
    )
