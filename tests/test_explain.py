"""Class activation maps: Grad-CAM of the Keras classifiers, a pipeline's exact CAM.

The networks are built here: small ones whose answer depends on one half
of the image (the other half is neutral texture that no feature responds
to), so that where the map's mass lies is known.
"""

import numpy as np
import pytest
from PIL import Image
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from tlsk import (
    ImageError,
    ImageFeatureExtractor,
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    explain,
)
from tlsk.evaluation.classifiers import bottleneck_classifier
from tlsk.evaluation.explain import (
    VIRIDIS,
    ClassActivationMaps,
    overlay,
    unsupported_reason,
)
from tlsk.networks.preprocessing import preprocess

SIDE = 32


def half_images(n, side="left", seed=0, size=SIDE):
    """``n`` images whose class is in one half: bright or dark, the rest gray noise.

    The class half is bright (about 220) or dark (about 20); the other half
    gray about 100, which the hand-set networks below never respond to.
    Classes alternate "bright", "dark".
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(85, 116, (n, size, size, 3)).astype(np.uint8)
    labels = np.array(["bright", "dark"] * (n // 2) + ["bright"] * (n % 2))
    half = (
        (slice(None), slice(0, size // 2)) if side == "left" else (slice(0, size // 2),)
    )
    for image, label in zip(images, labels, strict=True):
        level = 220 if label == "bright" else 20
        image[half] = rng.integers(level - 15, level + 16, image[half].shape)
    return images, labels


def left_share(maps):
    """Each map's share of its mass in its left half."""
    width = maps.shape[2]
    return maps[:, :, : width // 2].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


def top_share(maps):
    return left_share(np.swapaxes(maps, 1, 2))


# -- Grad-CAM ------------------------------------------------------------------


def _set_half_detector(model):
    """A small CNN that tells a bright region from a dark one; gray is silent.

    conv1: channel 0 = ReLU(mean RGB - 0.5), channel 1 = ReLU(0.2 - mean RGB)
    (pixels scaled to [0, 1]; gray 100/255 = 0.39 gives 0 in both), from the
    centre tap only; conv2, conv3 and the dense layer pass both channels on;
    the logits are 10 (p0 - p1) for "bright" and 10 (p1 - p0) for "dark".
    """
    network = model.model_
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[1, 1, :, 0], kernel[1, 1, :, 1] = 1 / 3, -1 / 3
    network.get_layer("conv1").set_weights([kernel, np.array([-0.5, 0.2], np.float32)])
    identity = np.zeros((3, 3, 2, 2), np.float32)
    identity[1, 1] = np.eye(2)
    for name in ("conv2", "conv3"):
        network.get_layer(name).set_weights([identity, np.zeros(2, np.float32)])
    network.get_layer("dense").set_weights([np.eye(2, dtype=np.float32), np.zeros(2)])
    logits = np.array([[10, -10], [-10, 10]], np.float32)
    network.get_layer("predictions").set_weights([logits, np.zeros(2, np.float32)])
    return model


@pytest.fixture(scope="module")
def half_cnn():
    images, labels = half_images(4)
    model = SmallCNNClassifier(
        input_size=SIDE,
        filters=(2, 2, 2),
        dense_units=2,
        dropout=0.0,
        epochs=0,
        augmentation=False,
        validation_fraction=0,
        precision="float32",
        random_state=0,
    ).fit(images, labels)
    return _set_half_detector(model)


@pytest.mark.parametrize("side, share", [("left", left_share), ("top", top_share)])
def test_grad_cam_mass_lies_on_the_half_that_decides(half_cnn, side, share):
    images, labels = half_images(6, side, seed=1)
    assert half_cnn.predict(images).tolist() == labels.tolist()
    result = explain(half_cnn, images)
    assert result.method == "grad-cam" and result.layer == "pool3"
    assert result.maps.shape == (6, 4, 4)  # 32 px, three 2 x 2 poolings
    assert result.predicted.tolist() == result.classes.tolist() == labels.tolist()
    assert (share(result.maps) > 0.8).all(), share(result.maps)


def test_grad_cam_of_a_trained_network_looks_at_the_half_that_carries_the_class():
    # Trained, not set: the class is the left half's brightness. Its receptive
    # fields reach across the middle, and gray texture excites a little of
    # what "bright" uses: measured, 0.72 of a "bright" map's mass on the left
    # and 1.0 of a "dark" one's (64 px, an 8 x 8 grid); the hand-set network
    # above puts all of it there.
    images, labels = half_images(40, seed=2, size=64)
    model = SmallCNNClassifier(
        input_size=64,
        filters=(8, 8, 8),
        dense_units=8,
        epochs=15,
        augmentation=False,
        validation_fraction=0,
        early_stopping=False,
        precision="float32",
        random_state=0,
    ).fit(images, labels)
    test, truth = half_images(10, seed=3, size=64)
    assert (model.predict(test) == truth).mean() >= 0.9
    result = explain(model, test, target="true", y=truth)
    assert result.maps.shape == (10, 8, 8) and result.maps.sum(axis=(1, 2)).all()
    shares = left_share(result.maps)
    assert shares.min() > 2 / 3 and shares.mean() > 0.8, shares


def test_grad_cam_of_another_class_finds_nothing_for_it(half_cnn):
    # A bright left half holds no evidence for "dark": its map is all 0.
    images, _ = half_images(2)
    result = explain(half_cnn, images[:1], target=["dark"])
    assert result.classes.tolist() == ["dark"] and result.predicted.tolist() == [
        "bright"
    ]
    assert not result.maps.any()


@pytest.fixture(scope="module")
def linear_head():
    """VGG16 (random weights) at 64 px, average pooling, the softmax on it."""
    rng = np.random.default_rng(0)
    model = KerasFineTuneClassifier(
        weights=None,
        input_size=64,
        dense_units=(),
        head_epochs=0,
        finetune_epochs=0,
        augmentation=False,
        validation_fraction=0,
        precision="float32",
        random_state=0,
    )
    return model.fit(rng.integers(0, 256, (3, 64, 64, 3)), ["a", "b", "c"])


def test_grad_cam_of_a_linear_head_is_the_class_activation_map(linear_head):
    # With the head a softmax on the averaged map, Grad-CAM's channel weights
    # are the class's weights over h * w (Selvaraju et al., section 3.1).
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    result = explain(linear_head, images, target=["c", "a", "b"], normalize=False)
    assert result.layer == "vgg16" and result.maps.shape == (3, 2, 2)
    network = linear_head.model_
    features = network.get_layer("vgg16")(preprocess(images, "caffe")).numpy()
    kernel, _ = network.get_layer("predictions").get_weights()
    expected = np.einsum("nhwc,nc->nhw", features, kernel.T[[2, 0, 1]]) / 4
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-5)
    assert result.predicted.tolist() == linear_head.predict(images).tolist()
    assert result.offsets is None


