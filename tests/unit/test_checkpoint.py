"""Reading a model folder straight from its files gives, bit for bit, the decoder that Hugging
Face's loader gives (every weight, the rotary tables, the activations), and hands every folder it
does not know in full to that loader."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.unit.test_decoders import VARIANTS
from textgen.models import FAMILIES, load_with_transformers
from textgen.models.activations import KNOWN
from textgen.models.checkpoint import SINGLE_FILE, read_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=list(VARIANTS))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    build, config = VARIANTS[request.param]
    path: Path = build(tmp_path_factory.mktemp("checkpoint") / request.param, **config)
    return path


def held_tensors(value: Any, name: str = "decoder") -> list[tuple[str, torch.Tensor]]:
    """Every tensor a decoder holds, by attribute path (tied weights under each name)."""
    if isinstance(value, torch.Tensor):
        return [(name, value)]
    if isinstance(value, (list, tuple)):
        return [t for i, item in enumerate(value) for t in held_tensors(item, f"{name}[{i}]")]
    if hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
        return [t for key, item in vars(value).items() for t in held_tensors(item, f"{name}.{key}")]
    return []


def differences(ours: Any, theirs: Any) -> list[str]:
    """Where two decoders differ: a tensor they hold (every weight), the rotary tables over the
    whole context, or an activation's output."""
    found = []
    mine, other = held_tensors(ours), held_tensors(theirs)
    if [n for n, _ in mine] != [n for n, _ in other]:
        found.append(f"{len(mine)} tensors against {len(other)}")
    for (name, a), (_, b) in zip(mine, other, strict=False):
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            found.append(f"{name}: {tuple(a.shape)} {a.dtype}")
    if hasattr(ours, "rotary"):
        positions = torch.arange(ours.context_length)[None]
        probe = torch.zeros(1, dtype=ours.dtype)
        for a, b in zip(
            ours.rotary(probe, positions), theirs.rotary(probe, positions), strict=True
        ):
            if not torch.equal(a, b):
                found.append("rotary tables")
    x = torch.linspace(-6, 6, 1001, dtype=ours.dtype)
    if not torch.equal(ours.activation(x), theirs.activation(x)):
        found.append(f"activation {ours.activation_name}")
    return found


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_folder_read_from_its_files_is_transformers_decoder(
    model_dir: Path, dtype: torch.dtype
) -> None:
    ours = read_checkpoint(model_dir, FAMILIES, dtype, CPU)
    theirs = load_with_transformers(model_dir, dtype, CPU)

    if model_dir.name == "llama-llama3-rope":  # not the default rotary embedding: theirs
        assert ours is None
        return
    assert ours is not None
    assert differences(ours, theirs) == []


def test_the_comparison_sees_one_changed_weight(model_dir: Path, tmp_path: Path) -> None:
    changed = copied(model_dir, tmp_path / model_dir.name)
    weights = load_file(changed / SINGLE_FILE)
    name = sorted(n for n in weights if n.endswith("norm.weight") or n.endswith("ln_2.weight"))[0]
    weights[name] = weights[name].clone()
    weights[name][0] += 1e-3
    save_file(weights, changed / SINGLE_FILE, metadata={"format": "pt"})

    ours = read_checkpoint(changed, FAMILIES, torch.float32, CPU)
    if ours is None:  # the llama3 rotary variant: nothing of ours to compare
        return
    assert differences(ours, load_with_transformers(model_dir, torch.float32, CPU)) != []


def test_the_known_activations_are_transformers_own() -> None:
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 4001)
    for name, function in KNOWN.items():
        assert torch.equal(function(x), ACT2FN[name](x)), name
    # and the comparison can fail: the exact GELU is not GPT-2's approximation
    assert not torch.equal(KNOWN["gelu_new"](x), ACT2FN["gelu"](x))
    assert math.isclose(float(KNOWN["gelu_new"](torch.tensor(1.0))), 0.8412, abs_tol=1e-4)


def copied(model_dir: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in model_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def edited(model_dir: Path, tmp_path: Path, **config_changes: Any) -> Path:
    copy = copied(model_dir, tmp_path / "edited")
    config = json.loads((copy / "config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_what_it_does_not_know_in_full_goes_to_transformers(tmp_path: Path) -> None:
    build, config = VARIANTS["llama"]
    model_dir = build(tmp_path / "llama", **config)
    assert read_checkpoint(model_dir, FAMILIES, torch.float32, CPU) is not None

    # a key transformers would fill in with its default
    left_out = edited(model_dir, tmp_path / "a", rms_norm_eps=None)
    assert read_checkpoint(left_out, FAMILIES, torch.float32, CPU) is None
    # untied, and no output weights in the file
    untied = edited(model_dir, tmp_path / "b")
    weights = load_file(untied / SINGLE_FILE)
    weights.pop("lm_head.weight")
    save_file(weights, untied / SINGLE_FILE, metadata={"format": "pt"})
    assert read_checkpoint(untied, FAMILIES, torch.float32, CPU) is None
    # no safetensors
    (untied / SINGLE_FILE).unlink()
    assert read_checkpoint(untied, FAMILIES, torch.float32, CPU) is None


def test_reading_a_folder_imports_no_transformers(model_dir: Path) -> None:
    probe = (
        "import sys, torch; from pathlib import Path; from textgen.models import load_decoder; "
        f"load_decoder(Path({str(model_dir)!r}), torch.float32, torch.device('cpu')); "
        "print('transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # the llama3 rotary variant is transformers' to load
    assert done.stdout.strip() == str(model_dir.name == "llama-llama3-rope")
