"""Which products of the int8 export take their outlier input channels in float32: closeness to
float32 against speed, on SmolLM2-135M.

Variants of the export (textgen.convert.calibration: each chosen product's 16 largest input
channels, measured on the shipped calibration text, multiplied in float32 beside the 8-bit
product), all with the same 8-bit weights:

- none: every product in 8 bits (export format 4);
- lm_head: the output projection only (what `textgen export-onnx` writes);
- norm_fed: the products fed by a normalization: q/k/v, gate/up and the output projection;
- all: every weighted product.

Closeness: the held-out Moby-Dick chapters in 512-token windows, every position scored in one
prompt pass through each variant's graph and through the float32 graph: the KL divergence of the
next-token distribution from float32's (nats per token), how often the top token is float32's,
and the perplexity against float32's, for positions 1-127 and 128 on. Speed: the service's tokens/s
on the variant's export (bench/cpu_decoding.py's workloads and child process), interleaved rounds.

Reproduce (WORK: the --work folder of a bench/cpu_decoding.py run, which holds the models):

    python bench/float_channels.py --work WORK \
        --output bench/results/float_channels-epyc-vnni-2core.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

import numpy as np  # noqa: E402

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import PERPLEXITY_WINDOW, cpu_description, run_child  # noqa: E402
from bench.report import report  # noqa: E402

VARIANTS = ("none", "lm_head", "norm_fed", "all")
KINDS = {
    "none": (),
    "lm_head": (),
    "norm_fed": ("qkv", "gate_up"),
    "all": ("qkv", "o", "gate_up", "down"),
}


def products(variant: str, layers: int) -> tuple[str, ...]:
    """The variant's products, by weight name (textgen.convert.onnx_graph's names)."""
    if variant == "none":
        return ()
    return ("lm_head", *(f"layers.{i}.{kind}" for i in range(layers) for kind in KINDS[variant]))


EARLY = 128  # positions below this are "early": short passages are mostly these


def exported(model_dir: Path, work: Path, variant: str, layers: int) -> Path:
    """A folder beside the model's files (linked) with the variant's int8 export."""
    from textgen.convert.onnx_export import export_onnx

    folder = work / f"float-channels-{variant}"
    if not (folder / "onnx").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        for source in model_dir.iterdir():
            if source.is_file() and not (folder / source.name).exists():
                (folder / source.name).symlink_to(source.resolve())
        export_onnx(folder, "int8", products(variant, layers))
    return folder


def held_out_windows(model_dir: Path, cache: Path, count: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    from textgen.demo.moby_dick import split

    text = "\n\n".join(split(cache).held_out.values())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    size = PERPLEXITY_WINDOW
    return [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)][:count]


class Scorer:
    """A graph's prompt pass (an export's onnx/ folder, or one laid out alike) over a window:
    the log-softmax at every position, float64."""

    def __init__(self, graph_folder: Path) -> None:
        import onnx
        import onnxruntime as ort

        path = graph_folder / "model.onnx"
        graph = onnx.load(str(path), load_external_data=False)
        self.takes = {value.name: value for value in graph.graph.input}
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        # The tables the graph takes, each saved as INPUT.npy (an int8 export's table and scales).
        self.tables = {
            name: np.load(graph_folder / f"{name}.npy")
            for name in self.takes
            if (graph_folder / f"{name}.npy").is_file()
        }

    def __call__(self, window: list[int]) -> np.ndarray:
        from textgen.convert.calibration import prompt_feeds

        feeds = {**prompt_feeds(self.takes, window, every_position=True), **self.tables}
        logits = self.session.run(["logits"], feeds)[0][0, :-1].astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        found: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return found


def closeness(
    reference: Scorer, variants: dict[str, Scorer], windows: list[list[int]]
) -> dict[str, dict[str, float]]:
    """Per variant: KL from float32, same top token, perplexity against float32's; early and
    late positions apart. Window by window: a window's log-probabilities are 0.2 GB."""
    sums: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    for window in windows:
        ref = reference(window)
        targets = np.asarray(window[1:])
        for name, scorer in variants.items():
            ours = scorer(window)
            kl = (np.exp(ref) * (ref - ours)).sum(axis=-1)
            same_top = (ref.argmax(-1) == ours.argmax(-1)).astype(np.float64)
            rows = np.arange(len(targets))
            excess = ref[rows, targets] - ours[rows, targets]
            for part, positions in (
                ("early", slice(0, EARLY - 1)),
                ("late", slice(EARLY - 1, None)),
            ):
                for field, values in (("kl", kl), ("same_top", same_top), ("excess", excess)):
                    sums[name].setdefault(f"{field}_{part}", []).extend(values[positions])
    results = {}
    for name, found in sums.items():
        result = {}
        for part in ("early", "late"):
            result[f"kl_{part}"] = statistics.fmean(found[f"kl_{part}"])
            result[f"same_top_token_{part}"] = statistics.fmean(found[f"same_top_{part}"])
            excess = statistics.fmean(found[f"excess_{part}"])
            result[f"perplexity_vs_float32_percent_{part}"] = 100 * (math.exp(excess) - 1)
        result["kl"] = statistics.fmean(found["kl_early"] + found["kl_late"])
        result["same_top_token"] = statistics.fmean(
            found["same_top_early"] + found["same_top_late"]
        )
        excess = statistics.fmean(found["excess_early"] + found["excess_late"])
        result["perplexity_vs_float32_percent"] = 100 * (math.exp(excess) - 1)
        results[name] = result
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=44)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    add_storage_options(parser, work_required=True)
    args = parser.parse_args()

    import torch

    from textgen.convert.onnx_graph import build_graph, token_embedding
    from textgen.convert.onnx_layout import save_for_serving
    from textgen.models import load_decoder

    model_dir = args.work / "smollm2-135m"
    layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    folders = {variant: exported(model_dir, args.work, variant, layers) for variant in VARIANTS}
    windows = held_out_windows(model_dir, args.cache, args.windows)
    float32_folder = args.work / "float-channels-float32-graph"
    if not (float32_folder / "model.onnx").is_file():
        float32_folder.mkdir(parents=True, exist_ok=True)
        decoder = load_decoder(model_dir, torch.float32, torch.device("cpu"))
        save_for_serving(build_graph(decoder, "llama"), float32_folder / "model.onnx")
        np.save(float32_folder / "embedding.npy", token_embedding(decoder, "llama"))
    figures: dict[str, Any] = {
        "cpu": cpu_description(),
        "threads": args.threads,
        "windows": len(windows),
        "tokens_scored": len(windows) * (PERPLEXITY_WINDOW - 1),
    }
    scorers = {variant: Scorer(folder / "onnx") for variant, folder in folders.items()}
    figures["variants"] = closeness(Scorer(float32_folder), scorers, windows)
    del scorers
    print(json.dumps(figures["variants"], indent=1), file=sys.stderr, flush=True)
    speeds: dict[str, list[float]] = {}
    for round_index in range(args.rounds):
        shift = round_index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            for workload in ("1x128", "8x64"):
                run = run_child("onnx", folders[variant], workload, args.threads)
                speeds.setdefault(f"{variant}/{workload}", []).append(run["tokens_per_second"])
    for key, values in speeds.items():
        variant, workload = key.split("/")
        row = figures["variants"][variant]
        row[f"tokens_per_second_{workload}"] = statistics.median(values)
    for row in figures["variants"].values():
        for workload in ("1x128", "8x64"):
            base = figures["variants"]["none"][f"tokens_per_second_{workload}"]
            row[f"speed_vs_none_{workload}"] = row[f"tokens_per_second_{workload}"] / base
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
