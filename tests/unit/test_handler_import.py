"""What importing the Lambda handler loads: the X-Ray SDK (a third of the import) only where
Powertools would trace, on Lambda with POWERTOOLS_TRACE_DISABLED not true."""

from __future__ import annotations

import pytest

from handlers.observability import tracing_enabled
from tests.support.fresh_process import fresh_python

IMPORT_HANDLER = """
import json, sys
import handlers.lambda_function as module
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("environ", "traced"),
    [
        ({}, False),  # not on Lambda
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "0"}, True),
    ],
)
def test_tracing_follows_powertools_rules(environ: dict[str, str], traced: bool) -> None:
    assert tracing_enabled(environ) is traced


@pytest.mark.slow
@pytest.mark.parametrize("on_lambda", [False, True])
def test_the_handler_imports_the_xray_sdk_only_where_it_traces(on_lambda: bool) -> None:
    unset = {"AWS_SAM_LOCAL": "", "AWS_CHALICE_CLI_MODE": "", "POWERTOOLS_TRACE_DISABLED": "false"}
    environ = {**unset, "LAMBDA_TASK_ROOT": "/var/task" if on_lambda else ""}

    loaded = fresh_python(IMPORT_HANDLER, env=environ)

    # Traced on Lambda (the live check: the SDK is seen when it is there); not elsewhere.
    assert loaded == {"xray": on_lambda}
