"""Prompts as a caller of the seed endpoints writes them for a chat model: the model's own chat
template applied on the caller's side."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer


def chat_prompts(model_dir: Path, questions: list[str]) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        for question in questions
    ]
