#!/bin/sh
# How every image installs the service: the same three steps, each run as a layer of its own,
# from the least to the most often changed, with the pip and python found on PATH.
#
#   install.sh torch   torch==$TORCH_VERSION, from $TORCH_INDEX when set (the CPU or CUDA index)
#   install.sh deps    the other runtime dependencies in pyproject.toml, plus those of $EXTRAS
#                      (comma-separated extras, e.g. "tf"; none by default)
#   install.sh app     the project itself, its dependencies already in place
#
# WITH_TORCH=false (default true) leaves torch out, and the packages only its path uses: such an
# installation serves models through their ONNX exports (textgen export-onnx) only.
#
# $SRC is the folder holding pyproject.toml, container/, handlers/ and layers/ (default /src).
set -eu
src="${SRC:-/src}"
with_torch="${WITH_TORCH:-true}"
case "${with_torch}" in
  true|false) ;;
  *) echo "install.sh: WITH_TORCH must be true or false, not '${with_torch}'" >&2; exit 2 ;;
esac
case "${1:-}" in
  torch)
    if [ "${with_torch}" = false ]; then
      echo "install.sh: WITH_TORCH=false, torch left out"
    elif [ -n "${TORCH_INDEX:-}" ]; then
      pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
    else
      pip install "torch==${TORCH_VERSION}"
    fi
    ;;
  deps)
    requirements="$(mktemp)"
    without=""
    if [ "${with_torch}" = false ]; then without="--without-torch"; fi
    python "${src}/container/requirements.py" "${src}/pyproject.toml" --extras "${EXTRAS:-}" \
      ${without} > "${requirements}"
    pip install -r "${requirements}"
    rm -f "${requirements}"
    ;;
  app)
    pip install --no-deps "${src}"
    ;;
  *)
    echo "usage: install.sh torch|deps|app" >&2
    exit 2
    ;;
esac
