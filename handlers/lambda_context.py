"""A Lambda context object for calling the handler outside Lambda (a notebook, a benchmark, a
test): the attributes and the one method of Lambda's own that the handler stack reads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class LocalLambdaContext:
    remaining_ms: int = 30_000  # the invocation's time left when it starts
    function_name: str = "textgen"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:textgen"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/textgen"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = int((time.monotonic() - self._started) * 1000)
        return max(self.remaining_ms - elapsed_ms, 0)
