"""Shared model files and sizes: what a file of trusted types may still ask.

Rows of issue 26 (items 9, 12, 14c) and the tests that prove them. A
"shared" file is a ``.skops`` one; the hostile ones here are written as their
author could, with skops itself, not through ``save_model``'s checks.

- a shared file never makes tlsk read or write a path of this machine: a
  weights path, a ``.keras`` backbone, a feature cache or a Pipeline's
  ``memory``, in a parameter or a fitted attribute, at any depth (a
  Pipeline, a calibrated classifier, a search's ``best_estimator_``):
    test_a_shared_model_naming_a_local_file_is_refused_unread
    test_a_shared_fine_tuned_classifier_naming_its_weights_file_is_refused
    test_saving_a_model_that_names_a_local_file_as_skops_is_refused
- every loaded estimator is checked as fit would check it, from a joblib
  file too; sizes are bounded (input_size, batch_size, n_jobs,
  max_image_pixels, what a fitted extractor builds and allocates from); a
  loaded attribute never hides a method:
    test_sizes_and_states_fit_never_makes_are_refused_from_a_shared_file
    test_a_joblib_model_gets_the_same_parameter_checks
    test_a_model_saved_before_a_parameter_existed_still_loads (held before)
    test_an_attribute_hiding_a_method_is_refused
    test_n_features_out_must_be_the_networks_before_anything_is_allocated
    test_a_keras_classifier_whose_network_is_not_its_own_is_refused
- the Keras network inside a shared file is checked before Keras builds it:
  no huge layer, no class that reads a file, no weights stored elsewhere, no
  zip bomb; every network tlsk builds passes:
    test_a_network_that_would_allocate_without_bound_is_refused_unbuilt
    test_a_network_naming_a_class_that_reads_files_is_refused
    test_a_weights_file_stored_outside_itself_is_refused
    test_every_network_tlsk_builds_passes_the_shared_network_check
    test_every_registry_backbone_passes_the_shared_network_check (slow)
- a file that would expand beyond its size, or an array header that lies, is
  refused before it is read:
    test_a_skops_file_that_expands_beyond_its_size_is_refused
- the ``.skops`` loader, fuzzed (JSON values, types, loaders, deleted keys,
  array headers, raw bytes): a model or a ModelFileError /
  UntrustedTypesError (both ValueErrors), no file opened outside the model
  pair and tlsk's own temporary ``.keras`` copy, and at most
  ``MAX_EXPANSION * size + EXPANSION_SLACK`` bytes allocated by Python and
  numpy (tracemalloc; TensorFlow's own allocations it cannot see, and the
  checks above bound them):
    test_any_mutation_of_a_shared_pipeline_loads_or_is_refused
    test_any_mutation_of_a_shared_keras_classifier_loads_or_is_refused
    (more examples of both with --runslow)
- unbounded sizes: ``--input-size`` beyond 2048 is a usage error in the
  CLI's words, ``input_size`` one in Python, before any work:
    test_an_input_size_beyond_the_bound_is_refused_on_the_command_line
    test_an_input_size_beyond_the_bound_is_refused_before_any_work
- a zero-sized image is an error naming it, on every entry point:
    test_a_zero_sized_image_is_an_error_naming_it
    test_resize_image_refuses_a_zero_sized_image
    test_a_zero_sized_image_file_is_an_error_naming_it (held before)
- a metadata file without ``model_sha256`` pairs with no model:
    test_metadata_without_model_sha256_pairs_with_no_model
"""

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
import struct
import sys
import sysconfig
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import h5py
import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline

import tlsk
from tests.robustness._support import tiny
from tlsk import (
    ImageFeatureExtractor,
    KerasFineTuneClassifier,
    SmallCNNClassifier,
)
from tlsk._util.limits import MAX_INPUT_SIZE
from tlsk.cli import main
from tlsk.images import decode as images
from tlsk.networks.backbone import file_sha256
from tlsk.networks.registry import BACKBONES, HubSpec
from tlsk.persistence.model_files import (
    MODEL_FORMAT,
    ModelFileError,
    load_model,
    metadata_path,
    save_model,
)
from tlsk.persistence.shared_networks import check_network
from tlsk.persistence.skops import EXPANSION_SLACK, MAX_EXPANSION, UntrustedTypesError
from tlsk.training.keras_classifier import _model_to_bytes

pytest.importorskip("skops")

