"""Wire types of the OpenAI-compatible API, as the official SDKs send and parse them.

Requests refuse unknown fields (as OpenAI's own API does), so a typo is an error. Fields OpenAI
has and this service does not implement are accepted only at their neutral value, and refused
with a 400 naming them otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_serializer,
)
from pydantic_core import PydanticUseDefault

MAX_CHOICES = 4
MAX_COMPLETION_LOGPROBS = 5
MAX_CHAT_TOP_LOGPROBS = 20


# Request bodies are strict, as OpenAI's API is: `"max_tokens": "5"` or `"stream": "true"` is an
# error, not read as 5 or true (a number's field takes an integer too).
_BODY = ConfigDict(extra="forbid", strict=True)

T = TypeVar("T")


def _null_is_default(value: Any) -> Any:
    if value is None:
        raise PydanticUseDefault()
    return value


def _or_null(kind: type[T]) -> Any:
    """A field OpenAI's API lets a client send as null, meaning its default (clients that write
    every parameter do); the documents say null is allowed."""
    return BeforeValidator(_null_is_default, json_schema_input_type=kind | None)


# The fields a client may send as null for their default.
_Bool = Annotated[bool, _or_null(bool)]
_Int = Annotated[int, _or_null(int)]
_Float = Annotated[float, _or_null(float)]


class StreamOptions(BaseModel):
    model_config = _BODY

    include_usage: _Bool = False


class _Request(BaseModel):
    model_config = _BODY

    model: StrictStr
    temperature: _Float = Field(default=1.0, description="0 is greedy; up to 2.")
    top_p: _Float = Field(default=1.0, description="Nucleus sampling, above 0 and at most 1.")
    n: _Int = Field(default=1, description=f"Choices per prompt, 1 to {MAX_CHOICES}.")
    stream: _Bool = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = Field(default=None, description="Up to 4 strings.")
    seed: int | None = None
    presence_penalty: _Float = Field(default=0.0, description="Only 0: not supported.")
    frequency_penalty: _Float = Field(default=0.0, description="Only 0: not supported.")
    logit_bias: dict[str, float] | None = Field(default=None, description="Not supported.")
    user: str | None = Field(default=None, description="Accepted and ignored.")


class CompletionRequest(_Request):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="A string, a list of strings, a list of token ids, or a list of such lists."
    )
    max_tokens: _Int = Field(default=16, description="0 with echo scores the prompt only.")
    echo: _Bool = False
    logprobs: int | None = Field(
        default=None, description=f"Log-probabilities of the {MAX_COMPLETION_LOGPROBS} best."
    )
    best_of: int | None = Field(default=None, description="Only 1: not supported.")
    suffix: str | None = Field(default=None, description="Not supported.")


class TextPart(BaseModel):
    model_config = _BODY

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = _BODY

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = Field(
        default=None, description="Text, or text parts (other kinds are not supported)."
    )
    name: str | None = None


class ResponseFormat(BaseModel):
    model_config = _BODY

    type: StrictStr


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: _Bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = Field(
        default=None, description='Only `{"type": "text"}`: structured output is not supported.'
    )


# ---- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None

    @field_serializer("delta")
    def _delta(self, delta: Delta) -> dict[str, str]:
        """Only what the chunk carries, as OpenAI sends it: the last chunk's delta is {}."""
        return delta.model_dump(exclude_none=True)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "serverless-textgen"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody
