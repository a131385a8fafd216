"""Converters from a model folder to the formats other runtimes serve (ONNX, TensorFlow) and
from GGUF files into model folders. The command line runs them; the server never imports them."""
