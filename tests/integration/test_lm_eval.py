"""EleutherAI's lm-evaluation-harness as a client of the OpenAI-compatible API: its
`local-completions` (token ids and strings) and `local-chat-completions` models against the real
server on loopback, on local tasks from the held-out Moby-Dick chapters, give the scores of its own
`hf` backend on the same model folder.

The reference is `hf` with `softmax_dtype=float64`: the server's log-probabilities are the float64
log-softmax of float32 logits (textgen.engine.sampling); `hf` takes it in float32 by default, a
few 1e-6 nats lower per token, which moves perplexities in the hundreds from the fourth decimal.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from tests.support import lm_eval_runs
from tests.support import lm_eval_tasks as tasks
from tests.support.artifact_cache import artifact_key, cached_artifact
from tests.support.lm_eval_runs import Scores, differences, evaluate, evaluate_cli
from tests.support.servers import free_port, python_module, running_server
from textgen.demo.store import SMOLLM2

pytestmark = pytest.mark.slow

# The fast path (the demo store's int8 export) against float32: within issue 22's +1.5% of float32
# perplexity per token, one-sided, here on short passages (about 90 tokens), whose first tokens
# int8 scores worst (measured: +1.10%; +1.74% before the output projection's outlier channels were
# kept in float32, textgen.convert.calibration). An accuracy may move by a near-tie item or two.
FAST_PERPLEXITY_PER_TOKEN = 1.015
FAST_ACCURACY_ITEMS = 2
ACCURACIES = [(tasks.LOGLIKELIHOOD, "acc"), (tasks.CLOZE, "acc"), (tasks.CLOZE, "acc_norm")]
BATCH = 8  # prompts per completions request, as lm-eval's --batch_size: the engine scores them


def serve(store: Path, **env: str) -> Any:
    port = free_port()
    command = python_module("handlers.cli", "serve", "--port", str(port), "--log-level", "warning")
    return running_server(command, port, {"MODEL_STORE": str(store), **env})


@pytest.fixture(scope="module")
def smollm2(demo_store: Path) -> Path:
    return demo_store / SMOLLM2


@pytest.fixture(scope="module")
def include_path(tmp_path_factory: pytest.TempPathFactory, download_cache: Path) -> Path:
    return tasks.write_tasks(tmp_path_factory.mktemp("lm-eval-tasks"), download_cache)


@pytest.fixture(scope="module")
def exact_url(demo_store: Path) -> Iterator[str]:
    """SmolLM2 on PyTorch in float32: the path whose logits are transformers' own."""
    with serve(demo_store, TORCH_DTYPE="float32", CPU_RUNTIME="torch") as url:
        yield url


@pytest.fixture(scope="module")
def fast_url(demo_store: Path) -> Iterator[str]:
    """The demo store as served by default: SmolLM2 through its int8 ONNX export."""
    with serve(demo_store) as url:
        yield url


def completions(url: str, smollm2: Path, tokenized: bool, model: str = SMOLLM2) -> dict[str, Any]:
    """local-completions' model_args. The tokenizer (the model folder's) gives lm-eval its context
    lengths, and the token ids it sends when `tokenized`."""
    return {
        "model": model,
        "base_url": f"{url}/v1/completions",
        "tokenizer": str(smollm2),
        "tokenizer_backend": "huggingface",
        "tokenized_requests": tokenized,
        "num_concurrent": 2,
        "max_retries": 1,  # a refused request fails the run rather than being retried
    }


def hf(smollm2: Path) -> dict[str, Any]:
    return {"pretrained": str(smollm2), "dtype": "float32", "softmax_dtype": "float64"}


def scored(model_args: dict[str, Any], include_path: Path) -> Scores:
    """The three completions tasks through local-completions."""
    args = (model_args, list(tasks.SCORED), include_path)
    return evaluate("local-completions", *args, batch_size=BATCH)[0]


@pytest.fixture(scope="module")
def hf_scores(smollm2: Path, include_path: Path, demo_store_key: str) -> Scores:
    return hf_reference(smollm2, include_path, demo_store_key, chat=False)[0]


def hf_reference(
    smollm2: Path, include_path: Path, demo_store_key: str, chat: bool
) -> tuple[Scores, list[str]]:
    """lm-eval's `hf` backend on the scored tasks, or on the chat task with the template: its
    scores and its answers. Kept in the test cache under a key of everything it depends on (the
    demo store's key for the model, the tasks' files, lm-eval and the libraries under `hf`)."""
    names = [tasks.CHAT] if chat else list(tasks.SCORED)
    key = artifact_key(
        [Path(tasks.__file__), Path(lm_eval_runs.__file__)],
        packages=["lm_eval", "transformers", "torch", "tokenizers"],
        inputs=[demo_store_key, tasks_digest(include_path), *names, str(chat)],
    )

    def build(folder: Path) -> None:
        found, samples = evaluate("hf", hf(smollm2), names, include_path, chat=chat)
        answers = [s["filtered_resps"][0] for s in samples[tasks.CHAT]] if chat else []
        kept = {"scores": [[*name, value] for name, value in found.items()], "answers": answers}
        (folder / "reference.json").write_text(json.dumps(kept))

    folder = cached_artifact(f"lm-eval-hf-{'chat' if chat else 'scored'}", key, build)
    kept = json.loads((folder / "reference.json").read_text())
    return {(task, metric): value for task, metric, value in kept["scores"]}, kept["answers"]


