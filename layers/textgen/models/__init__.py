"""Our own forward passes of the decoder families we serve, over a KV cache whose rows decode at
positions of their own: what continuous batching needs and Hugging Face's generate() lacks.

Weights and configs still come from Hugging Face's loaders; only the forward pass is ours.
"""

from textgen.models.decoder import Decoder, ForwardBatch, decoder_tensors, load_decoder
from textgen.models.kv_cache import KVCache

__all__ = ["Decoder", "ForwardBatch", "KVCache", "decoder_tensors", "load_decoder"]
