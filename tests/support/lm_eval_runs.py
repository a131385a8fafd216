"""Run lm-evaluation-harness on local tasks (tests.support.lm_eval_tasks) and read its scores:
through its Python API in this process, or through its `lm-eval` command as users run it.

Both run with the hub off (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE): the tasks' data and the model
are local folders, so any download would be a fault.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import console_script

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

# (task, metric) -> value, as lm-eval's results table lists them (stderr left out).
Scores = dict[tuple[str, str], float]


def evaluate(
    model: str,
    model_args: Mapping[str, object],
    tasks: list[str],
    include_path: Path,
    *,
    chat: bool = False,
    batch_size: int = 1,
) -> tuple[Scores, dict[str, list[dict[str, Any]]]]:
    """lm_eval.simple_evaluate on `tasks` from `include_path` (only those: the built-in catalogue
    is not indexed), with the chat template applied when `chat`; its scores and its samples."""
    with _offline():
        # Imported here, with the hub off: `datasets` reads its offline switch on import.
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        results = simple_evaluate(
            model=model,
            model_args=dict(model_args),
            tasks=tasks,
            task_manager=TaskManager(include_path=str(include_path), include_defaults=False),
            apply_chat_template=chat,
            batch_size=batch_size,
            device="cpu",
            bootstrap_iters=0,  # no stderr: only the scores are compared
            log_samples=True,
        )
    assert results is not None
    return scores(results), results["samples"]


def evaluate_cli(
    model: str,
    model_args: Mapping[str, object],
    tasks: list[str],
    include_path: Path,
    out: Path,
    *,
    batch_size: int = 1,
) -> Scores:
    """The same through the `lm-eval run` command line, as docs/openai-api.md shows it."""
    command = [
        console_script("lm-eval"),
        "run",
        *("--model", model),
        *("--model_args", ",".join(f"{k}={v}" for k, v in model_args.items())),
        *("--tasks", ",".join(tasks)),
        *("--include_path", str(include_path)),
        *("--batch_size", str(batch_size)),
        *("--output_path", str(out)),
    ]
    done = subprocess.run(
        command, env={**os.environ, **OFFLINE}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stderr[-4000:]}"
    (written,) = out.rglob("results_*.json")
    return scores(json.loads(written.read_text()))


def scores(results: Mapping[str, Any]) -> Scores:
    """Every score of every task in lm-eval's results (keys like "acc,none")."""
    return {
        (task, key.split(",")[0]): float(value)
        for task, metrics in results["results"].items()
        for key, value in metrics.items()
        if "," in key and "_stderr" not in key and isinstance(value, int | float)
    }


def printed(value: float) -> str:
    """A score as lm-eval's results table prints it."""
    return f"{value:.4f}"


# float32 products are blocked by the length of what they multiply: transformers' own logits for
# a text and for the same text less its last token differ by up to 2e-5 nats per token (lm-eval's
# `hf` scores the second, the API the first). A perplexity, exp of a mean over answers of 1 to 3
# tokens, may then move by 5e-5 of itself: at hundreds, in the third decimal.
FLOAT32_REL = 5e-5


def differences(ours: Scores, reference: Scores) -> list[str]:
    """The scores that differ beyond lm-eval's printed precision (half a unit of the fourth
    decimal) and float32's rounding (FLOAT32_REL of the value); none: the two runs agree."""
    assert ours.keys() == reference.keys(), (sorted(ours), sorted(reference))
    return [
        f"{task} {metric}: {printed(ours[task, metric])} against {printed(value)}"
        for (task, metric), value in sorted(reference.items())
        if abs(ours[task, metric] - value) > 5e-5 + FLOAT32_REL * abs(value)
    ]


@contextmanager
def _offline() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in OFFLINE}
    os.environ.update(OFFLINE)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