CNN = {"input_size": 32, "filters": (2,), "dense_units": 4, "epochs": 1}
CNN |= {"augmentation": False, "validation_fraction": 0, "batch_size": 8}

# Files opened (the "open" audit event) while a test records them.
_OPENED, _RECORDING = [], []


def _audit(event, args):
    if _RECORDING and event == "open" and isinstance(args[0], str | bytes | Path):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # cannot be removed; it does nothing unless recording


@contextlib.contextmanager
def opened_files():
    """The paths this process opens within (Python's own opens)."""
    _OPENED.clear()
    _RECORDING.append(True)
    try:
        yield _OPENED
    finally:
        _RECORDING.clear()


def _share(model, path):
    """Write ``model`` as its author could: skops itself, and a true metadata file."""
    import skops.io

    skops.io.dump(model, path)
    record = {"format": MODEL_FORMAT, "model_sha256": file_sha256(path)}
    Path(metadata_path(path)).write_text(json.dumps(record))
    return path


@pytest.fixture(scope="module")
def fitted():
    """A fitted tiny extractor, a bottleneck pipeline on it, a tiny CNN, images."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.array(["a", "b"] * 3)
    extractor = tiny().fit()
    pipeline = make_pipeline(extractor, LogisticRegression(max_iter=200)).fit(X, y)
    cnn = SmallCNNClassifier(**CNN, random_state=0).fit(X, y)
    calibrated = CalibratedClassifierCV(pipeline, cv=2).fit(X, y)
    return {
        "extractor": extractor,
        "pipeline": pipeline,
        "calibrated": calibrated,
        "cnn": cnn,
        "X": X,
        "y": y,
    }


@pytest.fixture
def secret(tmp_path):
    """A file of this machine that no shared model may make tlsk open."""
    path = tmp_path / "secret.h5"
    path.write_bytes(b"not for the model's author")
    return path


# -- paths of this machine ---------------------------------------------------


def _with(extractor, **attributes):
    hostile = copy.deepcopy(extractor)
    for name, value in attributes.items():
        setattr(hostile, name, value)
    return hostile


def _config(extractor, **fields):
    return dataclasses.replace(extractor._backbone_config, **fields)


def _placements(extractor, fitted):
    """A hostile extractor at every depth a model can hold one."""
    pipeline = Pipeline([("features", extractor), ("lr", fitted["pipeline"][1])])
    # A file holds whatever attributes its author wrote, fitted ones included.
    search = GridSearchCV(LogisticRegression(), {"C": [1.0]})
    search.best_estimator_ = pipeline
    calibrated = copy.deepcopy(fitted["calibrated"])
    calibrated.calibrated_classifiers_[-1].estimator = pipeline
    return {
        "alone": extractor,
        "in a pipeline": pipeline,
        "in a calibrated classifier": CalibratedClassifierCV(pipeline),
        "in a calibrated classifier's fitted parts": calibrated,
        "in a search's best_estimator_": search,
    }


PLACES = [
    "alone",
    "in a pipeline",
    "in a calibrated classifier",
    "in a calibrated classifier's fitted parts",
    "in a search's best_estimator_",
]


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize(
    "hostile, kind",
    [
        (lambda e, s: _with(e, weights=str(s)), "weights file"),
        (lambda e, s: _with(e, _backbone_config=_config(e, weights=str(s))), "weights"),
        (lambda e, s: _with(e, backbone=str(s) + ".keras"), "model file"),
        (
            lambda e, s: _with(e, _backbone_config=_config(e, backbone=f"{s}.keras")),
            "model file",
        ),
        (lambda e, s: _with(e, cache_path_=str(s)), "feature cache"),
    ],
    ids=["weights", "fitted weights", "backbone", "fitted backbone", "fitted cache"],
)
def test_a_shared_model_naming_a_local_file_is_refused_unread(
    tmp_path, fitted, secret, hostile, kind, where
):
    model = _placements(hostile(fitted["extractor"], secret), fitted)[where]
    path = _share(model, tmp_path / "shared.skops")
    with opened_files() as opened, pytest.raises(ModelFileError) as error:
        load_model(path)
    assert re.search(rf"names a {kind}.* of this machine", str(error.value))
    assert "a shared model file never makes tlsk read or write" in str(error.value)
    assert str(secret) not in " ".join(opened)


def test_a_shared_fine_tuned_classifier_naming_its_weights_file_is_refused(
    tmp_path, secret
):
    model = KerasFineTuneClassifier(weights=str(secret), input_size=32)
    path = _share(make_pipeline(model), tmp_path / "shared.skops")
    with pytest.raises(ModelFileError, match=r"names a weights file .*secret\.h5"):
        load_model(path)


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda f, s: _with(f["extractor"], weights=str(s)), "weights file"),
        (lambda f, s: KerasFineTuneClassifier(weights=str(s)), "weights file"),
        (
            lambda f, s: Pipeline([("lr", LogisticRegression())], memory=str(s)),
            "cache folder",
        ),
    ],
    ids=["extractor weights", "fine-tune weights", "memory"],
)
def test_saving_a_model_that_names_a_local_file_as_skops_is_refused(
    tmp_path, fitted, secret, make, kind
):
    with pytest.raises(ModelFileError, match=rf"must name no {kind} of this machine"):
        save_model(make(fitted, secret), tmp_path / "m.skops")
    assert not (tmp_path / "m.skops").exists()


def test_a_nested_feature_cache_is_left_out_of_a_skops_model(tmp_path, fitted, secret):
    extractor = _with(fitted["extractor"], cache_path_=str(secret))
    model = _placements(extractor, fitted)["in a search's best_estimator_"]
    with pytest.warns(UserWarning, match=r"best_estimator_\.steps\[0\]\[1\]"):
        save_model(model, tmp_path / "m.skops")
    assert str(secret).encode() not in (tmp_path / "m.skops").read_bytes()
    assert model.best_estimator_[0].cache_path_ == str(secret)
    loaded = load_model(tmp_path / "m.skops")
    assert loaded.best_estimator_[0].cache_path_ is None


# -- sizes and states fit never makes ------------------------------------------


HOSTILE_STATES = {
    "input_size 20000": lambda e: _with(e, input_size=20000),
    "batch_size 10**6": lambda e: _with(e, batch_size=10**6),
    "n_jobs 100000": lambda e: _with(e, n_jobs=100000),
    "max_image_pixels None": lambda e: _with(e, max_image_pixels=None),
    "max_image_pixels 2**40": lambda e: _with(e, max_image_pixels=2**40),
    "fitted input size 20000": lambda e: _with(
        e, _backbone_config=_config(e, input_size=20000)
    ),
    "fingerprint's input size": lambda e: _with(
        e, fingerprint_={**e.fingerprint_, "input_size": 20000}
    ),
    "quantization naming a path": lambda e: _with(
        e, _quantization={"quantization_sha256": "../../../../etc/passwd"}
    ),
    "backbone configuration a dict": lambda e: _with(e, _backbone_config={}),
    "a classifier's n_jobs": None,
}


@pytest.mark.parametrize("case", list(HOSTILE_STATES))
def test_sizes_and_states_fit_never_makes_are_refused_from_a_shared_file(
    tmp_path, fitted, case
):
    make = HOSTILE_STATES[case]
    pipeline = fitted["pipeline"]
    if make is None:
        model = copy.deepcopy(pipeline).set_params(logisticregression__n_jobs=100000)
    else:
        model = Pipeline([("f", make(fitted["extractor"])), ("lr", pipeline[1])])
    path = _share(model, tmp_path / "shared.skops")
    with pytest.raises(ModelFileError, match=r"fit would not have made"):
        load_model(path)


def test_a_joblib_model_gets_the_same_parameter_checks(tmp_path, fitted):
    path = tmp_path / "own.joblib"
    joblib.dump(_with(fitted["extractor"], input_size=20000), path)
    record = {"format": MODEL_FORMAT, "model_sha256": file_sha256(path)}
    Path(metadata_path(path)).write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match=r"'input_size' .* \[32, 2048\]"):
        load_model(path)


def test_a_model_saved_before_a_parameter_existed_still_loads(tmp_path, fitted):
    # The checks of a loaded model must not refuse one's own older files.
    old = copy.copy(fitted["cnn"])
    old.__dict__ = {
        k: v
        for k, v in fitted["cnn"].__dict__.items()
        if k not in ("schedule", "tta", "precision_")
    }
    path = tmp_path / "old.joblib"
    save_model(old, path)
    model = load_model(path)
    assert (model.schedule, model.tta) == ("constant", None)
    assert (
        model.predict(fitted["X"]).tolist()
        == fitted["cnn"].predict(fitted["X"]).tolist()
    )


def test_an_attribute_hiding_a_method_is_refused(tmp_path, fitted):
    # A file sets attributes; one named as a method would replace it, the
    # checks included (numpy.float64 is a trusted type, and callable).
    hostile = _with(fitted["extractor"], _check_state=np.float64)
    path = _share(make_pipeline(hostile), tmp_path / "shared.skops")
    with pytest.raises(ModelFileError, match=r"'_check_state' hides a method"):
        load_model(path)


def test_n_features_out_must_be_the_networks_before_anything_is_allocated(fitted):
    hostile = _with(fitted["extractor"], n_features_out_=10**6)
    with pytest.raises(ValueError, match=r"n_features_out_ is 1000000 .* 512"):
        hostile.transform(fitted["X"][:1])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"classes_": np.array(["a", "b", "c"])},
            r"gives \[\(None, 2\)\]; expected .* 3 probabilities",
        ),
        ({"input_size": 64}, r"images of 64 x 64"),
        ({"precision_": "float64"}, r"precision_ must be"),
    ],
    ids=["classes", "input size", "precision"],
)
def test_a_keras_classifier_whose_network_is_not_its_own_is_refused(
    tmp_path, fitted, change, message
):
    hostile = _with(fitted["cnn"], **change)
    path = _share(hostile, tmp_path / "shared.skops")
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


# -- the Keras network inside ---------------------------------------------------


def _network_bytes(cnn, edit_config=None, edit_weights=None):
    """The .keras bytes of ``cnn``'s network, its config or weights edited."""
    with zipfile.ZipFile(io.BytesIO(_model_to_bytes(cnn.model_))) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    if edit_config is not None:
        config = json.loads(files["config.json"])
        edit_config(config)
        files["config.json"] = json.dumps(config).encode()
    if edit_weights is not None:
        files["model.weights.h5"] = edit_weights(files["model.weights.h5"])
    return _zip(files)


