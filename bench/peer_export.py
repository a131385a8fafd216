"""The peer of the CPU benchmark, built: ONNX Runtime int8 with a plain KV-cache graph.

Written plainly here, independent of the product's code path: its own forward pass of GPT-2 and
LLaMA on Hugging Face's weights, traced with past keys and values as inputs and outputs, logits
for the last position only, LLaMA's grouped KV heads not repeated, q/k/v and gate/up fused; then
int8 weights with per-channel scales by ONNX Runtime's `quantize_dynamic` (signed; unsigned with
--unsigned). bench/peer_decode.py runs it. Reproduce with:

    python bench/peer_export.py MODEL_DIR OUT_DIR [--unsigned]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModelForCausalLM


class PeerStep(torch.nn.Module):
    """GPT-2 or LLaMA (default rope), one step over an explicit past; weights as buffers."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        config = hf.config
        self.llama = config.model_type == "llama"
        w = {k: v.detach() for k, v in hf.state_dict().items()}
        if self.llama:
            self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
            self.hidden, self.layers = config.hidden_size, config.num_hidden_layers
            self.eps = config.rms_norm_eps
            self.register_buffer("inv_freq", hf.model.rotary_emb.inv_freq.detach())
            self.register_buffer("embed", w["model.embed_tokens.weight"])
            head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
            self.register_buffer("final_norm", w["model.norm.weight"])
            for i in range(self.layers):
                p = f"model.layers.{i}."
                qkv = torch.cat([w[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
                gate_up = torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
                self._put(i, norm1=w[p + "input_layernorm.weight"], qkv=qkv.t())
                self._put(i, out=w[p + "self_attn.o_proj.weight"].t())
                self._put(i, norm2=w[p + "post_attention_layernorm.weight"], gate_up=gate_up.t())
                self._put(i, down=w[p + "mlp.down_proj.weight"].t())
        else:
            self.heads = self.kv_heads = config.n_head
            self.hidden, self.layers = config.n_embd, config.n_layer
            self.eps = config.layer_norm_epsilon
            self.register_buffer("embed", w["transformer.wte.weight"])
            self.register_buffer("positions", w["transformer.wpe.weight"])
            head = w["transformer.wte.weight"]
            self.register_buffer("final_w", w["transformer.ln_f.weight"])
            self.register_buffer("final_b", w["transformer.ln_f.bias"])
            for i in range(self.layers):
                p = f"transformer.h.{i}."
                self._put(i, norm1_w=w[p + "ln_1.weight"], norm1_b=w[p + "ln_1.bias"])
                self._put(i, qkv=w[p + "attn.c_attn.weight"], qkv_b=w[p + "attn.c_attn.bias"])
                self._put(i, out=w[p + "attn.c_proj.weight"], out_b=w[p + "attn.c_proj.bias"])
                self._put(i, norm2_w=w[p + "ln_2.weight"], norm2_b=w[p + "ln_2.bias"])
                self._put(i, fc=w[p + "mlp.c_fc.weight"], fc_b=w[p + "mlp.c_fc.bias"])
                self._put(i, down=w[p + "mlp.c_proj.weight"], down_b=w[p + "mlp.c_proj.bias"])
        self.head_dim = self.hidden // self.heads
        self.register_buffer("head", head.t().contiguous())

    def _put(self, layer: int, **tensors: torch.Tensor) -> None:
        for name, tensor in tensors.items():
            self.register_buffer(f"{name}_{layer}", tensor.contiguous())

    def _w(self, name: str, layer: int | None = None) -> torch.Tensor:
        tensor: torch.Tensor = getattr(self, name if layer is None else f"{name}_{layer}")
        return tensor

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def _attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        size, length = q.shape[0], q.shape[2]
        group = self.heads // self.kv_heads
        grouped = q.reshape(size, self.kv_heads, group * length, self.head_dim)
        scores = torch.matmul(grouped, k.transpose(2, 3)) / self.head_dim**0.5
        scores = scores.view(size, self.kv_heads, group, length, -1)
        scores = scores.masked_fill(~mask[:, None, None], -1e9)
        weights = torch.softmax(scores, -1).view(size, self.kv_heads, group * length, -1)
        return torch.matmul(weights, v).view(size, self.heads, length, self.head_dim)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        size, length = input_ids.shape
        total = attention_mask.shape[1]
        columns = torch.arange(total)
        new = columns[total - length :]
        causal = (columns[None, :] <= new[:, None])[None]
        mask = (attention_mask.bool()[:, None, :] & causal) | (columns == new[:, None])[None]
        x = self._w("embed")[input_ids]
        if self.llama:
            angles = position_ids[..., None].float() * self._w("inv_freq")
            angles = torch.cat([angles, angles], -1)
            cos, sin = angles.cos()[:, None], angles.sin()[:, None]
        else:
            x = x + self._w("positions")[position_ids]
        presents: list[torch.Tensor] = []
        kv = self.kv_heads * self.head_dim
        for i in range(self.layers):
            if self.llama:
                h = self._rms(x, self._w("norm1", i))
                q, k, v = torch.split(h @ self._w("qkv", i), [self.hidden, kv, kv], -1)
            else:
                h = F.layer_norm(
                    x, (self.hidden,), self._w("norm1_w", i), self._w("norm1_b", i), self.eps
                )
                q, k, v = torch.split(h @ self._w("qkv", i) + self._w("qkv_b", i), self.hidden, -1)
            q = q.view(size, length, self.heads, self.head_dim).transpose(1, 2)
            k = k.view(size, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(size, length, self.kv_heads, self.head_dim).transpose(1, 2)
            if self.llama:
                half = self.head_dim // 2
                q = q * cos + torch.cat([-q[..., half:], q[..., :half]], -1) * sin
                k = k * cos + torch.cat([-k[..., half:], k[..., :half]], -1) * sin
            k = torch.cat([past[2 * i], k], 2)
            v = torch.cat([past[2 * i + 1], v], 2)
            presents += [k, v]
            attended = self._attention(q, k, v, mask).transpose(1, 2).reshape(size, length, -1)
            if self.llama:
                x = x + attended @ self._w("out", i)
                gate, up = (self._rms(x, self._w("norm2", i)) @ self._w("gate_up", i)).chunk(2, -1)
                x = x + (F.silu(gate) * up) @ self._w("down", i)
            else:
                x = x + attended @ self._w("out", i) + self._w("out_b", i)
                h = F.layer_norm(
                    x, (self.hidden,), self._w("norm2_w", i), self._w("norm2_b", i), self.eps
                )
                h = F.gelu(h @ self._w("fc", i) + self._w("fc_b", i), approximate="tanh")
                x = x + h @ self._w("down", i) + self._w("down_b", i)
        last = x[:, -1]
        if self.llama:
            last = self._rms(last, self._w("final_norm"))
        else:
            final = (self._w("final_w"), self._w("final_b"))
            last = F.layer_norm(last, (self.hidden,), *final, self.eps)
        return (last @ self._w("head"), *presents)


def build(model_dir: Path, out_dir: Path, quantize: bool = True, unsigned: bool = False) -> None:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    step = PeerStep(model)
    names = [f"past_{i}_{kind}" for i in range(step.layers) for kind in ("k", "v")]
    axes = {
        "input_ids": {0: "b", 1: "l"},
        "attention_mask": {0: "b", 1: "t"},
        "position_ids": {0: "b", 1: "l"},
        "logits": {0: "b"},
        **{n: {0: "b", 2: "p"} for n in names},
        **{n.replace("past", "present"): {0: "b", 2: "t"} for n in names},
    }
    past = [torch.zeros(1, step.kv_heads, 2, step.head_dim) for _ in names]
    example = (torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 5, dtype=torch.long))
    out_dir.mkdir(parents=True, exist_ok=True)
    traced = out_dir / "float32.onnx"
    with torch.no_grad():
        torch.onnx.export(
            step,
            (*example, torch.arange(2, 5)[None], *past),
            str(traced),
            input_names=["input_ids", "attention_mask", "position_ids", *names],
            output_names=["logits", *(n.replace("past", "present") for n in names)],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    if not quantize:  # float32 kept under the same name: only to check the graph's arithmetic
        traced.replace(out_dir / "int8.onnx")
    else:
        quantize_dynamic(
            traced,
            out_dir / "int8.onnx",
            weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        traced.unlink()
    shape = {"layers": step.layers, "kv_heads": step.kv_heads, "head_dim": step.head_dim}
    (out_dir / "peer.json").write_text(json.dumps(shape))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]), unsigned="--unsigned" in sys.argv[3:])
