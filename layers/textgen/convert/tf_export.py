"""`textgen export-tf`: a TensorFlow SavedModel of a Hugging Face-format GPT-2 or LLaMA folder.

KerasHub (Keras 3 on TensorFlow) builds the model from the folder; the SavedModel's serving
signature runs KerasHub's whole greedy generation loop, XLA-compiled, on token ids and a padding
mask. Serving needs only tensorflow and the `tokenizers` library (textgen.backends.tf_backend).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textgen.convert.export_cache import export_key
from textgen.errors import BackendNotInstalled, UnsupportedModel
from textgen.families import Family
from textgen.model_files import (
    CONFIG_FILE,
    TF_EXPORT_DIR,
    TF_METADATA_FILE,
    TF_SIGNATURE,
    TF_TOKENIZER_FILE,
)
from textgen.staging import staged_folder


def convertible_config(config: dict[str, Any]) -> dict[str, Any]:
    """The backbone settings to force, after refusing configs KerasHub's converters get wrong."""
    family = config.get("model_type")
    problems: list[str] = []

    def expect(field: str, allowed: tuple[Any, ...]) -> None:
        if config.get(field) not in allowed:
            problems.append(f"{field}={config.get(field)!r} (supported: {allowed})")

    if family == Family.GPT2:
        # The GPT-2 converter assumes an MLP of 4 x n_embd and GPT-2's fixed layer-norm epsilon.
        expect("n_inner", (None, 4 * int(config.get("n_embd", 0))))
        expect("activation_function", ("gelu_new",))
        expect("layer_norm_epsilon", (1e-5,))
        expect("scale_attn_by_inverse_layer_idx", (None, False))
        expect("reorder_and_upcast_attn", (None, False))
        expect("add_cross_attention", (None, False))
        # KerasHub's GPT-2 always reads its logits off the token embeddings.
        expect("tie_word_embeddings", (None, True))
        overrides: dict[str, Any] = {}
    elif family == Family.LLAMA:
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            problems.append(f"rope type {rope.get('rope_type')!r} (supported: 'default')")
        expect("hidden_act", ("silu",))
        expect("attention_bias", (None, False))
        expect("mlp_bias", (None, False))
        head_dim = config.get("head_dim")
        if head_dim and head_dim * config.get("num_attention_heads", 0) != config.get(
            "hidden_size"
        ):
            problems.append(f"head_dim={head_dim} is not hidden_size / num_attention_heads")
        # The converter ignores these two: pass them to the backbone explicitly.
        overrides = {
            "layer_norm_epsilon": float(config.get("rms_norm_eps", 1e-6)),
            "rope_max_wavelength": float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        }
    else:
        raise UnsupportedModel(
            f"cannot export a {family!r} model to TensorFlow: gpt2 or llama only"
        )
    if problems:
        raise UnsupportedModel(
            "KerasHub's converter would build this model wrongly, so it is not exported: "
            + "; ".join(problems)
        )
    return overrides


# What the export is made with, beside this file: an export cache's key holds their versions.
EXPORT_PACKAGES = ("tensorflow", "keras", "keras-hub", "safetensors", "tokenizers")


def export_key_of(model_dir: Path) -> str:
    """The export cache's key of this model folder's export (textgen.convert.export_cache)."""
    return export_key(Path(model_dir), [Path(__file__)], EXPORT_PACKAGES)


