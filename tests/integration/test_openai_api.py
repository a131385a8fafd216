"""The OpenAI-compatible API through the official `openai` client (sync, async, streaming)
against uvicorn on loopback, for both families."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.support.servers import free_port, python_module, running_server

MODELS = ["gpt2-test", "llama-test"]


def serve(store: Path, **env: str) -> Any:
    port = free_port()
    command = python_module("handlers.cli", "serve", "--port", str(port), "--log-level", "warning")
    return running_server(command, port, {"MODEL_STORE": str(store), **env})


@pytest.fixture(scope="module")
def url(engine_store: Path) -> Iterator[str]:
    with serve(engine_store) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    listed = {m.id for m in client.models.list()}
    one = client.models.retrieve("llama-test")

    assert {"gpt2-test", "llama-test", "llama-chat-test"} <= listed
    assert (one.id, one.object) == ("llama-test", "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize("model", MODELS)
def test_greedy_completion_is_what_the_seed_endpoint_gives(
    client: openai.OpenAI, url: str, model: str
) -> None:
    path = "/gpt2_model" if model.startswith("gpt2") else "/llama_model"
    seed_endpoint = httpx.post(
        f"{url}{path}",
        json={"model_name": model, "prompts": ["Hello there"], "max_tokens": 9},
        timeout=120,
    ).json()

    completion = client.completions.create(
        model=model, prompt="Hello there", max_tokens=9, temperature=0
    )

    assert completion.object == "text_completion"
    assert completion.choices[0].text == seed_endpoint["results"][0]["generated_text"]
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", MODELS)
def test_usage_counts_match_the_tokenizer(
    client: openai.OpenAI, engine_store: Path, model: str
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(engine_store / model)
    prompts = ["One prompt", "And a second, longer prompt than that"]

    completion = client.completions.create(model=model, prompt=prompts, max_tokens=5, n=2, seed=3)

    assert completion.usage is not None
    expected_prompt = sum(len(tokenizer(p)["input_ids"]) for p in prompts)  # once per prompt
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.usage.completion_tokens == 4 * 5
    assert completion.usage.total_tokens == expected_prompt + 20
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]


def test_n_choices_with_a_seed_reproduce_and_differ(client: openai.OpenAI) -> None:
    def ask(seed: int) -> list[str]:
        completion = client.completions.create(
            model="gpt2-test", prompt="Once", max_tokens=8, n=3, seed=seed, temperature=1.0
        )
        return [c.text for c in completion.choices]

    first, again, other = ask(11), ask(11), ask(12)

    assert first == again
    assert first != other
    assert len(set(first)) == 3  # each choice draws on its own


def test_stop_strings_end_the_text(client: openai.OpenAI) -> None:
    free = client.completions.create(
        model="gpt2-test", prompt="The weather", max_tokens=16, temperature=0
    ).choices[0]
    stop = free.text[4:7]

    stopped = client.completions.create(
        model="gpt2-test", prompt="The weather", max_tokens=16, temperature=0, stop=[stop]
    ).choices[0]

    assert free.finish_reason == "length"
    assert (stopped.text, stopped.finish_reason) == (free.text[: free.text.index(stop)], "stop")


@pytest.mark.parametrize("model", MODELS)
def test_perplexity_from_echo_logprobs_is_the_models_own_loss(
    client: openai.OpenAI, engine_store: Path, model: str
) -> None:
    text = "The quick brown fox jumps over the lazy dog, and the farmer watches from the porch."
    scored = client.completions.create(
        model=model, prompt=text, max_tokens=0, echo=True, logprobs=2, temperature=0
    ).choices[0]

    tokenizer = AutoTokenizer.from_pretrained(engine_store / model)
    hf = AutoModelForCausalLM.from_pretrained(engine_store / model, dtype=torch.float32)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = float(hf(ids, labels=ids).loss)
    assert scored.logprobs is not None
    logprobs = scored.logprobs.token_logprobs
    assert scored.text == text
    assert logprobs is not None and logprobs[0] is None  # nothing comes before the first token
    assert len(logprobs) == ids.shape[1]
    assert "".join(scored.logprobs.tokens or []) == text
    assert scored.logprobs.top_logprobs is not None
    for token, top in zip(
        scored.logprobs.tokens[1:], scored.logprobs.top_logprobs[1:], strict=True
    ):
        # The 2 best, and the token itself where it is not one of them (as OpenAI gives it).
        assert top is not None and token in top and len(top) in (2, 3)
        if len(top) == 3:  # then the token is no likelier than the 2 best
            assert top[token] <= min(v for t, v in top.items() if t != token)
    mean = sum(v for v in logprobs[1:] if v is not None) / (len(logprobs) - 1)
    assert math.exp(-mean) == pytest.approx(math.exp(loss), rel=1e-4)
    # Live check: another text's perplexity is not the same number.
    other = client.completions.create(
        model=model,
        prompt="Colourless green ideas sleep furiously.",
        max_tokens=0,
        echo=True,
        logprobs=0,
    ).choices[0]
    assert other.logprobs is not None and other.logprobs.token_logprobs is not None
    assert other.logprobs.token_logprobs[1:] != logprobs[1 : len(other.logprobs.token_logprobs)]


def test_streamed_text_joined_is_the_text_not_streamed(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {
        "model": "llama-test",
        "prompt": ["Stream this", "And this"],
        "max_tokens": 12,
        "seed": 5,
        "temperature": 0.9,
    }
    whole = client.completions.create(**request)
    texts = {0: "", 1: ""}
    finishes: dict[int, str | None] = {}
    usage = None
    chunks = 0
    ids = set()
    for chunk in client.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    ):
        chunks += 1
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)

    assert [texts[0], texts[1]] == [c.text for c in whole.choices]
    assert finishes == {0: "length", 1: "length"}
    assert usage == whole.usage
    assert chunks >= 24  # tokens left as they were made, not at the end
    assert len(ids) == 1  # one response: every chunk, the usage chunk too, has its id


def test_a_streams_logprobs_offset_into_its_whole_text(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {
        "model": "gpt2-test",
        "prompt": "Offsets",
        "max_tokens": 10,
        "temperature": 0,
        "logprobs": 1,
    }
    whole = client.completions.create(**request).choices[0].logprobs
    streamed: list[int] = []
    for chunk in client.completions.create(**request, stream=True):
        for choice in chunk.choices:
            streamed += choice.logprobs.text_offset or [] if choice.logprobs else []

    assert whole is not None and whole.text_offset is not None
    assert streamed == whole.text_offset
    assert len(set(streamed)) > 1  # each chunk's own offsets from 0 would not pass


def test_chat_with_a_chat_template(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something."},
    ]
    whole = client.chat.completions.create(
        model="llama-chat-test", messages=messages, max_tokens=10, temperature=0
    )
    streamed = ""
    for chunk in client.chat.completions.create(
        model="llama-chat-test", messages=messages, max_tokens=10, temperature=0, stream=True
    ):
        streamed += "".join(c.delta.content or "" for c in chunk.choices)
    logged = client.chat.completions.create(
        model="llama-chat-test",
        messages=messages,
        max_completion_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        n=2,
    )

    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == streamed
    assert whole.usage is not None and whole.usage.completion_tokens == 10
    assert len(logged.choices) == 2
    content = logged.choices[0].logprobs and logged.choices[0].logprobs.content
    assert content and len(content) == 4
    assert all(len(t.top_logprobs) == 3 for t in content)
    assert all(t.logprob <= 0 for t in content)


def test_chat_stream_deltas_carry_only_what_they_hold(url: str) -> None:
    body = {
        "model": "llama-chat-test",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3,
        "stream": True,
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]

    assert lines[-1] == "[DONE]"
    assert deltas[0] == {"role": "assistant", "content": ""}  # OpenAI opens with the role
    assert all(set(delta) == {"content"} for delta in deltas[1:-1])
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_developer_message_is_a_system_message(client: openai.OpenAI) -> None:
    def answer(role: str) -> Any:
        messages: Any = [
            {"role": role, "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
        ]
        return client.chat.completions.create(
            model="llama-chat-test", messages=messages, max_tokens=8, temperature=0
        )

    developer, system, user = answer("developer"), answer("system"), answer("user")

    assert developer.choices[0].message.content == system.choices[0].message.content
    assert developer.usage == system.usage
    assert user.choices[0].message.content != system.choices[0].message.content  # can fail


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_refuses_zero_new_tokens_naming_the_field_given(
    client: openai.OpenAI, field: str
) -> None:
    request: Any = {
        "model": "llama-chat-test",
        "messages": [{"role": "user", "content": "Hi"}],
        field: 0,
    }
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**request)

    body: Any = refused.value.body
    assert body["param"] == field and "at least 1" in body["message"]


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        (["Hi", "there", ""], "prompt[2] is empty"),
        ([[1, 2], [3, 10**6]], "prompt[1][1] is token id"),
    ],
)
def test_errors_name_a_prompt_as_the_request_gives_it_whatever_n_is(
    client: openai.OpenAI, prompt: Any, named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="gpt2-test", prompt=prompt, n=2, max_tokens=2)

    body: Any = refused.value.body
    assert body["param"] == "prompt" and body["message"].startswith(named), body


def test_a_prompt_over_the_context_is_context_length_exceeded(
    client: openai.OpenAI, engine_store: Path
) -> None:
    context = json.loads((engine_store / "llama-chat-test" / "config.json").read_text())[
        "max_position_embeddings"
    ]
    long_text = "a " * 200
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model="gpt2-test", prompt=["Hi", long_text], max_tokens=2)
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(
            model="llama-chat-test",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=context,
        )

    for refused, param in ((completion, "prompt"), (chat, "messages")):
        body: Any = refused.value.body
        assert (body["code"], body["param"]) == ("context_length_exceeded", param), body
    assert "prompt[1] is" in completion.value.body["message"]  # type: ignore[index]


def test_chat_without_max_tokens_gets_what_the_context_leaves(
    client: openai.OpenAI, engine_store: Path
) -> None:
    """The server's DEFAULT_MAX_TOKENS (200) is above this model's context: a request that
    asks for no length gets the room left, as on OpenAI's API, rather than an error."""
    context = json.loads((engine_store / "llama-chat-test" / "config.json").read_text())[
        "max_position_embeddings"
    ]
    assert context < 200
    chat = client.chat.completions.create(
        model="llama-chat-test", messages=[{"role": "user", "content": "Tell me a story."}]
    )

    assert chat.usage is not None
    used = chat.usage.prompt_tokens + chat.usage.completion_tokens
    assert used == context or chat.choices[0].finish_reason == "stop", chat.usage
    assert used <= context