def test_grad_cam_of_a_bfloat16_network():
    # "auto" precision is bfloat16 where the CPU computes it: maps in float32.
    images, labels = half_images(4, seed=14)
    model = SmallCNNClassifier(
        input_size=SIDE,
        filters=(2, 2, 2),
        dense_units=2,
        dropout=0.0,
        epochs=0,
        augmentation=False,
        validation_fraction=0,
        precision="bfloat16",
        random_state=0,
    ).fit(images, labels)
    _set_half_detector(model)
    result = explain(model, images)
    assert result.maps.dtype == np.float32 and np.isfinite(result.maps).all()
    assert result.predicted.tolist() == model.predict(images).tolist()
    assert (left_share(result.maps) > 0.8).all()


def test_grad_cam_refuses_a_transformer(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    preset = str(tmp_path / "dino")
    keras_hub.models.DINOV2Backbone(
        patch_size=14,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        image_shape=(28, 28, 3),
        position_embedding_shape=(28, 28),
    ).save_to_preset(preset)
    keras_hub.layers.DINOV2ImageConverter(
        image_size=(28, 28), scale=1 / 255
    ).save_to_preset(preset)
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3))
    model = KerasFineTuneClassifier(
        backbone=preset,
        dense_units=(),
        head_epochs=0,
        finetune_epochs=0,
        validation_fraction=0,
        random_state=0,
    ).fit(images, ["a", "b"])
    with pytest.raises(TypeError, match="pools none.*transformer.*explain supports"):
        explain(model, images)


def test_explain_reads_images_as_predict_does(half_cnn, tmp_path):
    # Files of another size go through the classifier's own decode and resize.
    images, labels = half_images(2)
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).resize((64, 48)).save(path)
        paths.append(str(path))
    result = explain(half_cnn, paths)
    assert result.maps.shape == (2, 4, 4)
    assert result.predicted.tolist() == half_cnn.predict(paths).tolist()
    assert (left_share(result.maps) > 0.8).all()


