"""tlsk.networks.imagenet: a backbone's own ImageNet head (VGG16's here), offline.

The full VGG16 (138M parameters, 2 GB of memory to build and save) runs only
in the slow test; the others stand in a tiny model with the same 224 px input
and 1000-way softmax, so that decoding, top-k and bad files are tested fast.
"""

import dataclasses
import hashlib
import json
import time

import numpy as np
import pytest
from PIL import Image

import tlsk.networks.imagenet as inet
from tests._image_files import random_rgb
from tests._weights import pin_url, pin_weights, write_legacy_h5_weights
from tlsk import clear_caches
from tlsk.images.decode import ImageError, resize_image
from tlsk.networks.backbone import WeightsMismatchError, WeightsUnavailableError
from tlsk.networks.preprocessing import preprocess_vgg16
from tlsk.networks.registry import get_spec

INPUT_SIZE = get_spec("vgg16").native_size
WEIGHTS_FILE = get_spec("vgg16").imagenet_top.name


@pytest.fixture(autouse=True)
def _forget_models():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    # These tests download from file:// or refused loopback URLs only.
    monkeypatch.delenv("TLSK_NO_DOWNLOAD", raising=False)
    return tmp_path / "keras_home"


def _class_index():
    return {str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}


@pytest.fixture
def class_index(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(_class_index()))
    return path


def _tiny_head(seed=0):
    """224 px in, 1000-way softmax out, as the full VGG16; a few kilobytes."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((INPUT_SIZE, INPUT_SIZE, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(inet.N_CLASSES, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(seed)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights(
        [rng.normal(0, 0.05, kernel.shape), rng.normal(0, 1, bias.shape)]
    )
    return model


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A weights file of the tiny head; the builder reads it and counts builds."""
    path = tmp_path / "tiny.weights.h5"
    _tiny_head(seed=0).save_weights(path)
    builds = []

    def build(spec, weights, imagenet):
        builds.append(weights)
        model = _tiny_head(seed=1)
        model.load_weights(weights)
        return model

    monkeypatch.setattr(inet, "_build_model", build)
    return path, builds


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, (height, width) in enumerate([(50, 40), (224, 224), (31, 300)]):
        path = tmp_path / f"image {i}.png"
        Image.fromarray(random_rgb(height, width, seed=i)).save(path)
        paths.append(str(path))
    return paths


def _expected_probabilities(paths):
    batch = np.stack(
        [resize_image(np.asarray(Image.open(p)), 224, "bilinear") for p in paths]
    )
    return np.asarray(_tiny_head(seed=0).predict_on_batch(preprocess_vgg16(batch)))


def test_top_k_classes_most_probable_first(images, tiny, class_index):
    weights, _ = tiny
    results = inet.predict_imagenet(
        images, top_k=3, weights=weights, class_index=class_index
    )
    expected = _expected_probabilities(images)
    assert len(results) == len(images)
    for result, probabilities in zip(results, expected, strict=True):
        best = np.argsort(-probabilities)[:3]
        assert [row[:2] for row in result] == [
            (f"n{c:08d}", f"class {c}") for c in best
        ]
        np.testing.assert_allclose(
            [row[2] for row in result], probabilities[best], rtol=1e-5
        )
        assert all(isinstance(row[2], float) for row in result)
        assert result[0][2] >= result[1][2] >= result[2][2]


def _assert_same(results, expected):
    assert len(results) == len(expected)
    for a, b in zip(results, expected, strict=True):
        assert [row[:2] for row in a] == [row[:2] for row in b]
        np.testing.assert_allclose([r[2] for r in a], [r[2] for r in b], rtol=1e-4)


def test_results_do_not_depend_on_batching(images, tiny, class_index):
    weights, _ = tiny
    _assert_same(
        inet.predict_imagenet(images, weights=weights, class_index=class_index),
        inet.predict_imagenet(
            images, weights=weights, class_index=class_index, batch_size=1
        ),
    )


