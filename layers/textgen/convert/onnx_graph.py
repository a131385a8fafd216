"""The decoding graph `textgen export-onnx` writes, built node by node from a decoder's weights.

Not traced: written with ONNX Runtime's fused operators, as its own model builder writes them,
so that a decoding step runs 12 to 14 nodes a layer instead of the 77 of the graph this project
traced before (each node costs ONNX Runtime about 2 microseconds, whatever its size):

- GroupQueryAttention does rotary embeddings (LLaMA), appends this step's keys and values to the
  cache and attends, in one node. The cache is one buffer per layer, [rows, kv_heads, columns,
  head_dim], bound as both the past input and the present output: the step writes its keys and
  values in place instead of copying the whole cache into a new present each step. Each row's own
  length (`seqlens_k`) says what it holds: rows are right-padded, positions come from lengths.
- SkipLayerNormalization / SkipSimplifiedLayerNormalization add the residual and normalize in
  one node; FastGelu adds GPT-2's MLP bias and applies its (tanh) GELU in one.

Inputs: input_ids [rows, length]; seqlens_k [rows] int32, each row's length after this call
minus one; total_sequence_length, int32 scalar: the longest row's length after this call;
logit_positions [rows, k]: the tokens whose logits are wanted; GPT-2 only: position_ids [rows,
length]; past_key_i / past_value_i; and embedding [vocab, hidden], the token embedding table: an
input, not a weight: the runner maps it from the export's embedding.npy, whose pages are read as
tokens use them (the int8 export's table is int8, each row times its scale, embedding_scale
[vocab, 1]: a quarter of the bytes to download, store and read). Outputs: logits [rows, k,
vocab] and present_key_i / present_value_i (the same buffers, when bound to them).

A prompt runs alone (new rows, empty cache, one call); a decoding step is one token per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from textgen.convert.onnx_writer import (
    MS_DOMAIN,
    OPSET,
    GraphWriter,
    Int8Weight,
    as_numpy,
    ints,
)
from textgen.errors import UnsupportedModel
from textgen.model_files import ONNX_EMBEDDING_INPUT as EMBEDDING
from textgen.model_files import ONNX_EMBEDDING_SCALE_INPUT as EMBEDDING_SCALE


def build_graph(
    decoder: Any,
    family: str,
    int8: Mapping[str, Int8Weight] | None = None,
    float_channels: Mapping[str, np.ndarray] | None = None,
    int8_table: bool = False,
) -> Any:
    """The ModelProto of one step of `decoder` (a textgen.models decoder): in float32, or with
    the 8-bit weights of `int8` (by weight name: textgen.convert.channel_quantizer's),
    each token's activations on a scale of their own, the input channels of `float_channels`
    (by weight name) in float32, and with `int8_table`, the embedding table in 8 bits per row
    (int8_rows) (the int8 export's graph)."""
    from onnx import TensorProto, helper

    writer = GraphWriter(int8, float_channels)
    layers = len(decoder.blocks)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["rows", "length"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["rows"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("logit_positions", TensorProto.INT64, ["rows", "wanted"]),
    ]
    kv_shape = ["rows", decoder.kv_heads, "columns", decoder.head_dim]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", "wanted", "vocab"])
    ]
    for layer in range(layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(f"past_{kind}_{layer}", TensorProto.FLOAT, kv_shape)
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present_{kind}_{layer}", TensorProto.FLOAT, kv_shape
                )
            )
    if family == "gpt2":
        inputs.append(
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["rows", "length"])
        )
        hidden = _gpt2_layers(writer, decoder, _token_rows(writer, int8_table))
    elif family == "llama":
        hidden = _llama_layers(writer, decoder, _token_rows(writer, int8_table))
    else:
        raise UnsupportedModel(f"no ONNX graph for a {family!r} model: gpt2 or llama only")
    vocab, width = token_embedding(decoder, family).shape
    table = TensorProto.INT8 if int8_table else TensorProto.FLOAT
    inputs.append(helper.make_tensor_value_info(EMBEDDING, table, [vocab, width]))
    if int8_table:
        inputs.append(helper.make_tensor_value_info(EMBEDDING_SCALE, TensorProto.FLOAT, [vocab, 1]))
    # Only the wanted positions reach the output projection (the vocabulary-sized product).
    wanted = writer.one("Unsqueeze", ["logit_positions", writer.weight("minus_one", ints([-1]))])
    selected = writer.one("GatherND", [hidden, wanted], batch_dims=1)
    writer.linear(selected, "lm_head", decoder.lm_head.T, None, output="logits")
    if unused := set(writer.int8) - writer.int8_used:  # names that match no weight: a mistake
        raise ValueError(f"8-bit weights for no product of the graph: {sorted(unused)[:3]}")
    graph = helper.make_graph(
        writer.nodes, "textgen_step", inputs, outputs, initializer=writer.initializers
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="textgen",
    )


