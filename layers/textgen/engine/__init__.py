"""The generation engine: requests queue, rows of every request decode together, step by step."""

from textgen.engine.core import Engine, EngineStats, GenerationFailed
from textgen.engine.handle import RequestHandle, SequenceOutput, TokenEvent, TokenLogprob
from textgen.engine.job import EngineLimits, Job
from textgen.engine.params import SamplingParams

__all__ = [
    "Engine",
    "EngineLimits",
    "EngineStats",
    "GenerationFailed",
    "Job",
    "RequestHandle",
    "SamplingParams",
    "SequenceOutput",
    "TokenEvent",
    "TokenLogprob",
]