NULLS = {"temperature": None, "top_p": None, "n": None, "stream": None, "presence_penalty": None}


def test_a_parameter_sent_as_null_takes_its_default(client: openai.OpenAI) -> None:
    """OpenAI's API reads null as the default: clients that write every parameter send it."""
    nulls: Any = {**NULLS, "max_tokens": None, "echo": None, "frequency_penalty": None}
    given = client.completions.create(model="gpt2-test", prompt="Hi", seed=5, extra_body=nulls)
    left_out = client.completions.create(model="gpt2-test", prompt="Hi", seed=5)
    messages: Any = [{"role": "user", "content": "Hi"}]
    chat_nulls: Any = {**NULLS, "logprobs": None, "response_format": {"type": "text"}}
    chat = client.chat.completions.create(
        model="llama-chat-test", messages=messages, max_tokens=6, seed=5, extra_body=chat_nulls
    )
    chat_left_out = client.chat.completions.create(
        model="llama-chat-test", messages=messages, max_tokens=6, seed=5
    )
    with pytest.raises(openai.BadRequestError) as structured:
        client.chat.completions.create(
            model="llama-chat-test", messages=messages, response_format={"type": "json_object"}
        )

    assert given.usage is not None and given.usage.completion_tokens > 0
    assert given.choices[0].text == left_out.choices[0].text  # sampled (temperature 1), seeded
    assert given.usage == left_out.usage
    assert chat.choices[0].message.content == chat_left_out.choices[0].message.content
    assert structured.value.body["param"] == "response_format"  # type: ignore[index]


