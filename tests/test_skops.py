"""skops model files: every tlsk model round-trips; any other type is refused."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from tests._datasets import coloured_images, write_image_folder
from tlsk import (
    ImageFeatureExtractor,
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    VGG16FeatureExtractor,
)
from tlsk.cli import main
from tlsk.evaluation.classifiers import CLASSIFIERS, bottleneck_classifier
from tlsk.networks.backbone import file_sha256
from tlsk.persistence.model_files import (
    UntrustedTypesError,
    load_model,
    metadata_path,
    save_model,
    untrusted_types,
)

pytest.importorskip("skops")

REPO = Path(__file__).resolve().parents[1]
TREE = "sklearn.tree._tree.Tree"
KERAS = {"input_size": 32, "augmentation": False, "validation_fraction": 0}
KERAS |= {"verbose": 0, "batch_size": 8}

# Loads every model saved by the `saved` fixture and compares its output with
# the one computed before saving: one fresh process for all of them.
FRESH_PROCESS_CHECK = """
import json, sys
import numpy as np
from tlsk.persistence.model_files import load_model
folder = sys.argv[1]
X = np.load(f"{folder}/images.npy")
expected = np.load(f"{folder}/expected.npz")
fingerprints = json.load(open(f"{folder}/fingerprints.json"))
for name in expected.files:
    trusted = ["sklearn.tree._tree.Tree"] if name == "random-forest" else []
    model = load_model(f"{folder}/{name}.skops", trusted=trusted)
    if hasattr(model, "predict_proba"):
        got = model.predict_proba(X)
    else:
        got = model.transform(X)
        assert model.fingerprint_ == fingerprints[name], name
    np.testing.assert_array_equal(got, expected[name], err_msg=name)
print("identical:", " ".join(expected.files))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each kind of tlsk model, fitted tiny, saved as ``.skops``; and its output."""
    folder = tmp_path_factory.mktemp("skops")
    X, y = coloured_images(4)
    extractor = ImageFeatureExtractor(weights=None, input_size=32, tta="flip").fit()
    features = extractor.transform(X)
    models = {
        "extractor": extractor,
        "vgg16-extractor": VGG16FeatureExtractor(weights=None, input_size=32).fit(),
        "scratch": SmallCNNClassifier(epochs=1, **KERAS).fit(X, y),
        "finetune": KerasFineTuneClassifier(
            weights=None, head_epochs=1, finetune_epochs=0, **KERAS
        ).fit(X, y),
    }
    for name in CLASSIFIERS:  # the pipelines 'tlsk train' builds
        classifier = bottleneck_classifier(name, y).fit(features, y)
        models[name] = Pipeline([("features", extractor), *classifier.steps])
    expected, fingerprints = {}, {}
    for name, model in models.items():
        save_model(model, folder / f"{name}.skops")
        if hasattr(model, "predict_proba"):
            expected[name] = model.predict_proba(X)
        else:
            expected[name] = model.transform(X)
            fingerprints[name] = model.fingerprint_
    np.save(folder / "images.npy", X)
    np.savez(folder / "expected.npz", **expected)
    (folder / "fingerprints.json").write_text(json.dumps(fingerprints))
    return folder


def test_every_tlsk_model_gives_identical_output_from_skops_in_a_fresh_process(saved):
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_CHECK, str(saved)],
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kinds = {"extractor", "vgg16-extractor", "scratch", "finetune", *CLASSIFIERS}
    assert set(result.stdout.split()[1:]) == kinds


def test_the_keras_network_travels_as_keras_bytes_not_a_pickle(saved):
    with zipfile.ZipFile(saved / "finetune.skops") as archive:
        schema = json.loads(archive.read("schema.json"))
        node = schema["content"]["content"]["model_"]
        network = archive.read(node["file"])
    assert node["__loader__"] == "BytesNode"
    assert network[:2] == b"PK"  # a .keras file is a zip
    assert "config.json" in zipfile.ZipFile(io.BytesIO(network)).namelist()


def test_a_random_forest_loads_only_with_its_trees_trusted(saved):
    path = saved / "random-forest.skops"
    assert untrusted_types(path) == [TREE]
    with pytest.raises(UntrustedTypesError, match=r"\['sklearn.tree._tree.Tree'\]"):
        load_model(path)
    forest = load_model(path, trusted=[TREE])
    assert forest.predict(np.load(saved / "images.npy")).shape == (12,)


def _tamper(path, edit):
    """Edit the schema of the skops file ``path``; keep its metadata's SHA-256 true."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(files["schema.json"])
    edit(schema)
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    record = json.loads(Path(metadata_path(path)).read_text())
    record["model_sha256"] = file_sha256(path)
    Path(metadata_path(path)).write_text(json.dumps(record))