def export_tf(model_dir: Path) -> Path:
    """Write MODEL_DIR/tf/ (SavedModel, tokenizer, metadata) through a staging folder."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    overrides = convertible_config(config)
    if not (model_dir / TF_TOKENIZER_FILE).is_file():
        raise UnsupportedModel(f"{model_dir} has no {TF_TOKENIZER_FILE}, which serving needs")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras_hub  # noqa: F401  (the export's builder; imported here to fail early)
        import tensorflow as tf
    except ImportError as exc:
        raise BackendNotInstalled(
            f"`textgen export-tf` needs TensorFlow and KerasHub ({exc}); install the 'export' "
            "extra: pip install 'serverless-textgen[export]'"
        ) from exc

    with _keras_preset(model_dir, config) as preset:
        causal_lm = _build_causal_lm(preset, overrides)
    check_backbone(built_settings(causal_lm.backbone), config)
    module = _GenerateModule(causal_lm, tf)
    target = model_dir / TF_EXPORT_DIR
    with staged_folder(target) as staging:
        tf.saved_model.save(module, str(staging), signatures={TF_SIGNATURE: module.generate})
        shutil.copy2(model_dir / TF_TOKENIZER_FILE, staging / TF_TOKENIZER_FILE)
        metadata = {
            "family": config["model_type"],
            "context_length": _context_length(config),
            "eos_token_ids": sorted(_eos_ids(model_dir, config)),
        }
        (staging / TF_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return target


@contextmanager
def _keras_preset(model_dir: Path, config: dict[str, Any]) -> Iterator[Path]:
    """A folder KerasHub's converter can read: the config with `tie_word_embeddings` spelled out
    (the converter requires the key) and weights it can open. It reads safetensors through numpy,
    which has no bfloat16, so bfloat16 weights are upcast to float32 (exactly) in a temporary
    copy; other weight files are linked, not copied."""
    with tempfile.TemporaryDirectory(prefix="textgen-keras-preset-") as folder:
        preset = Path(folder)
        written = {**config, "tie_word_embeddings": bool(config.get("tie_word_embeddings"))}
        (preset / CONFIG_FILE).write_text(json.dumps(written), encoding="utf-8")
        for source in model_dir.iterdir():
            if source.suffix == ".safetensors" and _has_bfloat16(source):
                _save_upcast(source, preset / source.name)
            elif source.name.endswith((".safetensors", ".safetensors.index.json")):
                (preset / source.name).symlink_to(source.resolve())
        yield preset


def _has_bfloat16(weights: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        names = f.keys()  # safe_open is not iterable
        return any(f.get_slice(key).get_dtype() == "BF16" for key in names)


def _save_upcast(source: Path, target: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(source)
    upcast = {k: t.float() if t.dtype == torch.bfloat16 else t for k, t in tensors.items()}
    save_file(upcast, target, metadata={"format": "pt"})


def _build_causal_lm(model_dir: Path, overrides: dict[str, Any]) -> Any:
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(model_dir), **overrides)
    task_classes = [
        cls
        for cls in _subclasses(keras_hub.models.CausalLM)
        if getattr(cls, "backbone_cls", None) is type(backbone)
    ]
    if not task_classes:
        raise UnsupportedModel(f"KerasHub has no causal LM for {type(backbone).__name__}")
    causal_lm = task_classes[0](backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")  # the default sampler draws at random
    return causal_lm


# KerasHub backbone setting -> the Hugging Face config fields it must equal, per family.
_SAME_AS: dict[Family, dict[str, tuple[str, ...]]] = {
    Family.GPT2: {
        "vocabulary_size": ("vocab_size",),
        "num_layers": ("n_layer",),
        "num_heads": ("n_head",),
        "hidden_dim": ("n_embd",),
        "max_sequence_length": ("n_positions",),
        "tie_word_embeddings": ("tie_word_embeddings",),
    },
    Family.LLAMA: {
        "vocabulary_size": ("vocab_size",),
        "num_layers": ("num_hidden_layers",),
        "num_query_heads": ("num_attention_heads",),
        "num_key_value_heads": ("num_key_value_heads", "num_attention_heads"),
        "hidden_dim": ("hidden_size",),
        "intermediate_dim": ("intermediate_size",),
        # Tied: the logits are read off the token embeddings (one variable); untied: lm_head.
        "tie_word_embeddings": ("tie_word_embeddings",),
    },
}


def built_settings(backbone: Any) -> dict[str, Any]:
    """The backbone's settings, and whether its token embedding layer really ties the logits to
    the embeddings (LLaMA's backbone config leaves that out)."""
    return {**backbone.get_config(), "tie_word_embeddings": backbone.token_embedding.tie_weights}


def check_backbone(built: dict[str, Any], config: dict[str, Any]) -> None:
    """Compare the model KerasHub built with the PyTorch model's config, field by field."""
    wrong = []
    for setting, fields in _SAME_AS[Family(config["model_type"])].items():
        expected = next((config[f] for f in fields if config.get(f) is not None), None)
        if expected is not None and built.get(setting) != expected:
            wrong.append(f"{setting}={built.get(setting)!r} where {fields[0]}={expected!r}")
    if (
        config["model_type"] == Family.GPT2
        and built.get("intermediate_dim") != 4 * config["n_embd"]
    ):
        wrong.append(f"intermediate_dim={built.get('intermediate_dim')!r}, not 4 x n_embd")
    if wrong:
        raise UnsupportedModel("KerasHub built a model unlike the PyTorch one: " + "; ".join(wrong))


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    direct: list[type] = cls.__subclasses__()
    for sub in direct:
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


class _GenerateModule:
    """Wraps the causal LM in a tf.Module whose one signature is the generation loop.

    The module holds the model's variables, not the model: saving traces every function of the
    objects it reaches, and through the Keras model that was some 120 functions no signature
    calls (about half of SmolLM2's export time)."""

    def __new__(cls, causal_lm: Any, tf: Any) -> Any:
        class GenerateModule(tf.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.model_variables = [v.value for v in causal_lm.variables]

            @tf.function(  # type: ignore[untyped-decorator]
                input_signature=[
                    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                    tf.TensorSpec([None, None], tf.bool, name="padding_mask"),
                ],
                jit_compile=True,
            )
            def generate(self, token_ids: Any, padding_mask: Any) -> dict[str, Any]:
                # Rows are right-padded; each row's positions where the mask is False get filled.
                inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
                output = causal_lm.generate_step(inputs, stop_token_ids=None)
                return {"token_ids": output["token_ids"], "padding_mask": output["padding_mask"]}

        return GenerateModule()


def _context_length(config: dict[str, Any]) -> int:
    return int(config.get("max_position_embeddings") or config.get("n_positions") or 1024)


def _eos_ids(model_dir: Path, config: dict[str, Any]) -> set[int]:
    generation = model_dir / "generation_config.json"
    eos = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
    if eos is None:
        eos = config.get("eos_token_id")
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, list) else {int(eos)}
