"""`textgen export-onnx`: a model folder's decode step as an ONNX graph, for the fast CPU path.

The graph is the project's own forward pass (textgen.models), traced with its keys and values as
explicit inputs and outputs: `past_key_i`/`past_value_i` [batch, kv_heads, past, head_dim] in,
`present_*` (past plus this step's) out, LLaMA's grouped KV heads kept grouped, q/k/v and
gate/up fused, and logits only at the positions asked for (`logit_positions`): the last one
while decoding, every one when scoring a prompt. Weights are quantized to 8 bits with
per-channel scales by ONNX Runtime's own quantizer, or kept in float32.

An int8 export keeps the float32 graph too, as prefill.onnx, for prompts. ONNX Runtime quantizes
activations per tensor: a prompt's tokens go through a matrix product together, one of them (the
first, which LLaMA-family models turn into an attention sink with huge activations) sets the
scale for all, and SmolLM2's perplexity scored through an int8 prefill rose by 4.9% (3.5% with the
first token run apart), against 1.6% through a float32 one (bench/quantization_choices.py). A
decoding step quantizes one token per row and loses little; prompts, compute-bound anyway, stay
exact.

Each weight channel is quantized symmetrically (zero at 128, the scale set by its largest
magnitude), not over its own min..max: the asymmetric zero point moved SmolLM2's held-out
perplexity by +2.0 to 2.3% of float32's, the symmetric one by +1.6%, at the same speed
(bench/quantization_choices.py).

The 8-bit weights are unsigned (ONNX Runtime's U8U8 kernels), not signed: on x86 CPUs without
VNNI, ONNX Runtime multiplies u8 activations by s8 weights with VPMADDUBSW, whose 16-bit sums
saturate, and SmolLM2's held-out perplexity went from 82 to 14,875 (garbage text). U8U8 is exact
on every CPU; the export cannot know the CPU that will serve it. Serving needs onnxruntime and numpy
(textgen.backends.onnx_backend); torch is needed only here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from textgen.errors import BackendNotInstalled, UnsupportedModel
from textgen.model_files import (
    CONFIG_FILE,
    ONNX_EXPORT_DIR,
    ONNX_EXPORT_FORMAT,
    ONNX_METADATA_FILE,
    ONNX_MODEL_FILE,
    ONNX_PREFILL_FILE,
)
from textgen.models import ForwardBatch, decoder_tensors, load_decoder
from textgen.staging import staged_folder

Precision = Literal["int8", "float32"]
_OPSET = 17
_TWO_GIB = 2**31 - 1


class _ConcatCache:
    """Keys and values as the exported graph carries them: the past, then this step's."""

    def __init__(self, past: list[torch.Tensor]) -> None:
        self.past = past
        self.presents: list[torch.Tensor] = []

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        batch: ForwardBatch,
        scale: float,
    ) -> torch.Tensor:
        size, length, heads, dim = q.shape
        keys = torch.cat([self.past[2 * layer], k.transpose(1, 2)], dim=2)
        values = torch.cat([self.past[2 * layer + 1], v.transpose(1, 2)], dim=2)
        self.presents += [keys, values]
        kv_heads = keys.shape[1]
        group = heads // kv_heads
        # The heads of a group share their keys: fold them into the query length, so the keys
        # are never repeated.
        grouped = q.transpose(1, 2).reshape(size, kv_heads, group * length, dim)
        scores = torch.matmul(grouped, keys.transpose(2, 3)) * scale
        scores = scores.view(size, kv_heads, group, length, -1)
        scores = scores.masked_fill(~batch.mask[:, :, None], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).view(size, kv_heads, group * length, -1)
        out = torch.matmul(weights, values).view(size, heads, length, dim)
        return out.transpose(1, 2).reshape(size, length, heads * dim)


