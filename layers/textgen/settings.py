"""Every knob of the service, read once from the environment (or passed explicitly in tests).

A setting's variable is its name in any case (MODEL_STORE, model_store); an empty one is unset;
lists are comma-separated. The model reads them itself: pydantic-settings, which it used, brought
sources this service never uses (.env files, secrets folders, the command line, cloud vaults) and
one more dependency; dropping it left the Lambda handler's import as fast as before, measured
with bytecode on both sides (docs/performance.md)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from textgen.families import Framework


def default_model_store() -> str:
    """The embedded demo store: a per-user cache folder, so it needs no write access to the repo."""
    return str(Path.home() / ".cache" / "serverless-textgen" / "demo-store")


def default_download_cache() -> Path:
    return Path.home() / ".cache" / "serverless-textgen" / "downloads"


def default_batch_dir() -> Path:
    return Path.home() / ".cache" / "serverless-textgen" / "batches"


class Settings(BaseModel):
    # Fields named model_* are settings, not pydantic's (older pydantic warns of them).
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _environment_fills_the_rest(cls, given: Any) -> Any:
        """The settings given, the environment's for the rest (then the defaults)."""
        if isinstance(given, dict):
            return {**_from_environment(cls.model_fields), **given}
        return given

    model_store: str = Field(default_factory=default_model_store)
    # Pinned public artifacts (the demo's SmolLM2 wheel, the Moby-Dick text), verified by sha256.
    download_cache_dir: Path = Field(default_factory=default_download_cache)
    max_loaded_models: int = Field(default=2, ge=1)

    # The engine of each loaded model: rows decoded together, requests waiting beyond which a 429
    # answers, the KV cache's memory (rows x (prompt + max_tokens) tokens must fit), and prompt
    # tokens prefilled per step (longer prompts wait a step while others decode).
    max_batch_size: int = Field(default=32, ge=1)
    max_queued_requests: int = Field(default=64, ge=0)
    kv_cache_max_bytes: int = Field(default=1024**3, ge=1024)
    max_prefill_tokens: int = Field(default=8192, ge=1)
    # On SIGTERM: running requests get this long to finish; new ones get a 503.
    shutdown_grace_s: float = Field(default=20.0, ge=0)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_body_timeout_s: float = Field(default=30.0, gt=0)  # a trickled body gets a 408
    max_query_bytes: int = Field(default=8192, ge=256)
    max_header_bytes: int = Field(default=16384, ge=1024)
    # Keys callers send as `Authorization: Bearer <key>`: comma-separated, and/or a file with one
    # per line. None set: the service is open (API Gateway's own key protects Lambda).
    api_keys: list[str] = Field(default_factory=list, repr=False)
    api_keys_file: Path | None = None
    # GET /metrics is open like /health; true puts it behind the keys too.
    metrics_require_api_key: bool = False
    max_prompts: int = Field(default=32, ge=1)
    max_prompt_chars: int = Field(default=8000, ge=1)
    max_new_tokens_cap: int = Field(default=1024, ge=1)
    default_max_tokens: int = Field(default=200, ge=1)

    # Remote stores (S3): the verified disk cache and the transfer manager.
    model_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "textgen-models"
    )
    model_cache_max_bytes: int = Field(default=8 * 1024**3, ge=1)
    # `textgen export-tf` and `textgen publish` (its ONNX export) reuse an export of identical
    # inputs kept here (textgen.convert.export_cache); none: every export is built.
    export_cache_dir: Path | None = None
    verify_cached_models: bool = True  # re-hash a cached model when a process first uses it
    s3_max_concurrency: int = Field(default=16, ge=1)
    s3_part_size_mb: int = Field(default=16, ge=5)
    s3_parallel_files: int = Field(default=4, ge=1)
    s3_max_attempts: int = Field(default=6, ge=1)
    # "name" or "name:framework" (the form /health prints), comma-separated; pt by default.
    preload_models: list[tuple[str, Framework]] = Field(default_factory=list)
    # Where PRELOAD_MODELS names none: preload the store's model if it holds just one (the Lambda
    # image sets it, so a function on a one-model store gets the preloaded cold start unasked).
    preload_sole_model: bool = False

    # The Batch API (/v1/files, /v1/batches): files and batches kept in BATCH_DIR, run on this
    # process' engines after interactive requests. A file's size and lines are bounded as
    # OpenAI's are; each line as a request body (MAX_BODY_BYTES). Batches run in chunks of
    # BATCH_CHUNK_LINES lines, each written once when it completes.
    batch_dir: Path = Field(default_factory=default_batch_dir)
    max_batch_file_bytes: int = Field(default=200 * 1024**2, ge=1024)
    max_batch_lines: int = Field(default=50_000, ge=1)
    batch_chunk_lines: int = Field(default=64, ge=1)
    # A batch still running this long after its window ends (its chunks in a dead-letter queue,
    # or a local server gone) is settled as expired when next read: by then no worker can still
    # hold a chunk (a Lambda worker's most is 900 s).
    batch_overdue_grace_s: float = Field(default=900.0, ge=0)
    # On AWS: files and batches in this bucket under BATCH_PREFIX, chunks on this SQS queue for
    # the workers (both set, or neither: BATCH_DIR then).
    batch_bucket: str | None = None
    batch_prefix: str = "batches"
    batch_queue_url: str | None = None

    # Answer before the caller gives up: API Gateway cuts a request at 29 s. 0 means no budget.
    generation_time_budget_s: float = Field(default=24.0, ge=0)
    lambda_deadline_margin_s: float = Field(default=1.0, ge=0)

    # TensorFlow: "BATCHxLENGTH" shapes compiled when a model loads, e.g. "1x64,8x128".
    tf_warmup_shapes: list[tuple[int, int]] = Field(default_factory=lambda: [(1, 64)])

    # Unpickling a file from a bucket can run arbitrary code: the original app's joblib-pickled
    # tokenizers load only when this is on (and, where a manifest lists them, match its sha256).
    allow_pickle_tokenizers: bool = False

    malloc_arenas: int = Field(default=2, ge=1)  # glibc arenas (see textgen.malloc)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # framework "pt" on a CPU: ONNX Runtime where the model has an export (textgen export-onnx)
    # and onnxruntime is installed ("auto"), or always one of the two.
    cpu_runtime: Literal["auto", "onnx", "torch"] = "auto"
    # How long ONNX Runtime's threads spin for their next piece of work within a step before
    # sleeping (0: never); between steps they always sleep (bench/spin_wait.py).
    onnx_spin_wait_us: int = Field(default=20, ge=0)
    # An int8 export's weights as ONNX Runtime multiplies them: "auto" is signed on CPUs with
    # VNNI (exact there, and faster), unsigned elsewhere (textgen.backends.signed_int8).
    onnx_int8_weights: Literal["auto", "unsigned", "signed"] = "auto"
    # A static KV cache and a decode step compiled per batch-size bucket (CUDA graphs on a GPU);
    # "auto" compiles on CUDA only. The compiled artifacts are saved to and loaded from
    # COMPILE_CACHE_DIR (one file per model), so a fresh process compiles much less.
    compile: Literal["auto", "on", "off"] = "auto"
    compile_batch_buckets: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    compile_cache_dir: Path | None = None
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _batch_aws_whole(self) -> Settings:
        if bool(self.batch_bucket) != bool(self.batch_queue_url):
            raise ValueError("set BATCH_BUCKET and BATCH_QUEUE_URL together, or neither")
        return self

    @field_validator("preload_models", mode="before")
    @classmethod
    def _models_and_frameworks(cls, value: object) -> object:
        if isinstance(value, str):
            value = _comma_separated(value)
        if isinstance(value, list):
            return [_model_and_framework(item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("compile_batch_buckets", "api_keys", mode="before")
    @classmethod
    def _items(cls, value: object) -> object:
        return _comma_separated(value) if isinstance(value, str) else value

    def api_key_list(self) -> list[str]:
        """Every accepted key: API_KEYS and the lines of API_KEYS_FILE (read now, once)."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return keys

    @field_validator("tf_warmup_shapes", mode="before")
    @classmethod
    def _shapes(cls, value: object) -> object:
        if isinstance(value, str):
            shapes = [shape.lower().split("x") for shape in _comma_separated(value)]
            return [(int(batch), int(length)) for batch, length in shapes]
        return value

    @model_validator(mode="after")
    def _default_within_cap(self) -> Settings:
        if self.default_max_tokens > self.max_new_tokens_cap:
            raise ValueError(
                f"DEFAULT_MAX_TOKENS ({self.default_max_tokens}) is above MAX_NEW_TOKENS_CAP "
                f"({self.max_new_tokens_cap}): a request without max_tokens would be refused"
            )
        return self

    @field_validator("model_store")
    @classmethod
    def _store_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("MODEL_STORE must name a directory or an s3:// URI")
        return value.strip()


def _from_environment(fields: Mapping[str, object]) -> dict[str, str]:
    """The environment's values of `fields`: a variable named as the field in any case, unless
    empty (which leaves the default)."""
    found = {name.lower(): value for name, value in os.environ.items() if value}
    return {field: found[field] for field in fields if field in found}


def _comma_separated(text: str) -> list[str]:
    """A variable's list: its comma-separated items, stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _model_and_framework(item: str) -> tuple[str, str]:
    name, _, framework = item.partition(":")
    return name.strip(), framework.strip() or Framework.PYTORCH.value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