def test_a_bad_file_gets_its_error_and_the_others_go_on(
    images, tiny, class_index, tmp_path
):
    weights, _ = tiny
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    paths = [images[0], str(bad), str(tmp_path / "missing.png"), images[1]]
    results = inet.predict_imagenet(
        paths, top_k=1, weights=weights, class_index=class_index, batch_size=2
    )
    assert isinstance(results[1], ImageError) and results[1].path == str(bad)
    assert isinstance(results[2], ImageError)
    assert results[2].path.endswith("missing.png")
    good = inet.predict_imagenet(
        [images[0], images[1]], top_k=1, weights=weights, class_index=class_index
    )
    _assert_same([results[0], results[3]], good)


def test_an_empty_file_is_an_error_row(tiny, class_index, tmp_path):
    weights, _ = tiny
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    (result,) = inet.predict_imagenet([bad], weights=weights, class_index=class_index)
    assert isinstance(result, ImageError) and "empty" in str(result)


def test_the_model_is_built_once_per_weights_file(
    images, tiny, class_index, monkeypatch
):
    weights, builds = tiny
    # A file changed within SETTLED_NS is not remembered: built at each call.
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", 10**15)
    for _ in range(2):
        inet.predict_imagenet(images[:1], weights=weights, class_index=class_index)
    assert len(builds) == 2
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", -1)
    for _ in range(2):
        inet.predict_imagenet(images[:1], weights=weights, class_index=class_index)
    assert len(builds) == 3
    # A replaced file is a new model.
    _tiny_head(seed=5).save_weights(weights)
    inet.predict_imagenet(images[:1], weights=weights, class_index=class_index)
    assert len(builds) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": 0}, r"top_k must be between 1 and 1000; received 0"),
        ({"top_k": 1001}, r"top_k must be between 1 and 1000; received 1001"),
        ({"top_k": 2.0}, r"top_k must be an int; received 2.0"),
        ({"batch_size": 0}, r"batch_size must be at least 1; received 0"),
        ({"weights": None}, r"weights must be 'imagenet' or the path .* None"),
        ({"weights": "nowhere.h5"}, r"received 'nowhere.h5', which is not a file"),
    ],
)
def test_parameters_are_checked(images, class_index, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inet.predict_imagenet(images, class_index=class_index, **kwargs)


def test_a_single_path_must_be_wrapped_in_a_list(images, class_index):
    with pytest.raises(TypeError, match=r"wrap it in a list"):
        inet.predict_imagenet(images[0], class_index=class_index)


def _broken_index(kind):
    index = _class_index()
    if kind == "missing":
        del index["999"]
    elif kind == "entry":
        index["7"] = ["n00000007"]
    elif kind == "list":
        index = list(index.values())
    return index


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing", r"received 999 keys, missing \['999'\]"),
        ("entry", r"entry '7' is \['n00000007'\], not \[wnid, name\]"),
        ("list", r"received a JSON list, not an object"),
    ],
)
def test_a_class_index_of_the_wrong_structure_is_refused(tmp_path, kind, match):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(_broken_index(kind)))
    with pytest.raises(ValueError, match=r"is not an ImageNet class index: " + match):
        inet.load_class_index(path)


