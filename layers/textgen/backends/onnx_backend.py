"""ONNX Runtime backend: the graph `textgen export-onnx` wrote (int8 weights by default), under the
step engine. No torch at serving time: onnxruntime, numpy and the model's tokenizer.

Rows keep their keys and values as the graph carries them, [rows, kv_heads, columns, head_dim]
per layer, every row ending at the same column: a row with a shorter history is padded on the
left and its padding masked. A step's present keys and values are the next step's past, handed
back to ONNX Runtime as they came out (no copy); only rows joining or leaving rearrange them.
Prompts run through the export's prefill graph (float32 beside an int8 model: see
textgen.onnx_export), decoding steps through its model graph; both take the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from textgen.backends.step_backend import StepBackend
from textgen.cpu import available_cpus
from textgen.errors import ModelLoadFailed
from textgen.model_files import (
    ONNX_EXPORT_DIR,
    ONNX_EXPORT_FORMAT,
    ONNX_METADATA_FILE,
    ONNX_MODEL_FILE,
    ONNX_PREFILL_FILE,
)
from textgen.settings import Settings
from textgen.tokenizer import ModelTokenizer


def load_backend(model_dir: Path, settings: Settings) -> StepBackend:
    export = model_dir / ONNX_EXPORT_DIR
    try:
        metadata = json.loads((export / ONNX_METADATA_FILE).read_text(encoding="utf-8"))
        if metadata.get("format") != ONNX_EXPORT_FORMAT:
            raise ValueError(
                f"export format {metadata.get('format')!r}; this service reads {ONNX_EXPORT_FORMAT}"
            )
        prefill_file = metadata.get("prefill_model", ONNX_MODEL_FILE)
        if prefill_file not in (ONNX_MODEL_FILE, ONNX_PREFILL_FILE):
            raise ValueError(f"unexpected prefill graph {prefill_file!r}")
        options = session_options(settings)
        session, prefill = (
            ort.InferenceSession(str(export / name), options, providers=["CPUExecutionProvider"])
            for name in (ONNX_MODEL_FILE, prefill_file)
        )
    except (OSError, ValueError, KeyError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
        raise ModelLoadFailed(
            f"the ONNX export of '{model_dir.name}' cannot be loaded: {exc}; re-create it with "
            "`textgen export-onnx`"
        ) from exc
    tokens = ModelTokenizer(model_dir)
    runner = OnnxRunner(session, metadata, tokens.pad_id, prefill)
    return StepBackend(
        model_dir.name,
        tokens,
        runner,
        int(metadata["context_length"]),
        runner.kv_bytes_per_token,
        settings,
        runtime=f"onnxruntime-{metadata.get('precision', 'float32')}",
    )


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.torch_threads or available_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads wait for work by burning their core: fastest on an idle machine, ruinous
    # when other processes want the cores (the step then waits for a descheduled spinner).
    spin = "1" if settings.onnx_spin_wait else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return options


class OnnxRunner:
    """The step engine's runner over an ONNX Runtime session."""

    def __init__(
        self, session: Any, metadata: dict[str, Any], pad_id: int, prefill: Any = None
    ) -> None:
        self._session = session
        self._prefill = prefill or session
        self._metadata = metadata
        self._layers = int(metadata["layers"])
        self._kv_heads = int(metadata["kv_heads"])
        self._head_dim = int(metadata["head_dim"])
        self._pad_id = pad_id
        self._past_names = [f"past_{k}_{i}" for i in range(self._layers) for k in ("key", "value")]
        self._present_names = [n.replace("past_", "present_") for n in self._past_names]
        self._past: list[Any] = []  # OrtValues [rows, kv_heads, columns, head_dim]
        self._mask = np.zeros((0, 0), dtype=np.int64)  # [rows, columns]: 1 where a token is
        self._lengths = np.zeros(0, dtype=np.int64)  # tokens each row holds
        self._order: list[int] | None = None  # rows moved since the last truncate

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self._layers * self._kv_heads * self._head_dim * 4  # float32 keys and values

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> list[np.ndarray]:
        self._apply_moves()
        size, longest = len(prompts), max(len(p) for p in prompts)
        ids = np.full((size, longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((size, longest), dtype=np.int64)
        positions = np.zeros((size, longest), dtype=np.int64)
        for row, prompt in enumerate(prompts):  # left-padded: every prompt ends at the last column
            ids[row, longest - len(prompt) :] = prompt
            mask[row, longest - len(prompt) :] = 1
            positions[row, longest - len(prompt) :] = np.arange(len(prompt))
        wanted = np.arange(longest) if all_logits else np.array([longest - 1])
        empty = np.zeros((size, self._kv_heads, 0, self._head_dim), dtype=np.float32)
        logits, presents = self._run(
            ids,
            positions,
            mask,
            np.tile(wanted, (size, 1)),
            [empty] * len(self._past_names),
            self._prefill,
        )
        self._join(presents, mask)
        self._lengths = np.concatenate([self._lengths, [len(p) for p in prompts]])
        if all_logits:
            return [logits[row, longest - len(p) :] for row, p in enumerate(prompts)]
        return [logits[row, 0] for row in range(size)]

    def step(self, tokens: list[int]) -> np.ndarray:
        self._apply_moves()
        size = len(tokens)
        mask = np.concatenate([self._mask, np.ones((size, 1), dtype=np.int64)], axis=1)
        logits, presents = self._run(
            np.asarray(tokens, dtype=np.int64)[:, None],
            self._lengths[:, None],
            mask,
            np.zeros((size, 1), dtype=np.int64),
            self._past,
            self._session,
        )
        self._past, self._mask = presents, mask
        self._lengths = self._lengths + 1
        result: np.ndarray = logits[:, 0]
        return result

    def move_row(self, source: int, target: int) -> None:
        # Recorded, and applied to every layer at once when the engine is done rearranging.
        if self._order is None:
            self._order = list(range(len(self._lengths)))
        self._order[target] = self._order[source]

    def truncate(self, rows: int) -> None:
        order = self._order or list(range(len(self._lengths)))
        self._order = None
        if rows == 0:
            self._past, self._mask, self._lengths = [], self._mask[:0, :0], self._lengths[:0]
            return
        keep = np.asarray(order[:rows])
        if len(keep) == len(self._lengths) and (keep == np.arange(rows)).all():
            return
        # Columns no remaining row uses (the history of rows that left) go too.
        start = int(np.argmax(self._mask[keep].any(axis=0)))
        self._mask = np.ascontiguousarray(self._mask[keep, start:])
        self._lengths = self._lengths[keep]
        self._past = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(p.numpy()[keep, :, start:]))
            for p in self._past
        ]

    def _apply_moves(self) -> None:
        if self._order is not None:
            self.truncate(len(self._order))

    def _join(self, presents: list[Any], mask: np.ndarray) -> None:
        """Append new rows after the running ones, padding the shorter history on the left."""
        if not self._past:
            self._past, self._mask = presents, mask
            return
        width = max(self._mask.shape[1], mask.shape[1])

        def padded(array: np.ndarray, axis: int) -> np.ndarray:
            missing = width - array.shape[axis]
            pad = [(0, 0)] * array.ndim
            pad[axis] = (missing, 0)
            return np.pad(array, pad) if missing else array

        self._past = [
            ort.OrtValue.ortvalue_from_numpy(
                np.concatenate([padded(old.numpy(), 2), padded(new.numpy(), 2)])
            )
            for old, new in zip(self._past, presents, strict=True)
        ]
        self._mask = np.concatenate([padded(self._mask, 1), padded(mask, 1)])

    def _run(
        self,
        ids: np.ndarray,
        positions: np.ndarray,
        mask: np.ndarray,
        logit_positions: np.ndarray,
        past: list[Any],
        session: Any,
    ) -> tuple[np.ndarray, list[Any]]:
        binding = session.io_binding()
        for name, array in (
            ("input_ids", ids),
            ("position_ids", np.ascontiguousarray(positions)),
            ("attention_mask", mask),
            ("logit_positions", logit_positions),
        ):
            binding.bind_cpu_input(name, array)
        for name, value in zip(self._past_names, past, strict=True):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in ("logits", *self._present_names):
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        # The logits are copied (small); the presents stay ONNX Runtime's, for the next step.
        return np.array(outputs[0].numpy()), list(outputs[1:])
