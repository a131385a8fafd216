"""What a caller may ask of generation besides its prompts: sampling, stop strings, limits."""

from __future__ import annotations

from dataclasses import dataclass

from textgen.errors import InvalidRequest

MAX_TEMPERATURE = 2.0
MAX_REPETITION_PENALTY = 10.0
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1  # a signed 64-bit integer, as OpenAI's API takes
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 200


@dataclass(frozen=True)
class SamplingParams:
    """How each next token is chosen. The defaults are greedy: the most likely token."""

    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # the k most likely tokens only; 0: all
    repetition_penalty: float = 1.0  # >1 discourages tokens already in the prompt or output
    seed: int | None = None  # same seed and request: same text, whatever runs beside it
    stop: tuple[str, ...] = ()  # the text is cut before the first of these
    # Generate past the model's end token up to max_tokens (as vLLM's ignore_eos): benchmarks
    # compare systems on equal work. Not offered over HTTP.
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self) -> SamplingParams:
        """Refuse values outside the documented ranges, naming the field."""
        _check("temperature", 0.0 <= self.temperature <= MAX_TEMPERATURE, f"0 to {MAX_TEMPERATURE}")
        _check("top_p", 0.0 < self.top_p <= 1.0, "above 0 and at most 1")
        _check("top_k", self.top_k >= 0, "0 (off) or more")
        _check(
            "repetition_penalty",
            0.0 < self.repetition_penalty <= MAX_REPETITION_PENALTY,
            f"above 0 and at most {MAX_REPETITION_PENALTY}",
        )
        _check(
            "seed",
            self.seed is None or MIN_SEED <= self.seed <= MAX_SEED,
            f"{MIN_SEED} to {MAX_SEED}",
        )
        _check("stop", len(self.stop) <= MAX_STOP_STRINGS, f"at most {MAX_STOP_STRINGS} strings")
        _check(
            "stop",
            all(0 < len(s) <= MAX_STOP_CHARS for s in self.stop),
            f"strings of 1 to {MAX_STOP_CHARS} characters",
        )
        return self


def _check(field: str, ok: bool, allowed: str) -> None:
    if not ok:
        raise InvalidRequest(f"{field} must be {allowed}", field=field)
