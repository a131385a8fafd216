"""LLaMA's forward pass, on the weights of Hugging Face's LlamaForCausalLM.

Rotary embeddings are Hugging Face's own module (LlamaRotaryEmbedding), so every rope type it knows
(default, linear, llama3, yarn, ...) means here what it means there. q/k/v and gate/up are fused
into one matrix product each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from textgen.models.activations import activation
from textgen.models.kv_cache import KVCache
from textgen.models.types import AttentionCache, ForwardBatch, select_outputs


@dataclass
class _Block:
    attn_norm: torch.Tensor
    qkv_w: torch.Tensor  # [q_size + 2 * kv_size, hidden]
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor
    o_b: torch.Tensor | None
    mlp_norm: torch.Tensor
    gate_up_w: torch.Tensor  # [2 * intermediate, hidden]
    gate_up_b: torch.Tensor | None
    down_w: torch.Tensor
    down_b: torch.Tensor | None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # As Hugging Face's LlamaRMSNorm: in float32, then back to the input's dtype.
    hidden = x.to(torch.float32)
    hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps)
    return weight * hidden.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class DefaultRotary(torch.nn.Module):
    """Rotary embedding of the default type, computed as Hugging Face's LlamaRotaryEmbedding
    computes it (the same expressions, so the same bits; tests/unit/test_checkpoint.py)."""

    def __init__(self, inv_freq: torch.Tensor):
        super().__init__()
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attention_scaling = 1.0

    @classmethod
    def of(cls, config: Any) -> DefaultRotary | None:
        parameters = getattr(config, "rope_parameters", None)
        if parameters is None:  # written by transformers before 5
            if getattr(config, "rope_scaling", None) is not None:
                return None
            parameters = {"rope_type": "default", "rope_theta": config.rope_theta}
        if set(parameters) != {"rope_type", "rope_theta"} or parameters["rope_type"] != "default":
            return None
        base = float(parameters["rope_theta"])
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)))

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq.to(device=x.device, dtype=torch.float)
        freqs = position_ids[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


class LlamaDecoder:
    def __init__(
        self,
        config: Any,
        weights: dict[str, torch.Tensor],
        rotary: torch.nn.Module,
        device: torch.device,
    ):
        self.vocab_size = int(config.vocab_size)
        self.context_length = int(config.max_position_embeddings)
        self.device = device
        self.hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads or self.heads)
        self.head_dim = int(getattr(config, "head_dim", None) or self.hidden // self.heads)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.intermediate = int(config.intermediate_size)
        self.activation_name = str(config.hidden_act)
        self.activation = activation(self.activation_name)
        self.rotary = rotary.to(device)
        w = {k: v.to(device) for k, v in weights.items()}
        self.dtype = w["model.embed_tokens.weight"].dtype
        self.embed_tokens = w["model.embed_tokens.weight"]
        self.lm_head = w.get("lm_head.weight", self.embed_tokens)
        self.norm = w["model.norm.weight"]
        self.blocks = [
            self._block(w, f"model.layers.{i}.") for i in range(config.num_hidden_layers)
        ]

    @classmethod
    def from_hf(cls, hf_model: Any, device: torch.device) -> LlamaDecoder:
        rotary = hf_model.model.rotary_emb
        return cls(hf_model.config, dict(hf_model.state_dict()), rotary, device)

    @classmethod
    def from_checkpoint(
        cls, config: Any, weights: dict[str, torch.Tensor], device: torch.device
    ) -> LlamaDecoder | None:
        """None where the rotary embedding is not the default one (llama3, yarn, ...): those
        are Hugging Face's module's to compute."""
        rotary = DefaultRotary.of(config)
        return None if rotary is None else cls(config, weights, rotary, device)

    @staticmethod
    def _fused(w: dict[str, torch.Tensor], names: list[str], part: str) -> torch.Tensor | None:
        if names[0] + part not in w:
            return None
        return torch.cat([w[name + part] for name in names])

    def _block(self, w: dict[str, torch.Tensor], p: str) -> _Block:
        qkv = [p + f"self_attn.{n}_proj." for n in ("q", "k", "v")]
        gate_up = [p + "mlp.gate_proj.", p + "mlp.up_proj."]
        qkv_w, gate_up_w = self._fused(w, qkv, "weight"), self._fused(w, gate_up, "weight")
        assert qkv_w is not None and gate_up_w is not None
        return _Block(
            attn_norm=w[p + "input_layernorm.weight"],
            qkv_w=qkv_w,
            qkv_b=self._fused(w, qkv, "bias"),
            o_w=w[p + "self_attn.o_proj.weight"],
            o_b=w.get(p + "self_attn.o_proj.bias"),
            mlp_norm=w[p + "post_attention_layernorm.weight"],
            gate_up_w=gate_up_w,
            gate_up_b=self._fused(w, gate_up, "bias"),
            down_w=w[p + "mlp.down_proj.weight"],
            down_b=w.get(p + "mlp.down_proj.bias"),
        )

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks), self.kv_heads, self.head_dim, self.dtype, self.device)

    def forward(self, batch: ForwardBatch, cache: AttentionCache) -> torch.Tensor:
        x = self.embed_tokens[batch.tokens]
        size, length = batch.tokens.shape
        cos, sin = self.rotary(x, batch.positions)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [batch, length, 1, head_dim]
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for index, block in enumerate(self.blocks):
            h = rms_norm(x, block.attn_norm, self.eps)
            q, k, v = torch.split(
                F.linear(h, block.qkv_w, block.qkv_b), [q_size, kv_size, kv_size], -1
            )
            q = rotate(q.view(size, length, self.heads, self.head_dim), cos, sin)
            k = rotate(k.view(size, length, self.kv_heads, self.head_dim), cos, sin)
            v = v.view(size, length, self.kv_heads, self.head_dim)
            x = x + F.linear(cache.attend(index, q, k, v, batch, self.scale), block.o_w, block.o_b)
            h = rms_norm(x, block.mlp_norm, self.eps)
            gate, up = torch.split(
                F.linear(h, block.gate_up_w, block.gate_up_b), self.intermediate, -1
            )
            x = x + F.linear(self.activation(gate) * up, block.down_w, block.down_b)
        x = select_outputs(x, batch)
        return F.linear(rms_norm(x, self.norm, self.eps), self.lm_head)