# -- the exact class activation map --------------------------------------------


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    """A ``.keras`` backbone: the bright and dark detectors on 0-255 pixels, pooled
    4 x 4 to an 8 x 8 grid of 2 channels; gray about 100 gives 0 in both."""
    import keras

    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(2, 1, activation="relu", name="detect")(inputs)
    outputs = keras.layers.AveragePooling2D(4, name="grid")(x)
    model = keras.Model(inputs, outputs, name="detector")
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0], kernel[0, 0, :, 1] = 1 / 3, -1 / 3
    model.get_layer("detect").set_weights([kernel, np.array([-128, 50], np.float32)])
    path = tmp_path_factory.mktemp("detector") / "detector.keras"
    model.save(path)
    return str(path)


def bottleneck(detector_file, classifier, *middle):
    extractor = ImageFeatureExtractor(
        backbone=detector_file, preprocessing="none", precision="float32"
    )
    return Pipeline(
        [("features", extractor), *[(f"m{i}", m) for i, m in enumerate(middle)]]
        + [("classifier", classifier)]
    )


@pytest.fixture(scope="module")
def half_pipeline(detector_file):
    images, labels = half_images(20, seed=4)
    model = bottleneck(detector_file, LogisticRegression(), StandardScaler())
    return model.fit(images, labels)


@pytest.mark.parametrize("side, share", [("left", left_share), ("top", top_share)])
def test_exact_cam_mass_lies_on_the_half_that_decides(half_pipeline, side, share):
    images, labels = half_images(6, side, seed=5)
    assert half_pipeline.predict(images).tolist() == labels.tolist()
    result = explain(half_pipeline, images)
    assert result.method == "cam" and result.layer == "grid"
    assert result.maps.shape == (6, 8, 8)
    assert result.predicted.tolist() == result.classes.tolist() == labels.tolist()
    assert (share(result.maps) > 0.8).all(), share(result.maps)


def _decisions(pipeline, images, classes):
    """The last step's decision function, one column per class of ``classes_``."""
    features = pipeline[:-1].transform(images)
    last = pipeline[-1]
    scores = (
        last.calibrated_classifiers_[0].estimator.decision_function(features)
        if isinstance(last, CalibratedClassifierCV)
        else last.decision_function(features)
    )
    return np.c_[-scores, scores] if scores.ndim == 1 else scores


CLASSIFIERS = {
    "logreg-scaled": lambda y: (LogisticRegression(max_iter=2000), StandardScaler()),
    "linear-svc-std-only": lambda y: (
        LinearSVC(max_iter=20_000, random_state=0),
        StandardScaler(with_mean=False),
    ),
    "ridge-two-scalers": lambda y: (
        RidgeClassifier(),
        StandardScaler(),
        StandardScaler(with_std=False),
    ),
    "sgd": lambda y: (SGDClassifier(random_state=0),),
    "tlsk-linear-svm": lambda y: tuple(
        reversed([step for _, step in bottleneck_classifier("linear-svm", y).steps])
    ),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_exact_cam_averages_to_the_decision_function(detector_file, name, n_classes):
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (12, SIDE, SIDE, 3)).astype(np.uint8)
    labels = np.array(["x", "y", "z"][:n_classes] * 12)[:12]
    classifier, *middle = CLASSIFIERS[name](labels)
    model = bottleneck(detector_file, classifier, *reversed(middle))
    model.fit(images, labels)
    asked = rng.integers(0, n_classes, 12)
    classes = model.classes_
    result = explain(model, images, target=classes[asked], normalize=False)
    expected = _decisions(model, images, classes)[np.arange(12), asked]
    np.testing.assert_allclose(
        result.maps.mean(axis=(1, 2)) + result.offsets, expected, rtol=1e-4, atol=1e-4
    )
    assert result.predicted.tolist() == model.predict(images).tolist()
    assert result.classes.tolist() == classes[asked].tolist()


def test_exact_cam_of_vgg16_features_at_a_cut_point():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (6, SIDE, SIDE, 3)).astype(np.uint8)
    labels = ["a", "b", "c"] * 2
    extractor = ImageFeatureExtractor(
        weights=None, layer="block3_pool", input_size=SIDE, precision="float32"
    )
    model = Pipeline(
        [
            ("features", extractor),
            ("scale", StandardScaler()),
            ("classifier", LogisticRegression()),
        ]
    ).fit(images, labels)
    result = explain(model, images, target="true", y=labels, normalize=False)
    assert result.maps.shape == (6, 4, 4) and result.layer == "block3_pool"
    expected = model.decision_function(images)[np.arange(6), [0, 1, 2] * 2]
    np.testing.assert_allclose(
        result.maps.mean(axis=(1, 2)) + result.offsets, expected, rtol=1e-3, atol=1e-3
    )