def _zip(files):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def _shared_cnn(folder, cnn, network):
    """``cnn`` shared as a .skops file whose network is the bytes ``network``."""
    path = _share(cnn, Path(folder) / "shared.skops")

    def swap(files):
        files[next(name for name in files if name.endswith(".bin"))] = network

    _rewrite(path, swap)
    return path


def _layer(config, class_name):
    layers = config["config"]["layers"]
    return next(layer for layer in layers if layer["class_name"] == class_name)


def test_a_network_that_would_allocate_without_bound_is_refused_unbuilt(
    tmp_path, fitted
):
    def huge(config):  # Dense layers of 8M units, 8M inputs: 160 MB in all
        _layer(config, "Dense")["config"]["units"] = 2**23
        predictions = config["config"]["layers"][-1]
        predictions["build_config"]["input_shape"] = [None, 2**23]

    path = _shared_cnn(tmp_path, fitted["cnn"], _network_bytes(fitted["cnn"], huge))
    with pytest.raises(ModelFileError, match=r"variables take \d+ bytes"):
        load_model(path)


def test_a_network_whose_layer_outputs_without_bound_is_refused_unbuilt(
    tmp_path, fitted
):
    def padded(config):  # no weights at all, 1.2 billion values per image
        layer = _layer(config, "MaxPooling2D")
        layer["class_name"] = "ZeroPadding2D"
        layer["config"] = {"name": layer["config"]["name"], "padding": 10000}
        layer.pop("build_config", None)

    network = _network_bytes(fitted["cnn"], padded)
    path = _shared_cnn(tmp_path, fitted["cnn"], network)
    with pytest.raises(ModelFileError, match=r"outputs \(None, 20032, 20032, 2\)"):
        load_model(path)


