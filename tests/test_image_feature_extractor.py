"""ImageFeatureExtractor: old caches, namespaces per backbone, your own network."""

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from tests._datasets import coloured_images
from tlsk import (
    FeatureCache,
    ImageFeatureExtractor,
    UndecodableImageWarning,
    VGG16FeatureExtractor,
)
from tlsk.cache import namespace_id
from tlsk.images.decode import image_inputs
from tlsk.networks.preprocessing import preprocess

FIXTURE = Path(__file__).parent / "fixtures" / "vgg16_cache_v0"


# -- caches written before there were backbones -------------------------------


@pytest.fixture
def old_cache(tmp_path):
    """A copy of the cache tlsk wrote before backbones, its images and records."""
    copy = tmp_path / "vgg16_cache_v0"
    shutil.copytree(FIXTURE, copy)
    records = json.loads((copy / "fingerprints.json").read_text())
    images = sorted(str(path) for path in (copy / "images").iterdir())
    return copy / "cache.h5", images, records


@pytest.mark.parametrize("make", ["VGG16FeatureExtractor", "ImageFeatureExtractor"])
def test_a_cache_written_before_backbones_keeps_hitting(
    old_cache, count_predictions, make
):
    cache, images, records = old_cache
    for record in records:
        params = {**record["params"], "cache": str(cache)}
        if make == "ImageFeatureExtractor":
            params["backbone"] = "vgg16"
            extractor = ImageFeatureExtractor(**params).fit()
        else:
            extractor = VGG16FeatureExtractor(**params).fit()
        assert extractor.fingerprint_ == record["fingerprint"]
        assert namespace_id(extractor.fingerprint_) == record["namespace"]
        features = extractor.transform(images)
        assert count_predictions["images"] == 0, "every vector came from the cache"
        found, stored = FeatureCache(cache).lookup(
            record["fingerprint"],
            [item.content_key() for item in image_inputs(images)],
            extractor.n_features_out_,
        )
        assert found.all()
        np.testing.assert_array_equal(features, stored)


def test_todays_vgg16_computes_the_vectors_the_old_cache_holds(old_cache):
    cache, images, records = old_cache
    for record in records:
        cached = VGG16FeatureExtractor(**record["params"], cache=str(cache)).fit()
        fresh = VGG16FeatureExtractor(**record["params"]).fit()
        computed, stored = fresh.transform(images), cached.transform(images)
        if record["params"]["precision"] == "float32":
            np.testing.assert_allclose(computed, stored, rtol=1e-6, atol=1e-6)
        else:
            # bfloat16 kernels round differently from one CPU to another (AMX
            # against AVX-512 BF16): the same vectors up to that rounding.
            cosine = np.sum(computed * stored, axis=1) / (
                np.linalg.norm(computed, axis=1) * np.linalg.norm(stored, axis=1)
            )
            assert cosine.min() > 0.999, cosine
            np.testing.assert_allclose(computed, stored, rtol=0.05, atol=2e-3)


def test_vgg16_feature_extractor_keeps_its_parameters_and_defaults():
    params = VGG16FeatureExtractor().get_params()
    assert "backbone" not in params and "preprocessing" not in params
    assert params["layer"] == "block5_pool" and params["input_size"] == 224
    with pytest.raises(ValueError, match="Invalid parameter 'backbone'"):
        VGG16FeatureExtractor().set_params(backbone="resnet50")


# -- one cache, many backbones ----------------------------------------------


def tiny(backbone, **params):
    return ImageFeatureExtractor(
        backbone=backbone,
        **{"weights": None, "input_size": 32, "precision": "float32", **params},
    )


def test_each_backbone_layer_and_preprocessing_has_its_own_namespace(tmp_path):
    images, _ = coloured_images(2, size=32)
    cache = str(tmp_path / "features.h5")
    extractors = [
        tiny("vgg16", cache=cache),
        tiny("mobilenet_v3_large", cache=cache),
        tiny("mobilenet_v3_large", cache=cache, layer="expanded_conv_11_add"),
        tiny("mobilenet_v3_large", cache=cache, preprocessing="tf"),
    ]
    vectors = [extractor.fit().transform(images) for extractor in extractors]
    namespaces = FeatureCache(cache).info().namespaces
    assert len(namespaces) == 4
    assert sorted(ns.dim for ns in namespaces) == [112, 512, 960, 960]
    assert not np.allclose(vectors[1], vectors[3], rtol=1e-3, atol=0), "preprocessing"
    again = tiny("mobilenet_v3_large", cache=cache).fit()
    np.testing.assert_array_equal(again.transform(images), vectors[1])