class _StepGraph(torch.nn.Module):
    """What is traced: one step of the decoder over an explicit past."""

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.decoder = decoder
        # The decoder's tensors as buffers: the trace then stores them as initializers (which
        # the quantizer rewrites), not as constants.
        for index, tensor in enumerate(decoder_tensors(decoder)):
            self.register_buffer(f"weight_{index}", tensor)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logit_positions: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        size, length = input_ids.shape
        total = attention_mask.shape[1]
        columns = torch.arange(total, device=input_ids.device)
        new = columns[total - length :]  # this step's tokens are the last `length` columns
        allowed = attention_mask.bool()[:, None, :] & (columns[None, :] <= new[:, None])[None]
        # Each token also sees itself: a padding token then attends to something, and no NaN
        # enters the keys and values that real tokens never look at.
        itself = (columns[None, :] == new[:, None])[None]
        mask = (allowed | itself).unsqueeze(1)
        cache = _ConcatCache(list(past))
        batch = ForwardBatch(input_ids, position_ids, slice(0, size), total, mask, logit_positions)
        logits = self.decoder.forward(batch, cache)
        return (logits, *cache.presents)


def export_onnx(model_dir: Path, precision: Precision = "int8") -> Path:
    """Write MODEL_DIR/onnx/ (graph, tokenizer, metadata) through a staging folder."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model_type") not in ("gpt2", "llama"):
        raise UnsupportedModel(
            f"cannot export a {config.get('model_type')!r} model to ONNX: gpt2 or llama only"
        )
    try:
        import onnx
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise BackendNotInstalled(
            f"`textgen export-onnx` needs onnx and onnxruntime ({exc}); install the 'onnx' "
            "extra: pip install 'serverless-textgen[onnx]'"
        ) from exc
    decoder = load_decoder(model_dir, torch.float32, torch.device("cpu"))
    target = model_dir / ONNX_EXPORT_DIR
    with tempfile.TemporaryDirectory() as scratch, staged_folder(target) as staging:
        traced = Path(scratch) / "float32.onnx"
        _trace(decoder, traced)
        if precision == "int8":
            _save(onnx.load(traced), staging / ONNX_PREFILL_FILE)
            traced = quantize_int8(traced, Path(scratch) / "int8.onnx")
        _save(onnx.load(traced), staging / ONNX_MODEL_FILE)
        for name in ("tokenizer.json",):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        metadata = {
            "format": ONNX_EXPORT_FORMAT,
            "family": config["model_type"],
            "precision": precision,
            "layers": len(decoder.blocks),
            "kv_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim,
            "vocab_size": decoder.vocab_size,
            "context_length": decoder.context_length,
            "prefill_model": ONNX_PREFILL_FILE if precision == "int8" else ONNX_MODEL_FILE,
        }
        (staging / ONNX_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return target


def quantize_int8(
    float32_graph: Path,
    output: Path,
    symmetric: bool = True,
    keep_float32: tuple[str, ...] = (),
) -> Path:
    """The graph's weighted MatMuls in 8 bits, unsigned, per channel (see the module's note);
    the nodes named in keep_float32 stay as they are."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        float32_graph,
        output,
        weight_type=QuantType.QUInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=list(keep_float32),
        extra_options={"WeightSymmetric": symmetric},
    )
    return output


def _save(graph: Any, path: Path) -> None:
    import onnx

    onnx.save_model(
        graph,
        path,
        save_as_external_data=graph.ByteSize() > _TWO_GIB,
        location=f"{path.name}.data",
    )


def _trace(decoder: Any, path: Path) -> None:
    layers, kv_heads, dim = len(decoder.blocks), decoder.kv_heads, decoder.head_dim
    size, length, past_length = 2, 3, 4  # example shapes; every axis below is dynamic
    past = [torch.zeros(size, kv_heads, past_length, dim) for _ in range(2 * layers)]
    example = (
        torch.zeros(size, length, dtype=torch.long),
        torch.arange(past_length, past_length + length).expand(size, length).contiguous(),
        torch.ones(size, past_length + length, dtype=torch.long),
        torch.full((size, 1), length - 1, dtype=torch.long),
        *past,
    )
    past_names = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    present_names = [name.replace("past_", "present_") for name in past_names]
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "length"},
        "position_ids": {0: "batch", 1: "length"},
        "attention_mask": {0: "batch", 1: "total"},
        "logit_positions": {0: "batch", 1: "positions"},
        "logits": {0: "batch", 1: "positions"},
    }
    axes.update({name: {0: "batch", 2: "past"} for name in past_names})
    axes.update({name: {0: "batch", 2: "total"} for name in present_names})
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            _StepGraph(decoder),
            example,
            str(path),
            input_names=[
                "input_ids",
                "position_ids",
                "attention_mask",
                "logit_positions",
                *past_names,
            ],
            output_names=["logits", *present_names],
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )
