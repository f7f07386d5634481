"""The OpenVINO engine and int8 quantization (tlsk.networks.openvino), tiny models."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tlsk import ImageFeatureExtractor, VGG16FeatureExtractor, clear_caches
from tlsk.networks import openvino as _openvino

SIZE = 32


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), np.uint8)


def _cosines(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _extractor(**params):
    return VGG16FeatureExtractor(weights=None, input_size=SIZE, **params)


@pytest.fixture(autouse=True, scope="module")
def _private_model_store(tmp_path_factory):
    """The quantized models of these tests go to a Keras home of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        yield


def test_keras_engine_keeps_the_fingerprint_of_earlier_versions():
    default = _extractor(precision="float32").fit()
    keras = _extractor(precision="float32", engine="keras").fit()
    assert keras.fingerprint_ == default.fingerprint_
    assert "engine" not in keras.fingerprint_
    assert default.engine_ == "keras"


def test_int8_on_the_keras_engine_is_refused():
    with pytest.raises(ValueError, match="engine='openvino' or 'auto'"):
        _extractor(precision="int8", engine="keras").fit(_images(32))


def test_missing_openvino_says_how_to_install(monkeypatch):
    # None in sys.modules makes the import fail as if the extra were absent.
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'tlsk\[openvino\]'"):
        _extractor(precision="float32", engine="openvino").fit()
    assert _extractor(precision="float32").fit().engine_ == "keras"


def test_missing_nncf_says_how_to_install(monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"int8.*tlsk\[openvino\]"):
        _extractor(precision="int8").fit(_images(32))


def test_int8_needs_images_to_fit():
    pytest.importorskip("nncf")
    with pytest.raises(ValueError, match="call fit\\(X\\) with at least 32"):
        _extractor(precision="int8").fit()
    with pytest.raises(ValueError, match="at least 32 images.*received 8"):
        _extractor(precision="int8").fit(_images(8))


def test_openvino_float32_agrees_with_keras_and_has_its_own_fingerprint():
    pytest.importorskip("openvino")
    images = _images(6)
    keras = _extractor(precision="float32")
    openvino = _extractor(precision="float32", engine="openvino")
    np.testing.assert_allclose(
        openvino.fit_transform(images), keras.fit_transform(images), atol=1e-5
    )
    assert openvino.engine_ == "openvino"
    assert openvino.fingerprint_["engine"] == "openvino"
    assert openvino.fingerprint_ != keras.fingerprint_


@pytest.mark.slow  # a second network to build and convert: ~10 s
def test_openvino_runs_any_registered_backbone():
    pytest.importorskip("openvino")
    images = _images(3)
    params = dict(backbone="resnet50", weights=None, input_size=SIZE)
    keras = ImageFeatureExtractor(precision="float32", **params)
    openvino = ImageFeatureExtractor(precision="float32", engine="openvino", **params)
    cosines = _cosines(openvino.fit_transform(images), keras.fit_transform(images))
    assert cosines.min() > 0.9999


@pytest.fixture(scope="module")
def int8_fit():
    """One int8 fit on 40 images, and its vectors (module scope: NNCF takes time)."""
    pytest.importorskip("nncf")
    images = _images(40)
    extractor = _extractor(precision="int8", calibration_size=32).fit(images)
    return extractor, images, extractor.transform(images)


def test_int8_agrees_with_float32(int8_fit):
    extractor, images, int8 = int8_fit
    float32 = _extractor(precision="float32").fit().transform(images)
    assert extractor.engine_ == "openvino"
    assert extractor.precision_ == "int8"
    assert _cosines(int8, float32).mean() > 0.99


def test_int8_calibration_is_deterministic(int8_fit, tmp_path, monkeypatch, capsys):
    extractor, images, int8 = int8_fit
    # An empty model store and no compiled engine: quantized again from scratch.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    clear_caches()
    capsys.readouterr()
    again = _extractor(precision="int8", calibration_size=32).fit(images)
    assert "Statistics collection" not in capsys.readouterr().out  # verbose=0
    assert again.calibration_keys_ == extractor.calibration_keys_
    assert again.fingerprint_ == extractor.fingerprint_
    np.testing.assert_array_equal(again.transform(images), int8)


def test_int8_fingerprint_changes_with_the_calibration_set(int8_fit):
    extractor, images, _ = int8_fit
    other = _extractor(precision="int8", calibration_size=32, random_state=1)
    other.fit(images)
    assert other.calibration_keys_ != extractor.calibration_keys_
    assert (
        other.fingerprint_["quantization_sha256"]
        != extractor.fingerprint_["quantization_sha256"]
    )
    assert other.fingerprint_ != extractor.fingerprint_


def test_int8_pickle_is_small_and_rebuilds_the_model_in_a_fresh_process(
    int8_fit, tmp_path
):
    extractor, images, int8 = int8_fit
    data = pickle.dumps(extractor)
    assert len(data) < 20_000
    (tmp_path / "extractor.pkl").write_bytes(data)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import pickle, numpy as np
        extractor = pickle.loads(open({str(tmp_path / "extractor.pkl")!r}, "rb").read())
        images = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, extractor.transform(images))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), int8)


def test_int8_model_missing_from_the_store_is_named(int8_fit, tmp_path, monkeypatch):
    extractor, images, _ = int8_fit
    clear_caches()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(_openvino.QuantizedModelMissingError, match="fit the extractor"):
        pickle.loads(pickle.dumps(extractor)).transform(images[:2])


def test_cli_extract_int8_files_vectors_under_an_int8_fingerprint(tmp_path):
    pytest.importorskip("nncf")
    from PIL import Image

    from tlsk.cache import FeatureCache
    from tlsk.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(_images(32, seed=3)):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    cache = tmp_path / "features.h5"
    argv = ["extract", str(folder), "--cache", str(cache), "--quiet"]
    argv += ["--weights", "none", "--input-size", str(SIZE), "--precision", "int8"]
    assert main(argv) == 0
    (namespace,) = FeatureCache(str(cache)).info().namespaces
    assert namespace.fingerprint["precision"] == "int8"
    assert namespace.fingerprint["engine"] == "openvino"
    assert namespace.entries == 32


def test_cli_training_on_keras_refuses_int8_and_openvino():
    import argparse

    from tlsk.cli import CommandError
    from tlsk.cli._options import check_keras_training

    args = argparse.Namespace(method="finetune", precision="int8", engine="auto")
    with pytest.raises(CommandError, match="--method bottleneck"):
        check_keras_training(args)
    args = argparse.Namespace(method="scratch", precision="auto", engine="openvino")
    with pytest.raises(CommandError, match="trains on Keras"):
        check_keras_training(args)


@pytest.mark.slow
def test_dask_workers_run_the_int8_model_fitted_here(int8_fit, tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client

    from tlsk.features.distributed import featurize, local_cluster

    extractor, images, int8 = int8_fit
    sharded = extractor.with_cache_file(tmp_path / "features.h5")
    # Workers inherit KERAS_HOME, so they read the model quantized here.
    with local_cluster(2) as cluster, Client(cluster) as client:
        features = featurize(list(images), sharded, client)
    np.testing.assert_allclose(features, int8, rtol=1e-5, atol=1e-6)


def test_openvino_engine_averages_tta_views_like_keras():
    pytest.importorskip("openvino")
    images = _images(3, seed=5)
    keras = _extractor(precision="float32", tta="flip").fit_transform(images)
    openvino = _extractor(precision="float32", tta="flip", engine="openvino")
    np.testing.assert_allclose(openvino.fit_transform(images), keras, atol=1e-5)