@pytest.mark.parametrize(
    "class_name, config",
    [
        ("StringLookup", lambda secret: {"vocabulary": str(secret)}),
        ("TFSMLayer", lambda secret: {"filepath": str(secret)}),
    ],
)
def test_a_network_naming_a_class_that_reads_files_is_refused(
    tmp_path, fitted, secret, class_name, config
):
    def reads(network):
        layer = _layer(network, "Dropout")
        layer["class_name"] = class_name
        layer["config"] = {"name": layer["config"]["name"], **config(secret)}

    path = _shared_cnn(tmp_path, fitted["cnn"], _network_bytes(fitted["cnn"], reads))
    with pytest.raises(ModelFileError, match=rf"keras.layers.{class_name}"):
        load_model(path)


def _external(secret):
    def store_elsewhere(data):
        out = io.BytesIO()
        with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
            for name in src:
                src.copy(src[name], dst, name)
            dst.attrs.update(src.attrs)
            names = []
            dst.visititems(lambda name, item: names.append(name))
            bias = next(name for name in names if name.endswith("vars/1"))
            shape, dtype = dst[bias].shape, dst[bias].dtype
            del dst[bias]  # and read from `secret` instead
            size = int(np.prod(shape)) * dtype.itemsize
            dst.create_dataset(
                bias, shape=shape, dtype=dtype, external=[(str(secret), 0, size)]
            )
        return out.getvalue()

    return store_elsewhere


