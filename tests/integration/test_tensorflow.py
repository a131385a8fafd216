"""framework "tf": SavedModels exported with `textgen export-tf`, served without keras-hub."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.fresh_process import generate_in_fresh_process
from textgen.manifest import build_manifest
from textgen.settings import Settings

pytestmark = pytest.mark.slow

MIXED = ["Hi", "The quick brown fox jumps over the lazy dog and then", "Numbers: 1, 2, 3"]
FAMILIES = [
    ("/gpt2_model", "gpt2-test"),
    ("/llama_model", "llama-test"),
    ("/llama_model", "llama-eps"),
    ("/llama_model", "llama-tied"),
]


@pytest.fixture(scope="module")
def tf_client(tf_store: Path, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"model_store": str(tf_store)}))) as c:
        yield c


@pytest.mark.parametrize(("path", "model"), FAMILIES)
def test_tensorflow_gives_pytorchs_greedy_tokens(
    tf_client: TestClient, path: str, model: str
) -> None:
    request = {"model_name": model, "prompts": MIXED, "max_tokens": 12}
    pt = tf_client.post(path, json=request)
    tf = tf_client.post(path, json={**request, "framework": "tf"})

    assert tf.status_code == 200, tf.text
    assert tf.json()["framework"] == "tf"
    assert tf.json()["results"] == pt.json()["results"]
    assert len({r["generated_text"] for r in tf.json()["results"]}) == len(MIXED)


def test_models_show_the_tensorflow_exports(tf_client: TestClient) -> None:
    models = {m["name"]: m["frameworks"] for m in tf_client.get("/models").json()["models"]}

    assert models == {
        "gpt2-test": ["pt", "tf"],
        "llama-test": ["pt", "tf"],
        "llama-eps": ["pt", "tf"],
        "llama-tied": ["pt", "tf"],
    }


def test_the_export_is_part_of_what_publish_uploads(tf_store: Path) -> None:
    manifest = build_manifest(tf_store / "gpt2-test")

    assert {"tf/saved_model.pb", "tf/tokenizer.json", "tf/textgen.json"} <= set(manifest.files)
    assert manifest.extra["frameworks"] == ["pt", "tf"]


@pytest.mark.parametrize("model", ["gpt2-test", "llama-tied"])
def test_the_savedmodel_holds_the_weights_and_the_signature_not_the_keras_model(
    tf_store: Path, model: str
) -> None:
    """Saving through the Keras model traced every layer's functions, which no signature calls:
    SmolLM2's SavedModel held 4,449 objects and loaded in twice the time (docs/tensorflow.md)."""
    from tensorflow.core.protobuf.saved_model_pb2 import SavedModel

    saved = SavedModel.FromString((tf_store / model / "tf" / "saved_model.pb").read_bytes())
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    objects = [n.user_object.identifier for n in nodes if n.WhichOneof("kind") == "user_object"]

    # The module, the list of its variables, and its signatures.
    assert sorted(objects) == ["_generic_user_object", "signature_map", "trackable_list_wrapper"]


def test_serving_imports_neither_keras_hub_nor_transformers(tf_store: Path) -> None:
    report = generate_in_fresh_process(
        tf_store / "gpt2-test", "tf", ("keras_hub", "transformers", "torch")
    )

    assert report == {"tokens": 4, "loaded": [], "runtime": "tensorflow-xla"}


def test_a_savedmodel_with_the_wrong_signature_is_a_clear_error(
    tf_store: Path, store_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    import tensorflow as tf

    model = tmp_path / "store" / "gpt2-wrong"
    shutil.copytree(store_dir / "gpt2-test", model)

    class Doubler(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])  # type: ignore[untyped-decorator]
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * 2}

    doubler = Doubler()
    tf.saved_model.save(doubler, str(model / "tf"), signatures={"serving_default": doubler.double})
    for name in ("textgen.json", "tokenizer.json"):
        shutil.copy2(tf_store / "gpt2-test" / "tf" / name, model / "tf" / name)

    with TestClient(
        create_app(settings.model_copy(update={"model_store": str(model.parent)}))
    ) as c:
        response = c.post(
            "/gpt2_model", json={"model_name": "gpt2-wrong", "prompts": ["Hi"], "framework": "tf"}
        )
        healthy = c.post("/gpt2_model", json={"model_name": "gpt2-wrong", "prompts": ["Hi"]})

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "model_load_failed"
    assert "wrong serving signature" in error["message"]
    assert "textgen export-tf" in error["message"]
    assert healthy.status_code == 200


