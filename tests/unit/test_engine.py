"""The step engine with a tiny real model: admission, budgets, finishing, cancellation,
deadlines, stop strings and seeds, each checked against the same request run alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_checks import PROMPTS, RecordingRunner, job, join_mid_decode
from textgen.backends.step_backend import StepBackend
from textgen.backends.torch_backend import load_backend
from textgen.backends.torch_runner import TorchRunner
from textgen.engine import EngineLimits, SamplingParams, SequenceOutput
from textgen.engine.step_engine import StepEngine
from textgen.errors import InvalidRequest, Overloaded
from textgen.settings import Settings


@pytest.fixture(scope="module")
def backend(store_dir: Path) -> StepBackend:
    return load_backend(store_dir / "gpt2-test", Settings(model_store=str(store_dir)))


def engine_for(
    backend: StepBackend, eos_ids: frozenset[int] | None = None, **limits: Any
) -> tuple[StepEngine, RecordingRunner]:
    inner = backend.engine._runner  # the same model, under an engine of the test's own
    assert isinstance(inner, TorchRunner)
    runner = RecordingRunner(TorchRunner(inner._decoder, inner._pad_id))
    engine = StepEngine(
        "test",
        runner,
        backend.engine._tokenizer,
        backend.engine._eos_ids if eos_ids is None else eos_ids,
        EngineLimits(**limits),
        "test",
    )
    return engine, runner


@pytest.fixture
def engine(backend: StepBackend) -> Iterator[tuple[StepEngine, RecordingRunner]]:
    made = engine_for(backend)
    yield made
    made[0].close(timeout=30)


def run_alone(
    backend: StepBackend, prompt: str, max_tokens: int, **sampling: Any
) -> SequenceOutput:
    engine, _ = engine_for(backend)
    try:
        return engine.submit(job(backend, [prompt], max_tokens, **sampling)).result(60)[0]
    finally:
        engine.close(30)


def test_rows_of_concurrent_requests_decode_together_and_match_alone(
    backend: StepBackend, engine: tuple[StepEngine, RecordingRunner]
) -> None:
    steps, runner = engine
    runner.gate.clear()  # hold the first step so that every request is queued before it
    handles = [steps.submit(job(backend, [p], 4 + 3 * i)) for i, p in enumerate(PROMPTS)]
    runner.gate.set()
    outputs = [h.result(60)[0] for h in handles]

    alone = [run_alone(backend, p, 4 + 3 * i) for i, p in enumerate(PROMPTS)]
    assert [o.token_ids for o in outputs] == [a.token_ids for a in alone]
    assert [len(o.token_ids) for o in outputs] == [4, 7, 10]
    assert max(runner.batch_sizes) == 3  # they really shared steps
    assert runner.batch_sizes[-1] == 1  # and left one by one as they finished


def test_ignore_eos_generates_past_the_end_token(backend: StepBackend) -> None:
    alone = run_alone(backend, PROMPTS[0], 6)
    end = alone.token_ids[2]
    assert end not in alone.token_ids[:2], "pick a prompt whose third token is new"
    steps, _ = engine_for(backend, eos_ids=frozenset({end}))
    try:
        stopped = steps.submit(job(backend, [PROMPTS[0]], 6)).result(60)[0]
        kept = steps.submit(job(backend, [PROMPTS[0]], 6, ignore_eos=True)).result(60)[0]
    finally:
        steps.close(30)

    assert (stopped.token_ids, stopped.finish_reason) == (alone.token_ids[:2], "stop")
    assert (kept.token_ids, kept.finish_reason) == (alone.token_ids, "length")


def test_no_more_rows_than_the_batch_size_run_at_once(backend: StepBackend) -> None:
    steps, runner = engine_for(backend, max_batch_size=2)
    try:
        handles = [steps.submit(job(backend, [p], 6)) for p in PROMPTS * 2]
        outputs = [h.result(60)[0] for h in handles]
    finally:
        steps.close(30)

    assert all(len(o.token_ids) == 6 for o in outputs)
    assert max(runner.batch_sizes) == 2


def test_the_kv_budget_limits_rows_and_refuses_what_never_fits(backend: StepBackend) -> None:
    one = job(backend, [PROMPTS[0]], 6)
    steps, runner = engine_for(backend, kv_token_budget=one.width)  # room for one row
    try:
        handles = [steps.submit(job(backend, [PROMPTS[0]], 6)) for _ in range(3)]
        assert all(len(h.result(60)[0].token_ids) == 6 for h in handles)
        with pytest.raises(InvalidRequest, match="KV cache"):
            steps.submit(job(backend, [PROMPTS[0], PROMPTS[0]], 6))
    finally:
        steps.close(30)

    assert max(runner.batch_sizes) == 1


def test_a_full_queue_is_refused_with_a_retry_hint(backend: StepBackend) -> None:
    steps, runner = engine_for(backend, max_batch_size=1, max_queued_requests=1)
    runner.gate.clear()
    try:
        running = steps.submit(job(backend, ["first"], 4))
        while steps.stats().running_sequences == 0:  # the first leaves the queue for the batch
            time.sleep(0.01)
        queued = steps.submit(job(backend, ["second"], 4))
        with pytest.raises(Overloaded) as refused:
            steps.submit(job(backend, ["third"], 4))
        runner.gate.set()
        assert running.result(60) and queued.result(60)
    finally:
        runner.gate.set()
        steps.close(30)

    assert refused.value.details["retry_after"] >= 1


def test_interactive_requests_start_before_background_ones_queued_earlier(
    backend: StepBackend,
) -> None:
    """A batch file's lines (background jobs) wait behind interactive requests, and a full
    background queue refuses only background jobs."""
    steps, runner = engine_for(backend, max_batch_size=1, max_queued_requests=1)
    runner.gate.clear()
    try:
        running = steps.submit(job(backend, ["first"], 4))
        while steps.stats().running_sequences == 0:
            time.sleep(0.01)
        background = job(backend, ["a batch line"], 4)
        background.background = True
        steps.submit(background)
        with pytest.raises(Overloaded):
            late = job(backend, ["another batch line"], 4)
            late.background = True
            steps.submit(late)
        interactive = steps.submit(job(backend, ["a user"], 4))  # the background queue is full
        runner.gate.set()
        assert running.result(60) and interactive.result(60) and background.handle.result(60)
    finally:
        runner.gate.set()
        steps.close(30)

    assert interactive.started_at is not None and background.handle.started_at is not None
    assert interactive.started_at < background.handle.started_at


def test_a_cancelled_request_leaves_the_batch_and_its_mate_goes_on(
    backend: StepBackend, engine: tuple[StepEngine, RecordingRunner]
) -> None:
    steps, runner = engine
    runner.gate.clear()
    doomed = steps.submit(job(backend, [PROMPTS[1]], 40))
    mate = steps.submit(job(backend, [PROMPTS[2]], 12))
    doomed.cancel()
    runner.gate.set()

    assert doomed.result(60)[0].finish_reason == "cancelled"
    assert mate.result(60)[0].token_ids == run_alone(backend, PROMPTS[2], 12).token_ids
    assert len(runner.batch_sizes) < 40  # the cancelled row did not run to its end


def test_a_past_deadline_ends_one_request_not_its_batch_mate(
    backend: StepBackend, engine: tuple[StepEngine, RecordingRunner]
) -> None:
    steps, _ = engine
    late = job(backend, [PROMPTS[0]], 30, deadline=time.monotonic() - 1)
    on_time = job(backend, [PROMPTS[1]], 30)
    late_handle, on_time_handle = steps.submit(late), steps.submit(on_time)

    (late_output,) = late_handle.result(60)
    (on_time_output,) = on_time_handle.result(60)
    assert (late_output.finish_reason, len(late_output.token_ids)) == ("time_limit", 1)
    assert (on_time_output.finish_reason, len(on_time_output.token_ids)) == ("length", 30)


def test_a_stop_string_cuts_the_text_before_it(backend: StepBackend) -> None:
    free = run_alone(backend, PROMPTS[1], 16)
    stop = free.text[5:8]  # a piece of what greedy decoding writes anyway
    stopped = run_alone(backend, PROMPTS[1], 16, stop=(stop,))

    assert free.finish_reason == "length"  # live check: without the stop string it runs on
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stop not in stopped.text


def test_a_seed_gives_the_same_text_whatever_runs_beside_it(
    backend: StepBackend, engine: tuple[StepEngine, RecordingRunner]
) -> None:
    sampling = {"temperature": 1.0, "top_p": 0.95, "seed": 1234}
    alone = run_alone(backend, PROMPTS[0], 12, **sampling)
    steps, _ = engine
    crowd = [steps.submit(job(backend, [p], 12, temperature=1.5, seed=7)) for p in PROMPTS]
    beside = steps.submit(job(backend, [PROMPTS[0]], 12, **sampling))
    other_seed = run_alone(backend, PROMPTS[0], 12, **{**sampling, "seed": 99})

    assert beside.result(60)[0].token_ids == alone.token_ids
    assert all(h.result(60) for h in crowd)
    assert other_seed.token_ids != alone.token_ids  # live check: the seed matters
    greedy = run_alone(backend, PROMPTS[0], 12)
    assert greedy.token_ids != alone.token_ids  # and sampling really sampled


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("repetition_penalty", 0.0),
        ("seed", -(2**63) - 1),
        ("seed", 2**63),
        ("stop", ("",)),
        ("stop", ("a", "b", "c", "d", "e")),
    ],
)
def test_sampling_values_out_of_range_name_their_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SamplingParams(**{field: value}).validate()

    assert refused.value.details["field"] == field


class ShiftedJoinRunner(TorchRunner):
    """A broken runner for the live check: a row joining running rows decodes one position off."""

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> Any:
        joining = bool(self._lengths)
        logits = super().add_rows(prompts, width, all_logits)
        if joining:
            for row in range(len(self._lengths) - len(prompts), len(self._lengths)):
                self._lengths[row] += 1
        return logits


@pytest.mark.parametrize("model", ["gpt2-test", "llama-test"])
def test_requests_joining_a_running_batch_get_the_tokens_they_get_alone(
    model: str, store_dir: Path
) -> None:
    family_backend = load_backend(store_dir / model, Settings(model_store=str(store_dir)))
    alone = [
        run_alone(family_backend, p, n)
        for p, n in [(PROMPTS[1], 24), (PROMPTS[0], 10), (PROMPTS[2], 16)]
    ]

    inner = family_backend.engine._runner
    assert isinstance(inner, TorchRunner)
    joined = join_mid_decode(family_backend, TorchRunner(inner._decoder, inner._pad_id))
    broken = join_mid_decode(family_backend, ShiftedJoinRunner(inner._decoder, inner._pad_id))

    assert joined == [a.token_ids for a in alone]
    # Live check: with the joining rows' positions off by one, their tokens change.
    assert broken[0] == joined[0]
    assert broken[1:] != joined[1:]


def test_the_python_api_streams_tokens_as_they_come(settings: Settings) -> None:
    import asyncio

    from textgen.families import Family
    from textgen.service import GenerationRequest, GenerationService
    from textgen.store import open_store

    service = GenerationService(settings, open_store(settings.model_store, settings))
    request = GenerationRequest("gpt2-test", PROMPTS[:2], Family.GPT2, max_tokens=10, stream=True)

    async def consume() -> tuple[list[Any], list[SequenceOutput]]:
        generation = service.submit(request)
        events = [event async for event in generation.events()]
        return events, await generation.outputs()

    events, outputs = asyncio.run(consume())
    service.close(10)

    for output in outputs:
        mine = [e for e in events if e.index == output.index]
        assert "".join(e.text for e in mine) == output.text
        assert [t for e in mine for t in e.token_ids] == output.token_ids
        assert len(mine) == 10  # one event per token, as it was generated
        assert mine[-1].finish_reason == "length"
        assert all(e.finish_reason is None for e in mine[:-1])


def test_a_streaming_caller_is_woken_once_a_step_whatever_its_rows(
    backend: StepBackend, engine: tuple[StepEngine, RecordingRunner]
) -> None:
    steps, runner = engine
    streamed = job(backend, PROMPTS, 6)
    streamed.handle.stream_requested = True
    wakes = 0
    plain_wake = streamed.handle.wake

    def counted_wake() -> None:
        nonlocal wakes
        wakes += 1
        plain_wake()

    streamed.handle.wake = counted_wake  # type: ignore[method-assign]
    runner.gate.clear()  # the first step waits: the first tokens must not
    steps.submit(streamed)
    waited = time.monotonic() + 30
    while not wakes and time.monotonic() < waited:
        time.sleep(0.01)
    assert wakes == 1 and not runner.batch_sizes  # woken with the prefill's tokens, before a step
    runner.gate.set()
    outputs = streamed.handle.result(60)
    assert steps.close(30)  # its last cycle's wake done

    assert [len(o.token_ids) for o in outputs] == [6] * len(PROMPTS)
    # The first cycle prefills (the first tokens, woken at once) and steps; then a step a
    # token. A wake per event (a row's token) would be 6 per row.
    assert len(runner.batch_sizes) == 5
    assert wakes == 1 + len(runner.batch_sizes)