def _token_rows(writer: GraphWriter, int8_table: bool) -> str:
    """The input tokens' rows of the embedding table: from an int8 table, 8-bit rows times their
    scales (a row's own, so a token's embedding never depends on the others)."""
    from onnx import TensorProto

    rows = writer.one("Gather", [EMBEDDING, "input_ids"])
    if not int8_table:
        return rows
    scales = writer.one("Gather", [EMBEDDING_SCALE, "input_ids"])
    return writer.one("Mul", [writer.one("Cast", [rows], to=TensorProto.FLOAT), scales])


def _attention(writer: GraphWriter, qkv: str, layer: int, decoder: Any, rotary: Any) -> str:
    """Packed q/k/v in, attention out: the layer's cache is written in place."""
    inputs = [qkv, "", "", f"past_key_{layer}", f"past_value_{layer}"]  # q, k, v packed
    inputs += ["seqlens_k", "total_sequence_length"]
    if rotary is not None:
        inputs += list(rotary)
    out, _, _ = writer.node(
        "GroupQueryAttention",
        inputs,
        outputs=[f"attention_{layer}", f"present_key_{layer}", f"present_value_{layer}"],
        num_heads=decoder.heads,
        kv_num_heads=decoder.kv_heads,
        scale=float(decoder.scale),
        do_rotary=int(rotary is not None),
    )
    return out


def _llama_layers(writer: GraphWriter, decoder: Any, x: str) -> str:
    """LLaMA's layers over `x`, the input tokens' embeddings."""
    if decoder.activation_name != "silu":
        raise UnsupportedModel(
            f"no ONNX graph for LLaMA with activation {decoder.activation_name!r}: silu only"
        )
    if decoder.head_dim % 16:  # GroupQueryAttention's rotary embedding needs it
        raise UnsupportedModel(
            f"no ONNX graph for LLaMA with head size {decoder.head_dim}: a multiple of 16 only"
        )
    rotary = _rotary_tables(writer, decoder)
    eps = float(decoder.eps)
    h = writer.one(
        "SimplifiedLayerNormalization",
        [x, writer.weight("norm_0", decoder.blocks[0].attn_norm)],
        axis=-1,
        epsilon=eps,
    )
    for index, block in enumerate(decoder.blocks):
        p = f"layers.{index}."
        qkv = writer.linear(h, p + "qkv", block.qkv_w.T, block.qkv_b)
        attended = _attention(writer, qkv, index, decoder, rotary)
        out = writer.linear(attended, p + "o", block.o_w.T, block.o_b)
        h, _, _, x = writer.node(
            "SkipSimplifiedLayerNormalization",
            [x, out, writer.weight(p + "mlp_norm", block.mlp_norm)],
            outputs=4,
            epsilon=eps,
        )
        gate_up = writer.linear(h, p + "gate_up", block.gate_up_w.T, block.gate_up_b)
        gate, up = writer.node("Split", [gate_up], outputs=2, axis=-1)
        silu = writer.one("Mul", [gate, writer.one("Sigmoid", [gate])])
        out = writer.linear(writer.one("Mul", [silu, up]), p + "down", block.down_w.T, block.down_b)
        last = index + 1 == len(decoder.blocks)
        norm = decoder.norm if last else decoder.blocks[index + 1].attn_norm
        h, _, _, x = writer.node(
            "SkipSimplifiedLayerNormalization",
            [x, out, writer.weight(f"norm_{index + 1}", norm)],
            outputs=4,
            epsilon=eps,
        )
    return h