class _Tripwire:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "unpickled"))


@pytest.fixture
def pickled_store(tf_store: Path, store_dir: Path, tmp_path: Path) -> Path:
    """gpt2-test with its TensorFlow export's tokenizer as the original app kept it: a pickle."""
    import joblib
    from transformers import AutoTokenizer

    model = tmp_path / "store" / "gpt2-pickled"
    shutil.copytree(tf_store / "gpt2-test", model)
    (model / "tf" / "tokenizer.json").unlink()
    joblib.dump(
        AutoTokenizer.from_pretrained(store_dir / "gpt2-test"), model / "tf" / "tokenizer.pkl"
    )
    return model.parent


def _post(settings: Settings, store: Path, **changes: object) -> dict[str, object]:
    app = create_app(settings.model_copy(update={"model_store": str(store), **changes}))
    with TestClient(app) as c:
        request = {"model_name": "gpt2-pickled", "prompts": MIXED, "max_tokens": 6}
        tf = c.post("/gpt2_model", json={**request, "framework": "tf"})
        pt = c.post("/gpt2_model", json=request)
    return {"status": tf.status_code, "body": tf.json(), "pt": pt.json()}


def test_a_pickled_tokenizer_is_refused_by_default(pickled_store: Path, settings: Settings) -> None:
    answer = _post(settings, pickled_store)

    assert answer["status"] == 422
    message = answer["body"]["error"]["message"]  # type: ignore[index]
    assert "ALLOW_PICKLE_TOKENIZERS" in message


def test_a_pickled_tokenizer_loads_when_allowed(pickled_store: Path, settings: Settings) -> None:
    answer = _post(settings, pickled_store, allow_pickle_tokenizers=True)

    assert answer["status"] == 200, answer["body"]
    assert answer["body"]["results"] == answer["pt"]["results"]  # type: ignore[index]


def test_a_pickle_that_does_not_match_the_manifest_is_never_unpickled(
    pickled_store: Path, settings: Settings, tmp_path: Path
) -> None:
    model = pickled_store / "gpt2-pickled"
    manifest = build_manifest(model)
    (model / "manifest.json").write_text(manifest.to_json())
    marker = tmp_path / "unpickled.txt"
    import joblib

    joblib.dump(_Tripwire(marker), model / "tf" / "tokenizer.pkl")  # swapped after publishing

    answer = _post(settings, pickled_store, allow_pickle_tokenizers=True)

    assert answer["status"] == 502
    assert answer["body"]["error"]["type"] == "artifact_corrupt"  # type: ignore[index]
    assert not marker.exists()


def test_sampling_with_tf_is_refused_naming_the_field(tf_client: TestClient) -> None:
    request = {"model_name": "gpt2-test", "prompts": ["Hi"], "framework": "tf", "top_k": 5}

    response = tf_client.post("/gpt2_model", json=request)
    greedy = {**request, "top_k": 0, "max_tokens": 12}
    free = tf_client.post("/gpt2_model", json=greedy).json()["results"][0]["generated_text"]
    stop = free[3:5]
    stopped = tf_client.post("/gpt2_model", json={**greedy, "stop": [stop]})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "top_k"
    assert "framework 'pt'" in response.json()["error"]["message"]
    assert stopped.status_code == 200, stopped.text  # stop strings do work with tf
    assert stopped.json()["results"][0] == {
        "generated_text": free[: free.index(stop)],
        "generated_tokens": 12,
        "finish_reason": "stop",
    }
