"""Wire types of the HTTP API (pydantic), kept apart from the engine's own dataclasses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from textgen.timing import Throughput, Timing


class GenerateRequestBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON values of the wrong type are refused (handlers.request_body)
        json_schema_extra={
            "examples": [{"model_name": "gpt2-tiny", "prompts": ["Hello, my name is"]}]
        },
    )

    model_name: StrictStr = Field(description="A model in the store, e.g. `gpt2-tiny`.")
    prompts: list[StrictStr] = Field(description="Each prompt gets its own output, in order.")
    task: StrictStr = Field(default="text-generation", description="Only `text-generation`.")
    framework: StrictStr = Field(default="pt", description="`pt` (PyTorch) or `tf` (TensorFlow).")
    max_tokens: int | None = Field(
        default=None,
        description="New tokens per prompt; by default the server's DEFAULT_MAX_TOKENS.",
    )
    temperature: float | None = Field(
        default=None, description="0 (the default) is greedy; up to 2, higher is more random."
    )
    top_p: float | None = Field(
        default=None, description="Nucleus sampling: above 0 and at most 1 (the default)."
    )
    top_k: int | None = Field(
        default=None, description="Sample among the k most likely tokens; 0 (the default) is off."
    )
    repetition_penalty: float | None = Field(
        default=None,
        description="Above 1 discourages tokens already in the prompt or output; default 1.",
    )
    seed: int | None = Field(
        default=None, description="Same seed and request, same text; -2^63 to 2^63-1."
    )
    stop: StrictStr | list[StrictStr] | None = Field(
        default=None,
        description="Up to 4 strings; the text ends before the first one (finish_reason stop).",
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
    queue_seconds: float
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


class EngineOut(BaseModel):
    running_sequences: int
    queued_requests: int
    steps_per_second: float
    steps: int
    runtime: str


class HealthResponse(BaseModel):
    status: str
    store: str
    loaded_models: list[str]
    engines: dict[str, EngineOut] = Field(description="Per loaded model (`name:framework`).")


class ErrorBody(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
