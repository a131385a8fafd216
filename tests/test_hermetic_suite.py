"""The suite runs on the settings' defaults and what each test gives, whatever the developer's
shell exports (tests/conftest.py drops the service's settings from the environment)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import service_settings_in
from tests.support.servers import REPO_ROOT

# A test that reads the settings' defaults from the environment, as the service does.
DEFAULTS_TEST = "tests/unit/test_runtime.py::test_dtype_is_float32_on_any_cpu_unless_set"


def test_no_setting_of_the_service_is_in_the_suites_environment() -> None:
    assert service_settings_in(os.environ) == []
    assert service_settings_in({"torch_dtype": "bfloat16", "PATH": "/bin"}) == ["torch_dtype"]


@pytest.mark.slow
def test_a_setting_exported_by_the_shell_does_not_reach_the_tests() -> None:
    def pytest_with_bfloat16(*options: str) -> int:
        command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
        environ = {**os.environ, "torch_dtype": "bfloat16"}  # a name in any case is read
        done = subprocess.run(
            [*command, *options, DEFAULTS_TEST], cwd=REPO_ROOT, env=environ, capture_output=True
        )
        return done.returncode

    assert pytest_with_bfloat16() == 0
    assert pytest_with_bfloat16("--noconftest") == 1  # live check: without it, the test fails