# -- results, targets, errors ---------------------------------------------------


def test_normalised_maps_lie_in_0_1_with_a_peak_of_1(half_pipeline):
    images, _ = half_images(4, seed=8)
    result = explain(half_pipeline, images)
    assert isinstance(result, ClassActivationMaps) and len(result) == 4
    assert result.maps.dtype == np.float32
    assert result.maps.min() >= 0
    np.testing.assert_allclose(result.maps.max(axis=(1, 2)), 1)
    # The exact map's level is arbitrary (intercept, scaler means): min-max.
    raw = explain(half_pipeline, images, normalize=False).maps
    low = raw.min(axis=(1, 2), keepdims=True)
    expected = (raw - low) / (raw.max(axis=(1, 2), keepdims=True) - low)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_maps_are_relu_over_the_peak(half_cnn):
    images, _ = half_images(4, seed=8)  # bright, dark, bright, dark
    target = ["bright", "bright", "dark", "dark"]
    result = explain(half_cnn, images, target=target)
    raw = explain(half_cnn, images, target=target, normalize=False).maps
    assert raw[[1, 2]].max() == 0 and raw[[1, 2]].min() < 0  # evidence against
    assert not result.maps[[1, 2]].any()
    expected = raw[[0, 3]] / raw[[0, 3]].max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(result.maps[[0, 3]], expected, rtol=1e-5, atol=1e-6)


def test_target_choices(half_pipeline):
    images, labels = half_images(4, seed=9)
    predicted = explain(half_pipeline, images)
    true = explain(half_pipeline, images, target="true", y=labels)
    assert true.classes.tolist() == predicted.classes.tolist() == labels.tolist()
    flipped = ["dark" if label == "bright" else "bright" for label in labels]
    other = explain(half_pipeline, images, target=flipped)
    assert other.classes.tolist() == flipped
    assert other.predicted.tolist() == labels.tolist()
    # The other class's evidence is the opposite of this one's (binary coef_).
    raw = explain(half_pipeline, images, normalize=False).maps
    raw_other = explain(half_pipeline, images, target=flipped, normalize=False).maps
    np.testing.assert_allclose(raw_other, -raw, rtol=1e-6)


def test_a_class_named_true_is_asked_for_as_a_list(detector_file):
    images, labels = half_images(8, seed=10)
    named = np.where(labels == "bright", "true", "predicted")
    model = bottleneck(detector_file, LogisticRegression()).fit(images, named)
    result = explain(model, images[:2], target=["true", "true"])
    assert result.classes.tolist() == ["true", "true"]
    assert result.predicted.tolist() == named[:2].tolist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "true"}, "target='true' needs the true labels: pass y="),
        (
            {"target": "true", "y": ["bright"] * 3},
            "y must hold one label per image: received 3 labels for 2 images",
        ),
        ({"target": ["bright"]}, "target must hold one label per image"),
        ({"target": "bright"}, r"target must be 'predicted', 'true'.*\[label\]"),
        ({"target": ["bright", "cat"]}, r"not among the model's classes.*'cat'"),
        ({"target": "true", "y": ["bright", 7]}, r"not among.*'7'"),
        ({"y": ["bright", "dark"]}, "y is used with target='true' only"),
    ],
)
def test_bad_targets_are_clear_errors(half_pipeline, kwargs, message):
    images, _ = half_images(2)
    with pytest.raises(ValueError, match=message):
        explain(half_pipeline, images, **kwargs)


def test_no_images_is_a_clear_error(half_pipeline, half_cnn):
    for model in (half_pipeline, half_cnn):
        with pytest.raises(ValueError, match="images is empty"):
            explain(model, [])


@pytest.mark.parametrize(
    "name",
    ['it\'s "quoted" <b>&amp;.png', "ünïcødé ✓ name.png", "new\nline.png", "-rf .png"],
)
def test_hostile_file_names_are_read_like_any_other(half_pipeline, tmp_path, name):
    images, labels = half_images(2, seed=11)
    path = tmp_path / name
    Image.fromarray(images[0]).save(path, format="PNG")
    from_file = explain(half_pipeline, [str(path)])
    from_array = explain(half_pipeline, images[:1])
    np.testing.assert_array_equal(from_file.maps, from_array.maps)
    missing = str(tmp_path / ("missing " + name))
    with pytest.raises(ImageError) as caught:
        explain(half_pipeline, [missing])
    assert f"cannot decode {missing!r}: no such file" in str(caught.value)