def test_a_page_break_is_text_a_prompt_may_hold(client: openai.OpenAI) -> None:
    pages = client.completions.create(
        model="gpt2-test", prompt="Page one.\fPage two.\vEnd.", max_tokens=2, echo=True
    )

    assert pages.choices[0].text.startswith("Page one.\fPage two.\vEnd.")
    with pytest.raises(openai.BadRequestError, match="U\\+0000"):
        client.completions.create(model="gpt2-test", prompt="Nul\x00here", max_tokens=2)


def test_a_model_without_a_chat_template_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(
            model="gpt2-test", messages=[{"role": "user", "content": "Hi"}]
        )


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 9}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"logprobs": 9}, "logprobs"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
        # Values of the wrong JSON type are refused, not converted, as OpenAI's API does.
        ({"max_tokens": "5"}, "max_tokens"),
        ({"temperature": "0"}, "temperature"),
        ({"seed": True}, "seed"),
        ({"extra_body": {"echo": "true"}}, "echo"),
    ],
)
def test_bad_parameters_are_bad_requests_naming_the_parameter(
    client: openai.OpenAI, changes: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="gpt2-test", prompt="Hi", **changes)

    assert refused.value.status_code == 400
    body: Any = refused.value.body
    assert param in (body.get("param") or "") or param in body["message"]


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="Hi")

    assert missing.value.code == "model_not_found"