def _json(value):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"} | {
        "content": json.dumps(value),
        "is_json": True,
    }


def _builtin_through_a_reduce(marker):
    # What a pickle's reduce does: call a callable with arguments.
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "__class__": "exec",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json(code)],
        },
    }


def _os_system(marker):
    return {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"}


@pytest.mark.parametrize(
    "smuggled, name",
    [(_builtin_through_a_reduce, "builtins.exec"), (_os_system, "os.system")],
)
def test_a_skops_file_edited_to_smuggle_in_a_type_is_refused_and_nothing_runs(
    tmp_path, smuggled, name
):
    path, marker = tmp_path / "model.skops", tmp_path / "ran.txt"
    save_model(LogisticRegression().fit([[0], [1]], [0, 1]), path)
    _tamper(path, lambda s: s["content"]["content"].update(C=smuggled(marker)))
    with pytest.raises(UntrustedTypesError, match=rf"\['{name}'\]") as error:
        load_model(path)
    assert not marker.exists()
    assert error.value.types == [name]


def test_a_skops_model_is_written_without_its_feature_cache(tmp_path):
    extractor = ImageFeatureExtractor(
        weights=None, input_size=32, cache=tmp_path / "f.h5"
    ).fit()
    with pytest.warns(UserWarning, match="without its feature cache"):
        save_model(extractor, tmp_path / "model.skops")
    assert load_model(tmp_path / "model.skops").cache is None
    assert extractor.cache == tmp_path / "f.h5"


def test_trusted_applies_to_skops_files_only(tmp_path):
    save_model(LogisticRegression().fit([[0], [1]], [0, 1]), tmp_path / "m.joblib")
    with pytest.raises(ValueError, match="trusted= applies to .skops"):
        load_model(tmp_path / "m.joblib", trusted=[TREE])


def test_without_skops_a_skops_file_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(ImportError, match=r"pip install 'tlsk\[skops\]'"):
        save_model(LogisticRegression(), tmp_path / "m.skops")


def test_tlsk_train_writes_skops_that_predict_and_evaluate_read(tmp_path, capsys):
    write_image_folder(tmp_path / "data", 4)
    out = tmp_path / "model.skops"
    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    argv = ["train", tmp_path / "data", "--out", out, "--classifier", "svm", *tiny]
    assert main([str(a) for a in argv]) == 0
    assert json.loads(Path(metadata_path(out)).read_text())["serialization"] == "skops"
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "data" / "red"), "-q"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 4 and all(row.split(",")[1] in "red green blue" for row in rows)
    assert main(["evaluate", str(out), str(tmp_path / "data"), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.5


def test_the_trusted_tlsk_type_names_are_the_estimators_classes():
    from tlsk import ZeroShotImageClassifier
    from tlsk.networks.backbone import BackboneConfig
    from tlsk.persistence.skops import TLSK_TYPES

    classes = (
        ImageFeatureExtractor,
        VGG16FeatureExtractor,
        KerasFineTuneClassifier,
        SmallCNNClassifier,
        ZeroShotImageClassifier,
        BackboneConfig,
    )
    assert {f"{c.__module__}.{c.__qualname__}" for c in classes} == TLSK_TYPES