def test_unsupported_models_name_what_is_supported(detector_file):
    images, labels = half_images(8, seed=12)
    rbf = bottleneck(
        detector_file, CalibratedClassifierCV(SVC(), cv=2, ensemble=False)
    ).fit(images, labels)
    with pytest.raises(TypeError, match=r"SVC\(kernel='rbf'\).*explain supports"):
        explain(rbf, images)
    forest = bottleneck(detector_file, RandomForestClassifier(n_estimators=3))
    with pytest.raises(TypeError, match="RandomForestClassifier"):
        explain(forest.fit(images, labels), images)
    pca = bottleneck(detector_file, LogisticRegression(), PCA(1)).fit(images, labels)
    with pytest.raises(TypeError, match="folds StandardScaler steps only; step 'm0'"):
        explain(pca, images)
    with pytest.raises(TypeError, match="received a LogisticRegression"):
        explain(LogisticRegression(), images)
    no_extractor = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])
    with pytest.raises(TypeError, match="first step is a tlsk.ImageFeatureExtractor"):
        explain(no_extractor, images)


def test_unsupported_reason_says_what_explain_would(half_pipeline, half_cnn):
    assert unsupported_reason(half_pipeline) is None
    assert unsupported_reason(half_cnn) is None
    assert "received a RandomForestClassifier" in unsupported_reason(
        RandomForestClassifier()
    )
    assert "not fitted" in unsupported_reason(SmallCNNClassifier())


def test_max_pooling_is_refused(detector_file):
    images, labels = half_images(8, seed=13)
    model = Pipeline(
        [
            (
                "features",
                ImageFeatureExtractor(
                    backbone=detector_file, preprocessing="none", pooling="max"
                ),
            ),
            ("classifier", LogisticRegression()),
        ]
    ).fit(images, labels)
    with pytest.raises(ValueError, match="pooling='avg'.*pools with 'max'"):
        explain(model, images)


def test_an_unfitted_model_is_not_fitted(detector_file):
    images, _ = half_images(2)
    with pytest.raises(NotFittedError):
        explain(SmallCNNClassifier(), images)
    with pytest.raises(NotFittedError):
        explain(bottleneck(detector_file, LogisticRegression()), images)


# -- overlay ---------------------------------------------------------------------


def test_overlay_colours_the_image_where_the_map_is():
    image = np.full((60, 80, 3), 128, np.uint8)
    cam = np.zeros((4, 4))
    cam[:, :2] = 1
    picture = overlay(image, cam, alpha=1.0)
    assert picture.size == (80, 60) and picture.mode == "RGB"
    pixels = np.asarray(picture)
    np.testing.assert_array_equal(pixels[30, 2], VIRIDIS[-1])  # yellow: 1
    np.testing.assert_array_equal(pixels[30, 77], VIRIDIS[0])  # dark blue: 0
    unchanged = overlay(image, cam, alpha=0)
    np.testing.assert_array_equal(np.asarray(unchanged), image)
    half = np.asarray(overlay(image, cam, alpha=0.5), np.float32)
    np.testing.assert_allclose(half[30, 2], (128 + VIRIDIS[-1]) / 2, atol=0.51)


def test_overlay_of_a_file_with_max_side(tmp_path):
    path = tmp_path / "it's <a> photo.jpg"
    Image.fromarray(np.full((300, 200, 3), 90, np.uint8)).save(path)
    picture = overlay(str(path), np.full((7, 7), 0.5), max_side=100)
    assert picture.size == (67, 100)


@pytest.mark.parametrize(
    "cam, kwargs, message",
    [
        (np.full((3, 3), 2.0), {}, r"values in \[0, 1\].*from 2 to 2"),
        (np.full((3, 3), np.nan), {}, r"values in \[0, 1\]"),
        (np.zeros((2, 3, 3)), {}, "one map of shape"),
        (np.zeros((3, 3)), {"alpha": 1.5}, r"alpha must be a number in \[0, 1\]"),
        (np.zeros((3, 3)), {"max_side": 0}, "max_side must be a positive int"),
    ],
)
def test_overlay_bad_input_is_a_clear_error(cam, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlay(np.zeros((8, 8, 3), np.uint8), cam, **kwargs)
