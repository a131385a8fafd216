"""lm-evaluation-harness tasks built from the held-out Moby-Dick chapters (no hub): their data as
JSON lines and their YAML, written into one folder for `--include_path`.

One of each request type lm-eval sends: a next-word `loglikelihood`, a 4-way next-word cloze
(`multiple_choice`), `loglikelihood_rolling` perplexity over whole passages, and a chat
`generate_until` with stop sequences. Every item is picked by position, never at random, so the
figures in docs/openai-api.md are the ones a rerun gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from textgen.demo import moby_dick

ITEMS = 20  # per task: enough to tell models apart, few enough to run in seconds on 2 cores
LOGLIKELIHOOD = "mobydick_next_word"
CLOZE = "mobydick_cloze"
ROLLING = "mobydick_rolling"
CHAT = "mobydick_repeat"
SCORED = (LOGLIKELIHOOD, CLOZE, ROLLING)  # the completions API's tasks
STOPS = ["\n", "."]  # the chat task's `until`

_CONTEXT_WORDS = 16  # words before the word to predict (at least)
_ROLLING_WORDS = 64  # a passage's length for perplexity (about 85 tokens)


def write_tasks(folder: Path, download_cache: Path) -> Path:
    """The four tasks' data and YAML in `folder`, which is returned (lm-eval's include path)."""
    passages = _passages(download_cache)
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / ".datasets"
    rows = {
        LOGLIKELIHOOD: [_next_word(p, _CONTEXT_WORDS + 6) for p in passages],
        # Choices of four letters or more: "a" or "the" would fit most contexts as well.
        CLOZE: _cloze([_next_word(p, _CONTEXT_WORDS, shortest=4) for p in passages]),
        ROLLING: [{"text": " ".join(p.split()[:_ROLLING_WORDS])} for p in passages],
        CHAT: [{"sentence": _first_clause(p)} for p in passages],
    }
    for name, items in rows.items():
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
        config = {
            "task": name,
            "dataset_path": "json",
            # datasets' cache beside the data, not in the user's cache folder.
            "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(cache)},
            "test_split": "test",
            **_TASKS[name],
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


_TASKS: dict[str, dict[str, Any]] = {
    LOGLIKELIHOOD: {
        "output_type": "loglikelihood",
        "doc_to_text": "{{context}}",
        "doc_to_target": "{{' ' + word}}",
        "metric_list": [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
    },
    CLOZE: {
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    },
    ROLLING: {
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [
            {"metric": m, "aggregation": a, "higher_is_better": False}
            for m, a in [
                ("word_perplexity", "weighted_perplexity"),
                ("byte_perplexity", "weighted_perplexity"),
                ("bits_per_byte", "bits_per_byte"),
            ]
        ],
    },
    CHAT: {
        "output_type": "generate_until",
        "doc_to_text": "Repeat this line from Moby-Dick word for word:\n\n{{sentence}}",
        "doc_to_target": "{{sentence}}",
        "generation_kwargs": {"until": STOPS, "max_gen_toks": 32, "do_sample": False},
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": True,
            },
            # Corpus chrF moves with any character of any answer: a sharper comparison.
            {"metric": "chrf", "aggregation": "chrf", "higher_is_better": True},
        ],
    },
}


def _passages(download_cache: Path) -> list[str]:
    """The first ITEMS paragraphs of at least _ROLLING_WORDS words, in held-out book order."""
    split = moby_dick.split(download_cache)
    paragraphs = [
        " ".join(paragraph.split())
        for chapter in split.held_out.values()
        for paragraph in chapter.split("\n\n")[1:]  # [0] is the chapter's heading
        if len(paragraph.split()) >= _ROLLING_WORDS
    ]
    return paragraphs[:ITEMS]


def _next_word(passage: str, at: int, shortest: int = 1) -> dict[str, str]:
    """The passage's words before its first plain word (letters only, `shortest` or more) from
    word `at` on, and that word."""
    words = passage.split()
    index = next(
        i for i in range(at, len(words)) if words[i].isalpha() and len(words[i]) >= shortest
    )
    return {"context": " ".join(words[:index]), "word": words[index]}


def _cloze(items: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Each item's word among three others (the next items' words), at position i % 4."""
    out = []
    for i, item in enumerate(items):
        others = [o["word"] for o in items[i + 1 :] + items[:i] if o["word"] != item["word"]]
        choices = list(dict.fromkeys(others))[:3]
        choices.insert(i % 4, item["word"])
        out.append({"context": item["context"], "choices": choices, "answer": i % 4})
    return out


def _first_clause(passage: str) -> str:
    """The passage's opening up to its first comma, semicolon or full stop (which a stop
    sequence would cut) after four words, sixteen words at most."""
    words: list[str] = []
    for word in passage.split():
        words.append(word)
        if (len(words) >= 4 and word[-1] in ",;:.") or len(words) == 16:
            break
    return " ".join(words).rstrip(",;:.")
