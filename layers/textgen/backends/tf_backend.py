"""TensorFlow backend: a SavedModel from `textgen export-tf`, served with tensorflow and tokenizers.

Neither keras-hub nor transformers is imported here. Batches are padded to a few shapes (batch
size and length buckets) so XLA compiles once per bucket, not once per request shape.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from textgen.backends.base import check_prompts_fit, completion_from_ids
from textgen.backends.tf_tokenizers import ExportTokenizer, load_export_tokenizer
from textgen.engine import EngineLimits, Job
from textgen.engine.whole_request import WholeOutput, WholeRequestEngine
from textgen.errors import InvalidRequest, ModelLoadFailed
from textgen.model_files import TF_EXPORT_DIR, TF_METADATA_FILE, TF_SIGNATURE
from textgen.settings import Settings

_INPUTS = {"token_ids": tf.int32, "padding_mask": tf.bool}
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_MIN_LENGTH_BUCKET = 64


def load_backend(model_dir: Path, settings: Settings) -> TensorflowBackend:
    return TensorflowBackend(model_dir.name, load_generator(model_dir, settings), settings)


def load_generator(model_dir: Path, settings: Settings) -> TensorflowTextGenerator:
    export = model_dir / TF_EXPORT_DIR
    try:
        metadata = json.loads((export / TF_METADATA_FILE).read_text())
        saved_model = tf.saved_model.load(str(export))
    except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
        raise ModelLoadFailed(
            f"TensorFlow export of '{model_dir.name}' cannot be loaded: {exc}"
        ) from exc
    tokenizer = load_export_tokenizer(model_dir, settings.allow_pickle_tokenizers)
    generate = _checked_signature(saved_model, model_dir.name)
    generator = TensorflowTextGenerator(generate, tokenizer, metadata, saved_model)
    for batch, length in settings.tf_warmup_shapes:
        generator.warm(batch, length)
    return generator


def _checked_signature(saved_model: Any, name: str) -> Any:
    signature = getattr(saved_model, "signatures", {}).get(TF_SIGNATURE)
    expected = ", ".join(f"{k}: {v.name}[batch, length]" for k, v in _INPUTS.items())
    if signature is None:
        raise ModelLoadFailed(
            f"TensorFlow export of '{name}' has no '{TF_SIGNATURE}' signature; expected inputs "
            f"{expected}. Re-create it with `textgen export-tf`"
        )
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    found = {k: (v.dtype, v.shape.rank) for k, v in inputs.items()}
    if found != {k: (dtype, 2) for k, dtype in _INPUTS.items()} or "token_ids" not in outputs:
        raise ModelLoadFailed(
            f"TensorFlow export of '{name}' has the wrong serving signature: inputs "
            f"{sorted(inputs)}, outputs {sorted(outputs)}; expected inputs {expected} and a "
            "token_ids output. Re-create it with `textgen export-tf`"
        )
    return signature


class TensorflowTextGenerator:
    def __init__(
        self, generate: Any, tokenizer: ExportTokenizer, metadata: dict[str, Any], keep: Any
    ) -> None:
        self._generate = generate
        self._tokenizer = tokenizer
        self._context_length = int(metadata["context_length"])
        self._eos_ids = frozenset(int(i) for i in metadata["eos_token_ids"])
        self._pad_id = min(self._eos_ids) if self._eos_ids else 0
        self._keep = keep  # the loaded SavedModel owns the variables the signature uses
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        return self._context_length

    def generate(
        self, prompts: list[str], max_new_tokens: int, time_budget: float | None = None
    ) -> list[WholeOutput]:
        # The XLA loop runs to the end of its length bucket: a time budget cannot stop it early.
        encoded = self._tokenizer.encode_batch(prompts)
        check_prompts_fit([len(ids) for ids in encoded], max_new_tokens, self._context_length)
        length = self._length_bucket(max(len(ids) for ids in encoded) + max_new_tokens)
        token_ids, mask = self._batch(encoded, length)
        with self._lock:
            output = self._generate(
                token_ids=tf.constant(token_ids), padding_mask=tf.constant(mask)
            )
        rows = output["token_ids"].numpy()
        return [
            completion_from_ids(
                rows[i, len(ids) :].tolist(), max_new_tokens, self._eos_ids, self._tokenizer.decode
            )
            for i, ids in enumerate(encoded)
        ]

    def token_text(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id])

    def warm(self, batch: int, length: int) -> None:
        """Compile one bucket now, so the first request of that shape does not pay for it."""
        token_ids, mask = self._batch([[self._pad_id]] * batch, self._length_bucket(length))
        self._generate(token_ids=tf.constant(token_ids), padding_mask=tf.constant(mask))

    def _batch(self, encoded: list[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
        rows = next((b for b in _BATCH_BUCKETS if b >= len(encoded)), len(encoded))
        token_ids = np.full((rows, length), self._pad_id, dtype=np.int32)
        mask = np.zeros((rows, length), dtype=bool)
        for row, ids in enumerate(encoded + [[self._pad_id]] * (rows - len(encoded))):
            token_ids[row, : len(ids)] = ids  # right padding: KerasHub fills the masked tail
            mask[row, : len(ids)] = True
        return token_ids, mask

    def _length_bucket(self, needed: int) -> int:
        bucket = _MIN_LENGTH_BUCKET
        while bucket < needed:
            bucket *= 2
        return min(bucket, self._context_length)


# Sampling fields the XLA loop cannot honour (it is greedy), with the value that means "off".
_GREEDY_ONLY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}


class TensorflowBackend:
    """A loaded TensorFlow export under an engine of its own: one whole request at a time."""

    def __init__(self, name: str, generator: TensorflowTextGenerator, settings: Settings) -> None:
        self._generator = generator
        self.context_length = generator.context_length
        limits = EngineLimits(
            max_batch_size=settings.max_batch_size,
            max_queued_requests=settings.max_queued_requests,
        )
        self.engine = WholeRequestEngine(name, self._generate, limits, "tensorflow-xla")

    def encode(
        self,
        prompts: list[str],
        max_new_tokens: int,
        special_tokens: bool = True,
        name: str = "prompts",
    ) -> list[list[int]]:
        return [[] for _ in prompts]  # the export's own tokenizer runs with the XLA loop

    def checked_ids(
        self, prompt_ids: list[list[int]], max_new_tokens: int, name: str = "prompts"
    ) -> list[list[int]]:
        raise InvalidRequest("prompts of token ids need framework 'pt'", field="framework")

    def decode(self, token_ids: list[int]) -> str:
        return "".join(self._generator.token_text(token_id) for token_id in token_ids)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        raise InvalidRequest("chat needs framework 'pt'", field="framework")

    def token_bytes(self, token_id: int) -> bytes:
        return self._generator.token_text(token_id).encode()  # never asked: no logprobs here

    def check(self, job: Job) -> None:
        for field, off in _GREEDY_ONLY.items():
            if getattr(job.sampling, field) != off:
                raise InvalidRequest(
                    f"{field} needs framework 'pt': the TensorFlow export generates greedily",
                    field=field,
                )
        if job.sampling.seed is not None:
            raise InvalidRequest("seed needs framework 'pt'", field="seed")
        if job.logprobs is not None or job.prompt_logprobs:
            raise InvalidRequest("logprobs need framework 'pt'", field="logprobs")

    def _generate(
        self, prompts: list[str], max_new_tokens: int, time_budget: float | None
    ) -> list[WholeOutput]:
        return self._generator.generate(prompts, max_new_tokens, time_budget)
