"""Fine-tuning on other backbones: stages, batch normalization, persistence."""

import pickle

import numpy as np
import pytest

from tests._datasets import coloured_images
from tests._training import PLAIN
from tlsk import KerasFineTuneClassifier
from tlsk.networks.registry import get_spec
from tlsk.training.finetune import freeze_base

SMALL = {
    **PLAIN,
    "weights": None,
    "dense_units": (16,),
    "dropout": 0,
    "head_epochs": 1,
    "finetune_epochs": 1,
    "precision": "float32",
}


def fine_tune(backbone, **params):
    return KerasFineTuneClassifier(backbone=backbone, **{**SMALL, **params})


def base_of(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def batch_norm_statistics(model):
    import keras

    return [
        np.asarray(variable).copy()
        for layer in base_of(model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


@pytest.fixture(scope="module")
def data():
    return coloured_images(6, size=32, seed=3)


@pytest.fixture(scope="module")
def mobilenet(data):
    """MobileNetV3Large fine-tuned with its last two stages open."""
    images, labels = data
    untrained = fine_tune("mobilenet_v3_large", trainable_blocks=2)
    before = batch_norm_statistics(
        untrained._build_model(n_classes=3, seed=0, precision="float32")
    )
    return untrained.fit(images, labels), before


@pytest.mark.parametrize("trainable_blocks", [0, 1, 2, 5])
def test_trainable_blocks_open_exactly_the_last_stages(trainable_blocks):
    spec = get_spec("resnet50")
    model = fine_tune("resnet50")._build_model(n_classes=2, seed=0, precision="float32")
    opened = set(freeze_base(model, trainable_blocks, "resnet50"))
    base = base_of(model)
    names = [layer.name for layer in base.layers]
    if trainable_blocks == 0:
        first = len(names)
    elif trainable_blocks == spec.n_stages:
        first = 0
    else:
        first = names.index(spec.stage_ends[-trainable_blocks]) + 1
    import keras

    expected = {
        layer.name
        for layer in base.layers[first:]
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    }
    assert opened == expected
    assert trainable_blocks == 0 or "conv5_block3_3_conv" in opened
    if 0 < trainable_blocks < spec.n_stages:
        assert "conv1_conv" not in opened


def test_batch_normalization_never_trains(mobilenet):
    import keras

    model, before = mobilenet
    norms = [
        layer
        for layer in base_of(model.model_).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and not any(layer.trainable for layer in norms)
    # Inference mode: the moving statistics are the pretrained ones still.
    for old, new in zip(before, batch_norm_statistics(model.model_), strict=True):
        np.testing.assert_array_equal(old, new)


def test_the_open_stages_learn_and_the_frozen_ones_do_not(mobilenet):
    model, _ = mobilenet
    spec = get_spec("mobilenet_v3_large")
    fresh = fine_tune("mobilenet_v3_large")._build_model(3, seed=0, precision="float32")
    trained, initial = base_of(model.model_), base_of(fresh)
    first_open = [layer.name for layer in trained.layers].index(spec.stage_ends[-2]) + 1
    changed = []
    for index, (new, old) in enumerate(
        zip(trained.layers, initial.layers, strict=True)
    ):
        pairs = zip(new.get_weights(), old.get_weights(), strict=True)
        if not all(np.array_equal(a, b) for a, b in pairs):
            changed.append(index)
    assert changed, "the open stages learn"
    assert min(changed) >= first_open, "the frozen stages do not"


def test_a_fine_tuned_network_round_trips_through_pickle(mobilenet, data):
    model, _ = mobilenet
    images, _ = data
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(
        again.predict_proba(images), model.predict_proba(images), rtol=1e-5
    )
    assert set(model.predict(images)) <= {"red", "green", "blue"}


def test_more_blocks_than_stages_are_refused(data):
    images, labels = data
    with pytest.raises(
        ValueError, match=r"'trainable_blocks' .* at most 5 for resnet50"
    ):
        fine_tune("resnet50", trainable_blocks=6).fit(images, labels)


def test_an_unknown_backbone_is_refused(data):
    images, labels = data
    with pytest.raises(ValueError, match=r"'backbone' parameter .* Got 'resnet51'"):
        fine_tune("resnet51").fit(images, labels)


def test_the_networks_own_preprocessing_is_used(data):
    images, _ = data
    model = fine_tune("resnet50v2")
    batch = images[:1].astype("float32")
    np.testing.assert_allclose(model._preprocess(batch), batch / 127.5 - 1, atol=1e-6)
