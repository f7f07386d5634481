"""Test-time augmentation: the views of tlsk.images.tta, and the Keras classifiers'
``tta`` (probabilities averaged over the views, nothing changed in training).

The extractor's ``tta`` is tested in tests/test_tta_extractor.py.
"""

import numpy as np
import pytest

from tests._datasets import coloured_images
from tests._training import PLAIN
from tlsk import KerasFineTuneClassifier, SmallCNNClassifier
from tlsk.images.tta import CROP_FRACTION, TTA_MODES, apply_view, tta_views


@pytest.fixture(scope="module")
def data():
    return coloured_images(4, 32, seed=7)


@pytest.fixture(scope="module")
def cnn(data):
    model = SmallCNNClassifier(filters=(4, 8, 8), dense_units=8, epochs=1, **PLAIN)
    return model.fit(*data)


# -- views --------------------------------------------------------------------


def test_every_mode_starts_with_the_original_view():
    assert tta_views(None) == ("original",)
    for mode in TTA_MODES:
        assert tta_views(mode)[0] == "original"
    assert len(tta_views("flip")) == 2
    assert len(set(tta_views("ten_crop"))) == 10


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match=r"tta must be None or one of .*'crops'"):
        tta_views("crops")


def test_corner_crop_is_the_corner_resized_back():
    # A gradient along x: the left crop keeps 0 at its left edge, the right
    # crop the maximum at its right edge, both with the original's shape.
    row = np.linspace(0, 255, 64, dtype=np.float32)
    batch = np.broadcast_to(row[None, None, :, None], (1, 64, 64, 3)).copy()
    left = apply_view(batch, "top_left")
    right = apply_view(batch, "bottom_right")
    assert left.shape == right.shape == batch.shape
    assert left[0, 0, 0, 0] == pytest.approx(0, abs=2)
    assert right[0, 0, -1, 0] == pytest.approx(255, abs=2)
    # Cropping 7/8 and stretching back makes the gradient steeper.
    assert left[0, 0, 31, 0] < batch[0, 0, 31, 0] * 1.0
    assert left[0, 0, -1, 0] == pytest.approx(255 * CROP_FRACTION, abs=6)


def test_mirror_of_a_corner_is_the_corner_flipped():
    batch = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("f4")
    np.testing.assert_array_equal(
        apply_view(batch, "top_right_mirror"),
        apply_view(batch, "top_right")[:, :, ::-1],
    )


# -- classifiers --------------------------------------------------------------


def test_flip_averages_the_image_and_its_mirror(cnn, data):
    images, _ = data
    plain = cnn.predict_proba(images)
    mirrored = cnn.predict_proba(images[:, :, ::-1])
    cnn.set_params(tta="flip")
    try:
        averaged = cnn.predict_proba(images)
    finally:
        cnn.set_params(tta=None)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-5)
    assert not np.allclose(averaged, plain)


def test_ten_crop_gives_probabilities_and_predictions(cnn, data):
    images, labels = data
    cnn.set_params(tta="ten_crop")
    try:
        proba = cnn.predict_proba(images)
        predicted = cnn.predict(images)
    finally:
        cnn.set_params(tta=None)
    assert proba.shape == (len(images), len(cnn.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(predicted) <= set(labels)


def test_fine_tuned_classifier_takes_tta_too(data):
    images, labels = data
    model = KerasFineTuneClassifier(
        weights=None,
        dense_units=(8,),
        head_epochs=1,
        finetune_epochs=0,
        tta="flip",
        **PLAIN,
    ).fit(images, labels)
    plain = model.set_params(tta=None).predict_proba(images)
    mirrored = model.predict_proba(images[:, :, ::-1])
    averaged = model.set_params(tta="flip").predict_proba(images)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-5)


def test_bad_tta_is_named_at_fit(data):
    with pytest.raises(ValueError, match=r"'tta' parameter .*'flip'"):
        SmallCNNClassifier(tta="five_crop", **PLAIN).fit(*data)