def test_a_class_index_that_is_no_json_is_refused(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read the class index .*classes"):
        inet.load_class_index(path)


def test_offline_without_cached_files_fails_at_once_naming_them(
    images, keras_home, monkeypatch, tiny, class_index
):
    # Port 9 on loopback refuses at once, as an unreachable host would.
    pin_url(monkeypatch, "http://127.0.0.1:9/vgg16.h5", top=True)
    _pin_class_index(monkeypatch, url="http://127.0.0.1:9/index.json")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        inet.predict_imagenet(images, class_index=class_index)
    message = str(info.value)
    weights_file = str(keras_home / "models" / WEIGHTS_FILE)
    assert f"is not in Keras's cache at {weights_file!r}" in message
    assert "Download http://127.0.0.1:9/vgg16.h5 on a machine" in message
    assert f"copy it to {weights_file!r}" in message
    with pytest.raises(WeightsUnavailableError, match=inet.CLASS_INDEX.name):
        inet.predict_imagenet(images, weights=tiny[0])
    assert time.monotonic() - start < 5
    assert tiny[1] == [], "no model was built"
    assert not list((keras_home / "models").iterdir()), "no partial file left"


def test_without_download_a_missing_file_fails_at_once(keras_home):
    with pytest.raises(WeightsUnavailableError, match=r"is not in Keras's cache"):
        inet.weights_path(download=False)


def _pin(monkeypatch, source, kind):
    if kind == "WEIGHTS":
        pin_weights(monkeypatch, source, source.as_uri(), top=True)
    else:
        digest = hashlib.md5(source.read_bytes()).hexdigest()
        _pin_class_index(monkeypatch, url=source.as_uri(), digest=digest)


def _pin_class_index(monkeypatch, **changes):
    pinned = dataclasses.replace(inet.CLASS_INDEX, **changes)
    monkeypatch.setattr(inet, "CLASS_INDEX", pinned)


def test_both_files_are_downloaded_into_keras_cache_and_used(
    images, tmp_path, keras_home, monkeypatch, tiny, class_index
):
    # Keras's file is in the legacy layout, and its name says so to Keras.
    published = tmp_path / "published.h5"
    write_legacy_h5_weights(_tiny_head(seed=0), str(published))
    _pin(monkeypatch, published, "WEIGHTS")
    _pin(monkeypatch, class_index, "CLASS_INDEX")
    results = inet.predict_imagenet(images, top_k=2)
    models = keras_home / "models"
    assert (models / WEIGHTS_FILE).read_bytes() == published.read_bytes()
    assert (models / inet.CLASS_INDEX.name).read_bytes() == class_index.read_bytes()
    assert tiny[1] == [str(models / WEIGHTS_FILE)]
    _assert_same(
        results,
        inet.predict_imagenet(
            images, top_k=2, weights=tiny[0], class_index=class_index
        ),
    )


def test_a_download_that_is_not_the_pinned_file_never_lands(
    tmp_path, keras_home, monkeypatch, class_index
):
    _pin(monkeypatch, class_index, "CLASS_INDEX")
    _pin_class_index(monkeypatch, digest="0" * 32)
    with pytest.raises(WeightsMismatchError, match=r"expected MD5 0000"):
        inet.class_index_path()
    assert not any((keras_home / "models").iterdir())


def test_a_cached_class_index_is_checked_for_structure_too(
    tmp_path, keras_home, monkeypatch
):
    source = tmp_path / "published.json"
    source.write_text(json.dumps(_broken_index("missing")))
    _pin(monkeypatch, source, "CLASS_INDEX")
    with pytest.raises(ValueError, match=r"not an ImageNet class index"):
        inet.class_index_path()


def test_tampered_cached_weights_are_refused(tmp_path, keras_home, monkeypatch, tiny):
    _pin(monkeypatch, tiny[0], "WEIGHTS")
    cached = keras_home / "models" / WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    data = bytearray(tiny[0].read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsMismatchError, match=r"damaged or not the expected"):
        inet.weights_path()


@pytest.mark.slow
def test_full_vgg16_weights_give_keras_own_probabilities(images, tmp_path, class_index):
    """Random full VGG16 weights in Keras's legacy layout, against Keras itself."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=True, weights=None, classes=1000)
    weights = write_legacy_h5_weights(model, str(tmp_path / "full.h5"))
    del model
    results = inet.predict_imagenet(
        images, top_k=5, weights=weights, class_index=class_index
    )
    clear_caches()
    reference = keras.applications.VGG16(include_top=True, weights=weights)
    batch = np.stack(
        [resize_image(np.asarray(Image.open(p)), 224, "bilinear") for p in images]
    )
    expected = np.asarray(
        reference.predict_on_batch(keras.applications.vgg16.preprocess_input(batch))
    )
    for result, probabilities in zip(results, expected, strict=True):
        best = np.argsort(-probabilities)[:5]
        assert [row[0] for row in result] == [f"n{c:08d}" for c in best]
        np.testing.assert_allclose(
            [row[2] for row in result], probabilities[best], rtol=1e-4, atol=1e-7
        )


@pytest.mark.slow
def test_weights_of_another_model_are_refused(images, class_index, tmp_path):
    wrong = tmp_path / "wrong.weights.h5"
    _tiny_head().save_weights(wrong)
    with pytest.raises(WeightsMismatchError, match=r"cannot load full VGG16 weights"):
        inet.predict_imagenet(images, weights=wrong, class_index=class_index)
