"""Wire types of the HTTP API (pydantic), kept apart from the engine's own dataclasses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from textgen.metrics import Throughput, Timing


class GenerateRequestBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model_name": "gpt2-tiny", "prompts": ["Hello, my name is"]}]
        },
    )

    model_name: StrictStr = Field(description="A model in the store, e.g. `gpt2-tiny`.")
    prompts: list[StrictStr] = Field(description="Each prompt gets its own output, in order.")
    task: StrictStr = Field(default="text-generation", description="Only `text-generation`.")
    framework: StrictStr = Field(default="pt", description="`pt` (PyTorch) or `tf` (TensorFlow).")
    max_tokens: int | None = Field(
        default=None, description="New tokens per prompt; the server's default is 200."
    )


class CompletionOut(BaseModel):
    generated_text: str
    generated_tokens: int
    finish_reason: str


class ThroughputOut(BaseModel):
    iterations_per_second: float
    tokens_per_second: float

    @classmethod
    def of(cls, value: Throughput) -> ThroughputOut:
        return cls(**vars(value))


class TimingOut(BaseModel):
    load_seconds: float
    fetch_seconds: float
    download_bytes: int
    generate_seconds: float
    total_seconds: float
    model_loaded: bool

    @classmethod
    def of(cls, value: Timing) -> TimingOut:
        return cls(**vars(value))


class GenerateResponse(BaseModel):
    model_name: str
    family: str
    framework: str
    task: str
    results: list[CompletionOut]
    throughput: ThroughputOut
    timing: TimingOut


class ModelOut(BaseModel):
    name: str
    family: str
    frameworks: list[str]


class ModelsResponse(BaseModel):
    store: str
    models: list[ModelOut]


class HealthResponse(BaseModel):
    status: str
    store: str
    loaded_models: list[str]


class ErrorBody(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