def _rotary_tables(writer: GraphWriter, decoder: Any) -> tuple[str, str]:
    """cos and sin of every position, as Hugging Face's rotary module computes them (its
    scaling variants included): [context, head_dim / 2]."""
    positions = torch.arange(decoder.context_length)[None]
    probe = torch.zeros(1, dtype=torch.float32)
    with torch.no_grad():
        cos, sin = decoder.rotary(probe, positions)
    half = decoder.head_dim // 2
    return (
        writer.weight("cos_cache", cos[0, :, :half]),
        writer.weight("sin_cache", sin[0, :, :half]),
    )


# GPT-2's activations as ONNX Runtime's fused bias + GELU: tanh approximation or exact.
_GPT2_ACTIVATIONS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu", "gelu": "BiasGelu"}


def _gpt2_layers(writer: GraphWriter, decoder: Any, tokens: str) -> str:
    """GPT-2's layers over `tokens`, the input tokens' embeddings."""
    activation = _GPT2_ACTIVATIONS.get(decoder.activation_name)
    if activation is None:
        raise UnsupportedModel(
            f"no ONNX graph for GPT-2 with activation {decoder.activation_name!r}: "
            f"{', '.join(_GPT2_ACTIVATIONS)} only"
        )
    positions = writer.one("Gather", [writer.weight("wpe", decoder.wpe), "position_ids"])
    x = writer.one("Add", [tokens, positions])
    eps = float(decoder.eps)
    h = writer.one(
        "LayerNormalization",
        [
            x,
            writer.weight("ln_0.weight", decoder.blocks[0].ln_1[0]),
            writer.weight("ln_0.bias", decoder.blocks[0].ln_1[1]),
        ],
        axis=-1,
        epsilon=eps,
    )
    for index, block in enumerate(decoder.blocks):
        p = f"h.{index}."
        qkv = writer.linear(h, p + "attn", block.attn_w, block.attn_b)
        attended = _attention(writer, qkv, index, decoder, None)
        out = writer.linear(attended, p + "proj", block.proj_w, None)
        h, _, _, x = writer.node(
            "SkipLayerNormalization",
            [
                x,
                out,
                writer.weight(p + "ln_2.weight", block.ln_2[0]),
                writer.weight(p + "ln_2.bias", block.ln_2[1]),
                writer.weight(p + "proj.bias", block.proj_b),
            ],
            outputs=4,
            epsilon=eps,
        )
        up = writer.linear(h, p + "fc", block.fc_w, None)
        activated = writer.one(activation, [up, writer.weight(p + "fc.bias", block.fc_b)])
        out = writer.linear(activated, p + "out", block.out_w, None)
        last = index + 1 == len(decoder.blocks)
        weight, bias = decoder.ln_f if last else decoder.blocks[index + 1].ln_1
        h, _, _, x = writer.node(
            "SkipLayerNormalization",
            [
                x,
                out,
                writer.weight(f"ln_{index + 1}.weight", weight),
                writer.weight(f"ln_{index + 1}.bias", bias),
                writer.weight(p + "out.bias", block.out_b),
            ],
            outputs=4,
            epsilon=eps,
        )
    return h


def token_embedding(decoder: Any, family: str) -> np.ndarray:
    """The table a graph of `decoder` takes as its embedding input, [vocab, hidden] float32."""
    return np.ascontiguousarray(as_numpy(decoder.wte if family == "gpt2" else decoder.embed_tokens))


def int8_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`table` in 8 bits per row, symmetric (as the export's weights per channel): int8 values
    [rows, columns] and float32 scales [rows, 1], each row ~ its values * its scale."""
    largest = np.abs(table).max(axis=1, keepdims=True)
    scales = np.where(largest > 0, largest / 127, 1).astype(np.float32)
    values = np.clip(np.rint(table / scales), -127, 127).astype(np.int8)
    return values, scales


__all__ = ["Int8Weight", "build_graph", "int8_rows", "token_embedding"]