def test_grid_search_over_the_backbone_in_a_pipeline(tmp_path, count_predictions):
    images, labels = coloured_images(4, size=32)
    cache = str(tmp_path / "features.h5")
    pipeline = Pipeline(
        [
            ("features", tiny("vgg16", cache=cache)),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    )
    grid = {"features__backbone": ["vgg16", "efficientnet_b0"]}
    search = GridSearchCV(pipeline, grid, cv=2).fit(images, labels)
    assert search.best_params_["features__backbone"] in grid["features__backbone"]
    namespaces = FeatureCache(cache).info().namespaces
    assert sorted(ns.fingerprint["model"] for ns in namespaces) == [
        "efficientnet_b0",
        "vgg16",
    ]
    # Each image went through each network once, whatever the folds.
    assert count_predictions["images"] == 2 * len(images)


def test_undecodable_images_warn_with_their_own_class(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.warns(UndecodableImageWarning, match="bad.jpg"):
        rows = tiny("vgg16", on_error="nan").fit().transform([str(bad)])
    assert np.isnan(rows).all()


def test_with_cache_file_keeps_the_fitted_namespace(tmp_path):
    extractor = tiny("vgg16", cache=str(tmp_path / "a.h5")).fit()
    other = extractor.with_cache_file(str(tmp_path / "b.h5"))
    assert other.fingerprint_ == extractor.fingerprint_
    assert other.cache_path_ == str(tmp_path / "b.h5")
    assert extractor.cache_path_ == str(tmp_path / "a.h5")


# -- your own network ---------------------------------------------------------


def small_network(path, input_shape=(None, None, 3), seed=0):
    """A small functional network saved as ``.keras``; returns the model."""
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs, name="mine")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            layer.set_weights(
                [rng.normal(0, 0.3, w.shape) for w in layer.get_weights()]
            )
    model.save(path)
    return model


@pytest.fixture
def my_network(tmp_path):
    path = tmp_path / "mine.keras"
    return path, small_network(path)


def test_a_keras_file_gives_its_layers_vectors(my_network):
    import keras

    path, model = my_network
    images, _ = coloured_images(2, size=40)
    extractor = ImageFeatureExtractor(
        backbone=str(path),
        layer="conv2",
        preprocessing="tf",
        input_size=40,
        precision="float32",
    ).fit()
    cut = keras.Model(model.input, model.get_layer("conv2").output)
    expected = cut.predict(preprocess(images, "tf"), verbose=0).mean(axis=(1, 2))
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(extractor.transform(images), expected, rtol=1e-5)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert extractor.fingerprint_["model"] == "keras-file"
    assert extractor.fingerprint_["model_sha256"] == sha
    assert extractor.n_features_out_ == 16
    assert extractor.get_feature_names_out()[0] == "mine_conv2_avg0"


def test_a_keras_files_default_layer_is_its_last(my_network):
    path, _ = my_network
    extractor = ImageFeatureExtractor(
        backbone=str(path), preprocessing="none", pooling="flatten", input_size=32
    ).fit()
    assert extractor.layer_ == "logits" and extractor.n_features_out_ == 4


def test_a_vector_layer_needs_flatten(my_network):
    path, _ = my_network
    with pytest.raises(ValueError, match=r"gives vectors .* use pooling='flatten'"):
        ImageFeatureExtractor(backbone=str(path), preprocessing="none").fit()


def test_a_keras_file_needs_its_preprocessing_named(my_network):
    path, _ = my_network
    with pytest.raises(ValueError, match=r"preprocessing must be given .*'tf'"):
        ImageFeatureExtractor(backbone=str(path)).fit()


def test_an_unknown_layer_of_a_keras_file_lists_its_layers(my_network):
    path, _ = my_network
    with pytest.raises(ValueError, match=r"its layers are \[.*'conv1'"):
        ImageFeatureExtractor(
            backbone=str(path), layer="conv9", preprocessing="tf"
        ).fit()


def test_a_keras_file_with_a_fixed_input_size_keeps_it(tmp_path):
    path = tmp_path / "fixed.keras"
    small_network(path, input_shape=(48, 48, 3))
    extractor = ImageFeatureExtractor(
        backbone=str(path), layer="conv2", preprocessing="tf"
    ).fit()
    assert extractor.input_size_ == 48
    with pytest.raises(
        ValueError, match=r"takes 48 x 48 images; received input_size=32"
    ):
        ImageFeatureExtractor(
            backbone=str(path), layer="conv2", preprocessing="tf", input_size=32
        ).fit()


def test_a_keras_file_that_runs_code_is_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(
        ValueError, match=r"cannot load the Keras model file .*safe_mode"
    ):
        ImageFeatureExtractor(backbone=str(path), preprocessing="none").fit()


def test_a_replaced_keras_file_needs_a_new_fit(my_network, tmp_path):
    path, _ = my_network
    images, _ = coloured_images(1, size=32)
    extractor = ImageFeatureExtractor(
        backbone=str(path), layer="conv2", preprocessing="tf", input_size=32
    ).fit()
    extractor.transform(images)
    small_network(path, seed=1)
    with pytest.raises(ValueError, match=r"the model file .* changed since"):
        extractor.transform(images)


def test_a_keras_file_in_bfloat16_agrees_with_float32(my_network):
    path, _ = my_network
    images, _ = coloured_images(2, size=32)
    vectors = {
        precision: ImageFeatureExtractor(
            backbone=str(path),
            layer="conv2",
            preprocessing="tf",
            input_size=32,
            precision=precision,
        )
        .fit()
        .transform(images)
        for precision in ("float32", "bfloat16")
    }
    a, b = vectors["float32"], vectors["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.999


def test_a_fitted_extractor_of_a_keras_file_pickles_small(my_network):
    path, _ = my_network
    images, _ = coloured_images(1, size=32)
    extractor = ImageFeatureExtractor(
        backbone=str(path), layer="conv2", preprocessing="tf", input_size=32
    ).fit()
    data = pickle.dumps(extractor)
    assert len(data) < 10_000
    np.testing.assert_array_equal(
        pickle.loads(data).transform(images), extractor.transform(images)
    )


@pytest.mark.parametrize(
    "cls, expected",
    [
        (ImageFeatureExtractor, r"\w+Extractor\(backbone='resnet50', \.\.\.\)"),
        (VGG16FeatureExtractor, r"\w+Extractor\(weights='resnet50', \.\.\.\)"),
    ],
)
def test_a_positional_argument_is_a_type_error_naming_the_keyword(cls, expected):
    with pytest.raises(TypeError, match="takes keyword arguments only: " + expected):
        cls("resnet50")