def tasks_digest(include_path: Path) -> str:
    """The tasks' files as written, less the folder they were written to (the task files name
    their data files by absolute path; lm-eval keeps a datasets cache beside them)."""
    digest = hashlib.sha256()
    for path in sorted([*include_path.glob("*.yaml"), *include_path.glob("*.jsonl")]):
        text = path.read_text(encoding="utf-8").replace(str(include_path), "TASKS")
        digest.update(f"{path.name}\0{text}\0".encode())
    return digest.hexdigest()


def test_token_id_requests_score_as_the_hf_backend(
    exact_url: str, smollm2: Path, include_path: Path, hf_scores: Scores
) -> None:
    served = scored(completions(exact_url, smollm2, tokenized=True), include_path)

    assert differences(served, hf_scores) == []


def test_string_requests_through_the_lm_eval_command_score_as_the_hf_backend(
    exact_url: str, smollm2: Path, include_path: Path, hf_scores: Scores, tmp_path: Path
) -> None:
    args = completions(exact_url, smollm2, tokenized=False)
    served = evaluate_cli(
        "local-completions", args, list(tasks.SCORED), include_path, tmp_path, batch_size=BATCH
    )

    assert differences(served, hf_scores) == []


def test_chat_generations_with_stop_sequences_are_the_hf_backends(
    exact_url: str, smollm2: Path, include_path: Path, demo_store_key: str
) -> None:
    chat = {"model": SMOLLM2, "base_url": f"{exact_url}/v1/chat/completions", "num_concurrent": 4}
    served, served_samples = evaluate(
        "local-chat-completions", {**chat, "max_retries": 1}, [tasks.CHAT], include_path, chat=True
    )
    reference, reference_answers = hf_reference(smollm2, include_path, demo_store_key, chat=True)

    # lm-eval's chat client cuts nothing itself and `hf` cuts at the stop sequences: the same
    # answers mean the server stopped where `hf` did.
    answers = [s["filtered_resps"][0] for s in served_samples[tasks.CHAT]]
    assert answers == reference_answers
    assert not any(stop in answer for answer in answers for stop in tasks.STOPS)
    assert differences(served, reference) == []
    assert served[tasks.CHAT, "exact_match"] >= 0.25  # live: many answers are the line asked for


def test_the_fast_path_is_within_the_cpu_paths_perplexity_bound(
    fast_url: str, smollm2: Path, include_path: Path, hf_scores: Scores
) -> None:
    fast = scored(completions(fast_url, smollm2, tokenized=True), include_path)

    assert fast_path_faults(fast, hf_scores, smollm2, include_path) == []


def test_a_wrong_server_fails_both_comparisons(
    fast_url: str, smollm2: Path, include_path: Path, hf_scores: Scores
) -> None:
    # Another model of the demo store answering for SmolLM2 (sent strings: its vocabulary is not
    # SmolLM2's).
    args = completions(fast_url, smollm2, tokenized=False, model="llama-tiny")
    wrong = scored(args, include_path)

    assert len(differences(wrong, hf_scores)) >= 5
    assert fast_path_faults(wrong, hf_scores, smollm2, include_path) != []


def fast_path_faults(
    ours: Scores, reference: Scores, smollm2: Path, include_path: Path
) -> list[str]:
    faults = [
        f"{task} {metric}: {ours[task, metric]} against {reference[task, metric]}"
        for task, metric in ACCURACIES
        if abs(ours[task, metric] - reference[task, metric]) * tasks.ITEMS > FAST_ACCURACY_ITEMS
    ]
    ratio = perplexity_ratio_per_token(ours, reference, smollm2, include_path)
    if ratio > FAST_PERPLEXITY_PER_TOKEN:
        faults.append(f"rolling perplexity per token {ratio:.4f} x the reference's")
    return faults


def perplexity_ratio_per_token(
    ours: Scores, reference: Scores, smollm2: Path, include_path: Path
) -> float:
    """The rolling task's perplexity per token, ours over the reference's. lm-eval prints it per
    word (exp of the negative log-likelihood over whitespace-separated words); it scored every
    token of every text."""
    lines = (include_path / f"{tasks.ROLLING}.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    words = sum(len(re.split(r"\s+", text)) for text in texts)
    tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
    key = (tasks.ROLLING, "word_perplexity")
    return math.exp(math.log(ours[key] / reference[key]) * words / tokens)