def test_the_async_client_streams_chat(url: str) -> None:
    async def chat() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        request: Any = {
            "model": "llama-chat-test",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 6,
            "temperature": 0,
        }
        whole = await client.chat.completions.create(**request)
        pieces = [
            c.choices[0].delta.content or ""
            async for c in await client.chat.completions.create(**request, stream=True)
            if c.choices
        ]
        await client.close()
        return whole.choices[0].message.content or "", "".join(pieces)

    whole, streamed = asyncio.run(chat())

    assert whole and whole == streamed


@pytest.mark.slow
def test_a_full_queue_is_a_rate_limit_error(engine_store: Path) -> None:
    with serve(engine_store, MAX_BATCH_SIZE="1", MAX_QUEUED_REQUESTS="1") as base:

        async def crowd() -> list[Any]:
            client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
            calls = [
                client.completions.create(model="gpt2-test", prompt=f"Ask {i}", max_tokens=60)
                for i in range(8)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            await client.close()
            return results

        results = asyncio.run(crowd())

    refused = [r for r in results if isinstance(r, Exception)]
    assert refused and all(isinstance(r, openai.RateLimitError) for r in refused)
    assert any(not isinstance(r, Exception) for r in results)


@pytest.mark.slow
def test_api_keys_guard_every_route_but_health(engine_store: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated monthly\nkey-from-file\n")
    with serve(engine_store, API_KEYS="key-one, key-two", API_KEYS_FILE=str(key_file)) as base:
        health = httpx.get(f"{base}/health", timeout=30)
        seed = httpx.post(
            f"{base}/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["x"]}, timeout=60
        )
        docs = httpx.get(f"{base}/docs", timeout=30)

        def models(key: str) -> Any:
            return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0).models.list()

        with pytest.raises(openai.AuthenticationError):
            models("wrong-key")
        listed = [models(key) for key in ("key-one", "key-two", "key-from-file")]
        allowed_seed = httpx.post(
            f"{base}/gpt2_model",
            json={"model_name": "gpt2-test", "prompts": ["x"], "max_tokens": 2},
            headers={"Authorization": "Bearer key-two"},
            timeout=60,
        )

    assert health.status_code == 200
    assert seed.status_code == 401 and seed.json()["error"]["type"] == "invalid_api_key"
    assert seed.headers["www-authenticate"] == "Bearer"
    assert docs.status_code == 401
    assert all(page.data for page in listed)
    assert allowed_seed.status_code == 200


@pytest.mark.slow
def test_a_client_leaving_a_stream_frees_its_rows(url: str) -> None:
    def slow_engine() -> dict[str, Any]:
        engines: dict[str, dict[str, Any]] = httpx.get(f"{url}/health", timeout=30).json()[
            "engines"
        ]
        return engines.get("gpt2-slow:pt", {"running_sequences": 0, "steps": 0})

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    client.completions.create(model="gpt2-slow", prompt="warm", max_tokens=1)
    steps_before = slow_engine()["steps"]
    stream = client.completions.create(
        model="gpt2-slow", prompt="A long story:", max_tokens=1000, stream=True
    )
    first = next(iter(stream))
    stream.close()  # the client hangs up after its first chunk
    while (engine := slow_engine())["running_sequences"]:
        time.sleep(0.05)

    assert first.choices[0].text is not None
    assert engine["steps"] - steps_before < 1000  # it left long before its 1,000th token


def test_logprobs_zero_still_gives_each_tokens_own_logprob(client: openai.OpenAI) -> None:
    choice = client.completions.create(
        model="gpt2-test", prompt="Hello", max_tokens=4, temperature=0, logprobs=0
    ).choices[0]

    assert choice.logprobs is not None and choice.logprobs.token_logprobs is not None
    assert len(choice.logprobs.token_logprobs) == 4
    assert all(v is not None and v <= 0 for v in choice.logprobs.token_logprobs)


@pytest.mark.parametrize("model", ["gpt2-test", "llama-test"])
def test_prompts_of_token_ids_are_the_texts_they_encode(
    client: openai.OpenAI, engine_store: Path, model: str
) -> None:
    texts = ["The quick brown fox jumps", "Once upon a time"]
    tokenizer = AutoTokenizer.from_pretrained(engine_store / model)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    asked: dict[str, Any] = {
        "model": model,
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": 1,
        "echo": True,
    }

    from_text = client.completions.create(prompt=texts, **asked)
    from_ids = client.completions.create(prompt=ids, **asked)
    one = client.completions.create(prompt=ids[1], **asked)  # a list of ids: one prompt

    # OpenAI's forms: the same rows, the same tokens and log-probabilities, the ids' own text.
    assert [c.text for c in from_ids.choices] == [c.text for c in from_text.choices]
    for by_ids, by_text in zip(from_ids.choices, from_text.choices, strict=True):
        assert by_ids.logprobs is not None and by_text.logprobs is not None
        assert by_ids.logprobs.tokens == by_text.logprobs.tokens
        assert by_ids.logprobs.token_logprobs == by_text.logprobs.token_logprobs
    assert one.choices[0].text == from_text.choices[1].text
    assert from_ids.usage is not None and from_text.usage is not None
    assert from_ids.usage.prompt_tokens == from_text.usage.prompt_tokens == sum(map(len, ids))
    # Live check: other ids give other text.
    other = client.completions.create(prompt=[ids[0][:-1]], **asked)
    assert other.choices[0].text != from_ids.choices[0].text


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ([50_000_000], "prompt[0][0] is token id 50000000"),
        ([[5, 7], [3, -1]], "prompt[1][1] is token id -1"),
        ([], "at least one prompt"),
        ([[]], "prompt[0] is an empty list"),
        ([[[1, 2]]], "prompt"),  # nested too deep
        ([1, "a"], "prompt"),  # strings and ids mixed
        ([True, 2], "prompt"),  # booleans are not ids
    ],
)
def test_bad_token_id_prompts_are_bad_requests(
    client: openai.OpenAI, prompt: Any, named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="gpt2-test", prompt=prompt, max_tokens=2)

    assert refused.value.status_code == 400
    body: Any = refused.value.body
    assert named in body["message"] or named == body.get("param")
    # The service stays healthy: a good request right after is answered.
    assert client.completions.create(model="gpt2-test", prompt=[5, 7], max_tokens=2).choices


def test_token_id_prompts_obey_the_same_limits(engine_store: Path) -> None:
    with serve(engine_store, MAX_PROMPT_CHARS="8", MAX_PROMPTS="2") as base:
        limited = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        too_long: list[Any] = list(range(1, 10))
        too_many: list[Any] = [[1], [2], [3]]
        for refused_prompt in (too_long, too_many):
            with pytest.raises(openai.BadRequestError):
                limited.completions.create(model="gpt2-test", prompt=refused_prompt, max_tokens=2)
        fits = limited.completions.create(model="gpt2-test", prompt=list(range(1, 9)), max_tokens=2)
    assert fits.choices  # live check: at the limit it is answered