def _linked(secret):
    def link_elsewhere(data):
        out = io.BytesIO()
        with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
            for name in src:
                src.copy(src[name], dst, name)
            dst.attrs.update(src.attrs)
            dst["layers/elsewhere"] = h5py.ExternalLink(str(secret), "/")
        return out.getvalue()

    return link_elsewhere


@pytest.mark.parametrize(
    "store, message",
    [(_external, r"not an array of numbers stored"), (_linked, r"ExternalLink")],
    ids=["external storage", "external link"],
)
def test_a_weights_file_stored_outside_itself_is_refused(
    tmp_path, fitted, secret, store, message
):
    secret.write_bytes(bytes(4096))
    network = _network_bytes(fitted["cnn"], edit_weights=store(secret))
    path = _shared_cnn(tmp_path, fitted["cnn"], network)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_network_whose_weights_expand_a_thousandfold_is_refused(tmp_path, fitted):
    units = 2**21  # Dense layers of 2M units: 48 MB of weights, 144 MB with Adam

    def wider(config):
        _layer(config, "Dense")["config"]["units"] = units
        config["config"]["layers"][-1]["build_config"]["input_shape"] = [None, units]

    def compressed(data):  # zeros, gzip: 144 MB in 200 kB
        out = io.BytesIO()
        with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
            for name in src:
                src.copy(src[name], dst, name)
            dst.attrs.update(src.attrs)
            # Keras names the datasets by class (the second Dense is dense_1),
            # and Adam keeps two of each in optimizer/vars.
            for name, shape in [
                ("layers/dense/vars/0", (2, units)),
                ("layers/dense/vars/1", (units,)),
                ("layers/dense_1/vars/0", (units, 2)),
                *[(f"optimizer/vars/{i}", (2, units)) for i in (6, 7)],
                *[(f"optimizer/vars/{i}", (units,)) for i in (8, 9)],
                *[(f"optimizer/vars/{i}", (units, 2)) for i in (10, 11)],
            ]:
                del dst[name]
                dst.create_dataset(name, shape, "<f4", compression="gzip", fillvalue=0)
        return out.getvalue()

    network = _network_bytes(fitted["cnn"], wider, compressed)
    path = _shared_cnn(tmp_path, fitted["cnn"], network)
    with pytest.raises(ModelFileError, match=r"declares \d+ bytes of weights"):
        load_model(path)


