"""The library's first hour: what a new user writes first works as written."""

import numpy as np
from sklearn.dummy import DummyClassifier

import tlsk
from tlsk import load_metadata, load_model, save_model
from tlsk.persistence.model_files import load_model_with_metadata


def test_load_model_returns_the_model_and_load_metadata_its_metadata(tmp_path):
    path = tmp_path / "m.joblib"
    save_model(DummyClassifier().fit([[0], [1]], ["a", "b"]), path, {"note": "x"})
    assert load_model(path).predict([[0]]).shape == (1,)
    metadata = load_metadata(path)
    assert metadata["note"] == "x" and len(metadata["model_sha256"]) == 64
    model, paired = load_model_with_metadata(path)
    assert isinstance(model, DummyClassifier) and paired == metadata
    assert "load_metadata" in tlsk.__all__


def test_load_metadata_reads_no_model(tmp_path, monkeypatch):
    import joblib

    path = tmp_path / "m.joblib"
    save_model(DummyClassifier().fit([[0], [1]], [0, 1]), path)

    def refuse(*args, **kwargs):
        raise AssertionError("load_metadata unpickled the model")

    monkeypatch.setattr(joblib, "load", refuse)
    assert load_metadata(path)["serialization"] == "joblib"
    assert np.array_equal(load_model.__kwdefaults__["trusted"], ())

