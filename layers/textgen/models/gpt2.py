"""GPT-2's forward pass, on the weights of Hugging Face's GPT2LMHeadModel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from textgen.models.activations import activation
from textgen.models.kv_cache import KVCache
from textgen.models.types import AttentionCache, ForwardBatch, select_outputs

# Settings of GPT-2 variants that this forward pass does not implement.
_UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}


@dataclass
class _Block:
    ln_1: tuple[torch.Tensor, torch.Tensor]
    attn_w: torch.Tensor  # [embed, 3 * embed] (Conv1D layout: x @ w)
    attn_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    ln_2: tuple[torch.Tensor, torch.Tensor]
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor


class GPT2Decoder:
    def __init__(self, config: Any, weights: dict[str, torch.Tensor], device: torch.device):
        for name, supported in _UNSUPPORTED.items():
            if getattr(config, name, supported) != supported:
                raise ValueError(f"GPT-2 models with {name}={getattr(config, name)!r}")
        self.vocab_size = int(config.vocab_size)
        self.context_length = int(config.n_positions)
        self.device = device
        self.embed = int(config.n_embd)
        self.heads = int(config.n_head)
        self.kv_heads = self.heads
        self.head_dim = self.embed // self.heads
        self.eps = float(config.layer_norm_epsilon)
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.activation_name = str(config.activation_function)
        self.activation = activation(self.activation_name)
        w = {k: v.to(device) for k, v in weights.items()}
        self.dtype = w["transformer.wte.weight"].dtype
        self.wte = w["transformer.wte.weight"]
        self.wpe = w["transformer.wpe.weight"]
        self.lm_head = w.get("lm_head.weight", self.wte)
        self.ln_f = (w["transformer.ln_f.weight"], w["transformer.ln_f.bias"])
        self.blocks = [self._block(w, f"transformer.h.{i}.") for i in range(config.n_layer)]

    @classmethod
    def from_hf(cls, hf_model: Any, device: torch.device) -> GPT2Decoder:
        return cls(hf_model.config, dict(hf_model.state_dict()), device)

    @classmethod
    def from_checkpoint(
        cls, config: Any, weights: dict[str, torch.Tensor], device: torch.device
    ) -> GPT2Decoder:
        return cls(config, weights, device)

    @staticmethod
    def _block(w: dict[str, torch.Tensor], p: str) -> _Block:
        return _Block(
            ln_1=(w[p + "ln_1.weight"], w[p + "ln_1.bias"]),
            attn_w=w[p + "attn.c_attn.weight"],
            attn_b=w[p + "attn.c_attn.bias"],
            proj_w=w[p + "attn.c_proj.weight"],
            proj_b=w[p + "attn.c_proj.bias"],
            ln_2=(w[p + "ln_2.weight"], w[p + "ln_2.bias"]),
            fc_w=w[p + "mlp.c_fc.weight"],
            fc_b=w[p + "mlp.c_fc.bias"],
            out_w=w[p + "mlp.c_proj.weight"],
            out_b=w[p + "mlp.c_proj.bias"],
        )

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks), self.heads, self.head_dim, self.dtype, self.device)

    def forward(self, batch: ForwardBatch, cache: AttentionCache) -> torch.Tensor:
        x = self.wte[batch.tokens] + self.wpe[batch.positions]
        size, length = batch.tokens.shape
        # Matrix products as matmul + bias (not addmm): exported to ONNX, they are MatMul nodes,
        # which ONNX Runtime's quantizer knows.
        for index, block in enumerate(self.blocks):
            h = F.layer_norm(x, (self.embed,), *block.ln_1, self.eps)
            qkv = h @ block.attn_w + block.attn_b
            q, k, v = qkv.view(size, length, 3, self.heads, self.head_dim).unbind(2)
            attended = cache.attend(index, q, k, v, batch, self.scale)
            x = x + attended @ block.proj_w + block.proj_b
            h = F.layer_norm(x, (self.embed,), *block.ln_2, self.eps)
            h = self.activation(h @ block.fc_w + block.fc_b)
            x = x + h @ block.out_w + block.out_b
        x = select_outputs(x, batch)
        return F.linear(F.layer_norm(x, (self.embed,), *self.ln_f, self.eps), self.lm_head)
