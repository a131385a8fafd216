"""One lock for importing the heavy libraries a model load needs.

transformers resolves its names lazily, and that is not safe when two threads do it at once: two
models loading side by side (or a load beside a first chat template) failed with "cannot import
name 'AutoModelForCausalLM'" under load (bench/load.py). Loads take this lock, so they import
one at a time; they are CPU-bound, so nothing is lost."""

from __future__ import annotations

import threading

heavy_imports = threading.RLock()
