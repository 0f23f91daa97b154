"""The public HTTP contract. Field names and meanings follow OpenAI's Images API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegate.models import GenerationRequest, InputImage, OutputFormat, ResponseFormat


class CreateImageRequest(BaseModel):
    """OpenAI's ``CreateImageRequest``, plus imagegate's ``seed`` extension."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: str = Field(description="What to draw. Whitespace is normalized.")
    model: str | None = Field(default=None, description="Public model name; see GET /v1/models.")
    n: int = Field(default=1, description="How many images (1 to the model's max_n).")
    size: str | None = Field(default=None, description="WxH from the model's sizes, or auto.")
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, description="0-100, jpeg/webp only.")
    moderation: Literal["auto", "low"] | None = Field(
        default=None, description="Passed to providers that support it."
    )
    stream: Literal[False] | None = Field(default=None, description="Streaming is not supported.")
    partial_images: Literal[0] | None = None
    user: str | None = Field(default=None, description="Your end user's id, recorded.")
    seed: int | None = Field(
        default=None, ge=0, description="imagegate extension: same seed, same picture."
    )
    negative_prompt: str | None = Field(
        default=None, description="imagegate extension: what to avoid, where the model takes it."
    )

    def to_domain(self) -> GenerationRequest:
        return GenerationRequest(
            prompt=self.prompt,
            model=self.model,
            n=self.n,
            size=self.size,
            quality=self.quality,
            style=self.style,
            background=self.background,
            output_format=OutputFormat(self.output_format) if self.output_format else None,
            output_compression=self.output_compression,
            response_format=ResponseFormat(self.response_format or ResponseFormat.URL),
            seed=self.seed,
            user=self.user,
            negative_prompt=self.negative_prompt,
        )


class CreateImageEditForm(BaseModel):
    """OpenAI's ``CreateImageEditRequest`` form fields (the files travel beside them).

    Form values arrive as text, so numbers are parsed from strings here (lax mode).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = None
    input_fidelity: Literal["high", "low"] | None = None
    moderation: Literal["auto", "low"] | None = None
    stream: Literal[False] | None = None
    partial_images: Literal[0] | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0)
    negative_prompt: str | None = None
    strength: float | None = None

    def to_domain(self, images: list[InputImage], mask: InputImage | None) -> GenerationRequest:
        return GenerationRequest(
            prompt=self.prompt,
            model=self.model,
            n=self.n,
            size=self.size,
            quality=self.quality,
            background=self.background,
            output_format=OutputFormat(self.output_format) if self.output_format else None,
            output_compression=self.output_compression,
            response_format=ResponseFormat(self.response_format or ResponseFormat.URL),
            seed=self.seed,
            user=self.user,
            negative_prompt=self.negative_prompt,
            images=tuple(images),
            mask=mask,
            strength=self.strength,
        )


class ImageRef(BaseModel):
    """OpenAI's ``ImageRefParam``: imagegate takes ``data:`` URLs (it never fetches URLs)."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    file_id: str | None = None


class CreateImageEditJson(CreateImageEditForm):
    """OpenAI's JSON form of an edit (``EditImageBodyJsonParam``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    images: list[ImageRef] = Field(min_length=1)
    mask: ImageRef | None = None


def edit_form_openapi() -> dict[str, object]:
    """The multipart body of /v1/images/edits for the OpenAPI document."""
    schema = CreateImageEditForm.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    schema["properties"]["image"] = {
        "anyOf": [binary, {"type": "array", "items": binary}],
        "description": "One or more images (also accepted as image[]).",
    }
    schema["properties"]["mask"] = {**binary, "description": "PNG; transparent = area to edit."}
    schema["required"] = ["prompt", "image"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema},
                "application/json": {"schema": CreateImageEditJson.model_json_schema()},
            },
        }
    }


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: Literal["png", "jpeg", "webp"]
    size: str
    quality: str


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
    providers: dict[str, str] = Field(
        default_factory=dict, description="Configured providers: ok, or why left out."
    )


class ProviderReportBody(BaseModel):
    providers: dict[str, str] = Field(description="Configured providers: ok, or why left out.")
    targets: dict[str, str] = Field(description="Circuit state of each route target.")
