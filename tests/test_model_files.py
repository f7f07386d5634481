"""Model files: a model and its metadata are written, read and checked together."""

import joblib
import pytest
from sklearn.dummy import DummyClassifier

from tlsk.persistence.model_files import (
    ModelFileError,
    load_metadata,
    load_model,
    load_model_with_metadata,
    metadata_path,
    save_model,
)


def _fitted(strategy):
    return DummyClassifier(strategy=strategy).fit([[0], [1]], ["a", "b"])


def test_model_and_metadata_round_trip(tmp_path):
    path = tmp_path / "model.joblib"
    save_model(_fitted("most_frequent"), path, {"classes": ["a", "b"]})
    model, metadata = load_model_with_metadata(path)
    assert metadata["classes"] == ["a", "b"]
    assert len(metadata["model_sha256"]) == 64
    assert model.predict([[0]]).tolist() == ["a"]


def test_a_model_file_replaced_behind_its_metadata_is_refused(tmp_path):
    path = tmp_path / "model.joblib"
    save_model(_fitted("most_frequent"), path, {"classes": ["a", "b"]})
    joblib.dump(_fitted("uniform"), path)  # as a crash between the two writes would
    with pytest.raises(ModelFileError, match="not the file its metadata"):
        load_model(path)


def test_saving_never_overwrites_without_force(tmp_path):
    path = tmp_path / "model.joblib"
    save_model(_fitted("most_frequent"), path, {})
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="pass force=True"):
        save_model(_fitted("uniform"), path, {})
    assert path.read_bytes() == before
    save_model(_fitted("uniform"), path, {}, force=True)
    assert load_metadata(path)["model_sha256"] != ""
    assert metadata_path(path).endswith("model.json")


def test_an_unloadable_model_with_matching_metadata_is_one_clear_error(tmp_path):
    import json

    from tlsk.networks.backbone import file_sha256

    path = tmp_path / "model.joblib"
    save_model(_fitted("most_frequent"), path, {})
    path.write_bytes(b"\x80\x04 this is no pickle")
    record = json.loads((tmp_path / "model.json").read_text())
    record["model_sha256"] = file_sha256(path)
    (tmp_path / "model.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(path)