def _finetune_networks():
    """Fine-tuned VGG16 networks in each pooling, optimizer kind and schedule."""
    from tlsk.training.optimizers import make_optimizer

    for pooling, optimizer, schedule, scales, precision in [
        ("avg", "adam", "one_cycle", {"x": 0.5}, "float32"),
        ("max", "sgd", "cosine", None, "bfloat16"),
        ("flatten", "rmsprop", "constant", {"x": 0.5}, "float32"),
    ]:
        model = KerasFineTuneClassifier(
            weights=None, input_size=32, pooling=pooling, dense_units=(4,)
        )
        network = model._build_model(2, 0, precision)
        # The config names the optimizer and its schedule once compiled.
        network.compile(
            optimizer=make_optimizer(
                optimizer, 1e-3, schedule=schedule, steps=4, rate_scales=scales
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        yield network


def test_every_network_tlsk_builds_passes_the_shared_network_check(fitted):
    augmented = SmallCNNClassifier(**{**CNN, "augmentation": True})
    networks = [
        fitted["cnn"].model_,
        augmented._build_model(2, 0, "bfloat16"),
        *_finetune_networks(),
    ]
    for network in networks:
        check_network(_model_to_bytes(network))  # raises for any it refuses
    assert len(networks) == 5


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_registry_backbone_passes_the_shared_network_check(backbone):
    spec = BACKBONES[backbone]
    if isinstance(spec, HubSpec):  # a size its patches tile; CLIP's, SigLIP's own
        size = 2 * spec.patch_size if spec.resizable else None
    else:
        size = max(32, spec.min_size)
    model = KerasFineTuneClassifier(weights=None, backbone=backbone, input_size=size)
    check_network(_model_to_bytes(model._build_model(2, 0, "bfloat16")))


# -- sizes of the file itself -------------------------------------------------


def _rewrite(path, edit):
    """Edit the members of the zip ``path`` (``edit(files)``), metadata kept true."""
    with zipfile.ZipFile(path) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    edit(files)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    record = json.loads(Path(metadata_path(path)).read_text())
    record["model_sha256"] = file_sha256(path)
    Path(metadata_path(path)).write_text(json.dumps(record))


def _npy(shape, dtype="<f8", data=b""):
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _biggest_array(files):
    return max((n for n in files if n.endswith(".npy")), key=lambda n: len(files[n]))


def _zeros_array(files):  # 200 MB of zeros, a few hundred kB deflated
    files[_biggest_array(files)] = _npy((25_000_000,), data=bytes(200_000_000))


def _lying_header(files):  # 80 GB declared, 1 kB held
    files[_biggest_array(files)] = _npy((10**10,), data=bytes(1024))


def _keras_bomb(files):  # the network's config padded with 100 MB of spaces
    name = next(n for n in files if n.endswith(".bin"))
    with zipfile.ZipFile(io.BytesIO(files[name])) as archive:
        inner = {n: archive.read(n) for n in archive.namelist()}
    inner["config.json"] += b" " * 100_000_000
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for n, content in inner.items():
            archive.writestr(n, content)
    files[name] = out.getvalue()


@pytest.mark.parametrize(
    "model, edit, message",
    [
        ("pipeline", _zeros_array, r"would expand from \d+ bytes to \d+"),
        ("pipeline", _lying_header, r"declares 80000000000 bytes and holds \d+"),
        ("cnn", _keras_bomb, r"Keras network of \d+ bytes would expand"),
    ],
    ids=["zip bomb", "array header", "zip bomb in the network"],
)
def test_a_skops_file_that_expands_beyond_its_size_is_refused(
    tmp_path, fitted, model, edit, message
):
    path = _share(fitted[model], tmp_path / "shared.skops")
    _rewrite(path, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


# -- the loader, fuzzed ---------------------------------------------------------

FUZZ = settings(
    max_examples=30,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
FUZZ_SLOW = settings(FUZZ, max_examples=400)

VALUES = st.one_of(
    st.sampled_from([10**12, 2**63, -1, -(10**9), 0, 20000, 10**6]),
    st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.sampled_from(["/etc/passwd", "../../secret.h5", "x.keras", "/tmp/m.keras"]),
    st.sampled_from([None, True, [], {}, [1, 2], "imagenet", "int8", ""]),
    st.integers(-(2**70), 2**70),
)
TYPES = st.sampled_from(
    [
        ("builtins", "eval"),
        ("os", "system"),
        ("sklearn.linear_model", "LinearRegression"),
        ("sklearn.pipeline", "Pipeline"),
        ("tlsk.features.extractor", "ImageFeatureExtractor"),
        ("tlsk.training.scratch", "SmallCNNClassifier"),
        ("tlsk.networks.backbone", "BackboneConfig"),
        ("numpy", "ndarray"),
        ("numpy", "float64"),
        ("builtins", "dict"),
    ]
)
LOADERS = st.sampled_from(
    ["ObjectNode", "DictNode", "JsonNode", "NdArrayNode", "BytesNode", "ListNode"]
    + ["TypeNode", "FunctionNode", "MethodNode", "CachedNode"]
)


def _nodes(schema):
    """Every dict of the schema (depth first, in a stable order)."""
    found, stack = [], [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return found


@dataclasses.dataclass
class Mutation:
    """One change to the members of a .skops file (``files``: name -> bytes)."""

    kind: str
    pick: int
    value: object
    named: tuple
    loader: str
    flips: list

    def __call__(self, files):
        if self.kind == "bytes":
            data = bytearray(files.pop("__file__"))
            for where, byte in self.flips:
                data[where % len(data)] = byte
            files["__file__"] = bytes(data)
            return
        schema = json.loads(files["schema.json"])
        nodes, pick = _nodes(schema), self.pick
        if self.kind == "value":
            leaves = [n for n in nodes if n.get("__loader__") == "JsonNode"]
            leaves[pick % len(leaves)]["content"] = json.dumps(self.value)
        elif self.kind == "type":
            typed = [n for n in nodes if "__class__" in n]
            node = typed[pick % len(typed)]
            node["__module__"], node["__class__"] = self.named
        elif self.kind == "loader":
            typed = [n for n in nodes if "__loader__" in n]
            typed[pick % len(typed)]["__loader__"] = self.loader
        elif self.kind == "delete":
            holders = [n for n in nodes if n.get("__loader__") == "DictNode"]
            content = holders[pick % len(holders)]["content"]
            if content:
                del content[sorted(content)[pick % len(content)]]
        else:  # "npy": an array header declaring another shape
            name = sorted(n for n in files if n.endswith(".npy"))[0]
            files[name] = _npy((pick, pick % 97 + 1), data=files[name][128:])
        files["schema.json"] = json.dumps(schema).encode()


@st.composite
def mutations(draw):
    flips = st.tuples(st.integers(0, 10**9), st.integers(0, 255))
    return Mutation(
        kind=draw(
            st.sampled_from(["value", "type", "loader", "delete", "npy"] + ["bytes"])
        ),
        pick=draw(st.integers(0, 10**6)),
        value=draw(VALUES),
        named=draw(TYPES),
        loader=draw(LOADERS),
        flips=draw(st.lists(flips, min_size=1, max_size=8)),
    )


# What loading may open besides the model pair: Python's modules (an error
# message imports its formatter) and the temporary copy of a network that
# tlsk writes for Keras to read.
_MODULES = tuple(
    sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib")
) + (os.path.dirname(os.path.dirname(tlsk.__file__)),)
_TEMPORARY = re.escape(tempfile.gettempdir()) + r"/tmp[^/]+(/model\.keras)?"


def _tlsk_or_python_own(path):
    if re.fullmatch(_TEMPORARY, path):
        return True
    module = path.endswith((".py", ".pyc", ".so")) and ".." not in path
    return module and path.startswith(_MODULES)


def _fuzz_once(source, mutate, folder):
    """Load ``source`` mutated; check the outcome, the opens and the memory."""
    path = Path(folder) / "fuzzed.skops"
    raw = source.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    files["__file__"] = raw
    mutate(files)
    if mutate.kind == "bytes":
        path.write_bytes(files["__file__"])
    else:
        del files["__file__"]
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
    record = {"format": MODEL_FORMAT, "model_sha256": file_sha256(path)}
    Path(metadata_path(path)).write_text(json.dumps(record))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with opened_files() as opened:
            try:
                load_model(path)
                event(f"{mutate.kind}: loaded")
            except (ModelFileError, UntrustedTypesError) as err:
                # Documented: refused, with a message naming the file.
                event(f"{mutate.kind}: {type(err).__name__}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    allowed = {str(path), metadata_path(path), "/proc/meminfo"}
    strays = [p for p in opened if p not in allowed and not _tlsk_or_python_own(p)]
    assert not strays, strays
    assert peak <= MAX_EXPANSION * size + EXPANSION_SLACK, peak


@pytest.fixture(scope="module")
def sources(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return {
        name: _share(fitted[name], folder / f"{name}.skops")
        for name in ("pipeline", "cnn")
    }


@FUZZ
@given(mutate=mutations())
def test_any_mutation_of_a_shared_pipeline_loads_or_is_refused(
    sources, tmp_path, mutate
):
    _fuzz_once(sources["pipeline"], mutate, tmp_path)


@settings(FUZZ, max_examples=8)
@given(mutate=mutations())
def test_any_mutation_of_a_shared_keras_classifier_loads_or_is_refused(
    sources, tmp_path, mutate
):
    _fuzz_once(sources["cnn"], mutate, tmp_path)


@pytest.mark.slow
@FUZZ_SLOW
@given(mutate=mutations())
def test_many_mutations_of_a_shared_pipeline_load_or_are_refused(
    sources, tmp_path, mutate
):
    _fuzz_once(sources["pipeline"], mutate, tmp_path)


@pytest.mark.slow
@settings(FUZZ, max_examples=100)
@given(mutate=mutations())
def test_many_mutations_of_a_shared_keras_classifier_load_or_are_refused(
    sources, tmp_path, mutate
):
    _fuzz_once(sources["cnn"], mutate, tmp_path)


# -- item 12: sizes from the command line and Python --------------------------


@pytest.mark.parametrize("command", ["extract", "train"])
def test_an_input_size_beyond_the_bound_is_refused_on_the_command_line(
    tmp_path, capsys, command
):
    out = ["--cache", str(tmp_path / "f.h5")] if command == "extract" else []
    out = out or ["--out", str(tmp_path / "m.joblib")]
    argv = [command, str(tmp_path), "--input-size", "20000", "--weights", "none"]
    with pytest.raises(SystemExit) as exit_:
        main(argv + out)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert (
        "argument --input-size: expected an integer from 1 to 2048; got '20000'" in err
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageFeatureExtractor(weights=None, input_size=20000),
        lambda: tiny(input_size=20000),
        lambda: SmallCNNClassifier(**{**CNN, "input_size": 20000}),
        lambda: KerasFineTuneClassifier(weights=None, input_size=20000),
    ],
    ids=["extractor", "vgg16 extractor", "scratch", "fine-tune"],
)
def test_an_input_size_beyond_the_bound_is_refused_before_any_work(make):
    # One image of one class: any later check would name the data instead.
    one = (np.zeros((1, 32, 32, 3), np.uint8), ["a"])
    model = make()
    with pytest.raises(ValueError, match=rf"'input_size' .*{MAX_INPUT_SIZE}\]"):
        if hasattr(model, "predict"):
            model.fit(*one)
        else:
            model.fit(one[0])


# -- zero-sized images ----------------------------------------------------------

ZERO = {
    "batch": np.zeros((1, 0, 40, 3), np.uint8),
    "gray batch": np.zeros((2, 5, 0), np.float32),
    "list": [np.zeros((8, 8, 3), np.uint8), np.zeros((0, 5), np.uint8)],
}


@pytest.mark.parametrize("X", list(ZERO))
@pytest.mark.parametrize(
    "entry",
    ["transform", "fit", "predict", "image_inputs", "load_batch"],
)
def test_a_zero_sized_image_is_an_error_naming_it(fitted, X, entry):
    X = ZERO[X]
    label = "X[1]" if isinstance(X, list) else "X[0]"
    calls = {
        "transform": lambda: fitted["extractor"].transform(X),
        "fit": lambda: SmallCNNClassifier(**CNN).fit(X, ["a", "b"][: len(X)]),
        "predict": lambda: fitted["cnn"].predict(X),
        "image_inputs": lambda: images.image_inputs(X),
        "load_batch": lambda: images.load_batch(images.image_inputs(X), 8),
    }
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(label)} as an image of at "
        r"least 1 x 1 pixels; received an array of shape \(",
    ):
        calls[entry]()


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3)])
def test_resize_image_refuses_a_zero_sized_image(shape):
    with pytest.raises(ValueError, match=r"at least 1 x 1 pixels; received shape "):
        images.resize_image(np.zeros(shape, np.uint8), 8)


def _png(width, height):
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\0" * 3 * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def test_a_zero_sized_image_file_is_an_error_naming_it(tmp_path, fitted):
    path = tmp_path / "empty.png"
    path.write_bytes(_png(0, 5))
    with pytest.raises(images.ImageError, match=r"cannot decode '.*empty\.png'"):
        fitted["extractor"].transform([str(path)])


# -- item 14c ---------------------------------------------------------------------


@pytest.mark.parametrize("recorded", ["missing", None, 42])
def test_metadata_without_model_sha256_pairs_with_no_model(tmp_path, recorded):
    path = tmp_path / "m.joblib"
    save_model(LogisticRegression().fit([[0], [1]], [0, 1]), path)
    record = json.loads(Path(metadata_path(path)).read_text())
    if recorded == "missing":
        del record["model_sha256"]
    else:
        record["model_sha256"] = recorded
    Path(metadata_path(path)).write_text(json.dumps(record))
    with pytest.raises(ModelFileError) as error:
        load_model(path)
    message = str(error.value)
    assert "records no model_sha256" in message
    assert str(path) in message and metadata_path(path) in message
