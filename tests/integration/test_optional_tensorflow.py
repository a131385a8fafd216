"""An installation without the 'tf' extra: framework "tf" is a clear 501, "pt" works as ever."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from textgen.settings import Settings


@pytest.fixture
def without_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide tensorflow as if it were not installed: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    for module in [m for m in sys.modules if m.startswith("textgen.backends.tf_")]:
        monkeypatch.delitem(sys.modules, module)


def test_framework_tf_without_tensorflow_is_501_naming_the_extra(
    without_tensorflow: None, store_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    # A model that does have a TensorFlow export in the store: the installation is what lacks.
    model = tmp_path / "gpt2-exported"
    shutil.copytree(store_dir / "gpt2-test", model)
    (model / "tf").mkdir()
    (model / "tf" / "saved_model.pb").write_bytes(b"never read: tensorflow is missing")
    app = create_app(settings.model_copy(update={"model_store": str(tmp_path)}))

    with TestClient(app) as client:
        request = {"model_name": "gpt2-exported", "prompts": ["Hi"], "max_tokens": 3}
        tf = client.post("/gpt2_model", json={**request, "framework": "tf"})
        pt = client.post("/gpt2_model", json=request)

    assert tf.status_code == 501
    error = tf.json()["error"]
    assert error["type"] == "backend_not_installed"
    assert "serverless-textgen[tf]" in error["message"]
    assert pt.status_code == 200, pt.text


def test_export_tf_without_tensorflow_names_the_export_extra(
    without_tensorflow: None, store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers.cli import main

    assert main(["export-tf", str(store_dir / "gpt2-test")]) == 1
    assert "serverless-textgen[export]" in capsys.readouterr().err
