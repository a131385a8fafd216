"""OpenAI's request bodies as generation requests: what the API refuses that its schema lets
through, and the prompts in each of OpenAI's forms."""

from __future__ import annotations

from handlers.openai_api import protocol as p
from textgen.engine import SamplingParams
from textgen.errors import InvalidRequest
from textgen.service import GenerationRequest


def completion_request(
    body: p.CompletionRequest, deadline: float | None, background: bool
) -> GenerationRequest:
    """The completion, checked, as a request: a `background` one (a batch file's line) starts
    after interactive ones."""
    _check_common(body)
    if body.logprobs is not None and not 0 <= body.logprobs <= p.MAX_COMPLETION_LOGPROBS:
        raise InvalidRequest(f"logprobs must be 0 to {p.MAX_COMPLETION_LOGPROBS}", field="logprobs")
    if body.best_of not in (None, 1):
        raise InvalidRequest("best_of is not supported (use n)", field="best_of")
    if body.suffix:
        raise InvalidRequest("suffix is not supported", field="suffix")
    if body.echo and body.stream and body.logprobs is not None:
        raise InvalidRequest("echo with logprobs is not supported when streaming", field="logprobs")
    prompts, prompt_ids = _prompt_forms(body.prompt)
    return GenerationRequest(
        model_name=body.model,
        prompts=prompts,
        prompt_ids=prompt_ids,
        choices=body.n,
        family=None,
        max_tokens=body.max_tokens,
        sampling=_sampling(body),
        deadline=deadline,
        stream=body.stream,
        logprobs=body.logprobs,
        prompt_logprobs=body.echo and body.logprobs is not None,
        background=background,
        prompt_name="prompt",
    )


def chat_request(
    body: p.ChatCompletionRequest, deadline: float | None, background: bool
) -> GenerationRequest:
    """The conversation, checked, as a request (rendered by the model's template at submit)."""
    _check_common(body)
    if body.top_logprobs is not None:
        if not body.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs: true", field="top_logprobs")
        if not 0 <= body.top_logprobs <= p.MAX_CHAT_TOP_LOGPROBS:
            raise InvalidRequest(
                f"top_logprobs must be 0 to {p.MAX_CHAT_TOP_LOGPROBS}", field="top_logprobs"
            )
    if body.response_format is not None and body.response_format.type != "text":
        raise InvalidRequest(
            f"response_format {body.response_format.type!r} is not supported (only 'text')",
            field="response_format",
        )
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise InvalidRequest(
            "give max_tokens or max_completion_tokens, not both", field="max_tokens"
        )
    field, given = (
        ("max_tokens", body.max_tokens)
        if body.max_completion_tokens is None
        else ("max_completion_tokens", body.max_completion_tokens)
    )
    if given is not None and given < 1:
        raise InvalidRequest(f"{field} must be at least 1, got {given}", field=field)
    return GenerationRequest(
        model_name=body.model,
        prompts=[],
        messages=[_plain_message(m) for m in body.messages],
        choices=body.n,
        family=None,
        max_tokens=given,  # None: DEFAULT_MAX_TOKENS, or what the context leaves, as OpenAI does
        sampling=_sampling(body),
        deadline=deadline,
        stream=body.stream,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        special_tokens=False,  # the template writes the model's special tokens itself
        background=background,
        prompt_name="messages",
    )


def _prompt_forms(
    prompt: str | list[str] | list[int] | list[list[int]],
) -> tuple[list[str], list[list[int]] | None]:
    """A completion's prompts as text, or as token ids (then None as text: decoded once the
    model is loaded): OpenAI's four forms of `prompt`."""
    if isinstance(prompt, str):
        return [prompt], None
    if not prompt:
        raise InvalidRequest("prompt must hold at least one prompt", field="prompt")
    if all(isinstance(item, str) for item in prompt):
        return [item for item in prompt if isinstance(item, str)], None
    if all(isinstance(item, int) for item in prompt):
        return [], [[item for item in prompt if isinstance(item, int)]]
    lists = [item for item in prompt if isinstance(item, list)]
    for index, ids in enumerate(lists):
        if not ids:
            raise InvalidRequest(f"prompt[{index}] is an empty list of token ids", field="prompt")
    return [], lists


def _check_common(body: p.ChatCompletionRequest | p.CompletionRequest) -> None:
    if not 1 <= body.n <= p.MAX_CHOICES:
        raise InvalidRequest(f"n must be 1 to {p.MAX_CHOICES}", field="n")
    for field in ("presence_penalty", "frequency_penalty"):
        if getattr(body, field):
            raise InvalidRequest(
                f"{field} is not supported; leave it at 0 (repetition_penalty exists on "
                "/gpt2_model and /llama_model)",
                field=field,
            )
    if body.logit_bias:
        raise InvalidRequest("logit_bias is not supported", field="logit_bias")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest("stream_options needs stream: true", field="stream_options")


def _sampling(body: p.ChatCompletionRequest | p.CompletionRequest) -> SamplingParams:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return SamplingParams(temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop)


def _plain_message(message: p.ChatMessage) -> dict[str, str]:
    """A message as chat templates take it: role and text (text parts joined). OpenAI's
    developer messages are its system messages by a newer name, which templates do not know."""
    content = message.content
    if isinstance(content, list):
        content = "".join(part.text for part in content)
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content or ""}
