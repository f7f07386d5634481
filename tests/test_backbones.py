"""The backbone registry: every network against Keras's own builder, offline.

For each registered backbone a seeded weights file is written by the test
(no network), and tlsk's vectors are compared with what a Keras user writes:
``keras.applications.<Builder>(include_top=False, pooling="avg",
weights=file)`` on the network's own ``preprocess_input``. Inputs are crops of
scikit-learn's sample photographs at the network's smallest size.

ConvNeXt's pooled vectors are Keras's own, its head LayerNormalization after
the pooling ("avg" and "max"), under a fingerprint of their own; "flatten" and
earlier cut points have no head norm, and every other network keeps its
fingerprint (``test_convnext_*``, ``test_other_networks_keep_their_fingerprint``).
"""

import dataclasses
import hashlib
import importlib

import numpy as np
import pytest

from tests._weights import pin_weights, write_legacy_h5_weights
from tlsk import (
    ImageFeatureExtractor,
    KerasFineTuneClassifier,
    clear_caches,
    list_backbones,
)
from tlsk.cache import namespace_id
from tlsk.images.decode import resize_image
from tlsk.networks.backbone import BackboneConfig, get_backbone
from tlsk.networks.preprocessing import PREPROCESSINGS
from tlsk.networks.registry import BACKBONES, BackboneSpec, get_spec
from tlsk.networks.weights import WeightsMismatchError

# keras.applications' networks; KerasHub's are tests/test_hub_backbones.py's.
NAMES = sorted(n for n, s in BACKBONES.items() if isinstance(s, BackboneSpec))
# Builds cost seconds each (ConvNeXt-Tiny nearly 40 on an AMX Xeon): the
# default run checks these, --runslow every network.
FAST = {"vgg16", "resnet50", "mobilenet_v3_large", "efficientnet_b0"}


def fast_or_slow(names):
    return [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in names]


def photos(size, n=3, seed=0):
    """``n`` uint8 crops of scikit-learn's sample photographs, ``size`` square."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = load_sample_images().images[i % 2]
        side = int(rng.integers(120, 300))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crop = photo[top : top + side, left : left + side]
        crops.append(resize_image(crop, size, "bilinear"))
    return np.stack(crops)


def seeded_weights(model, seed, images):
    """Give ``model`` weights drawn from ``seed`` that keep activations O(1).

    Kernels He-normal; other float variables (biases, normalisation scales)
    their Keras value scaled by a random factor in [0.8, 1.2]; integer ones
    (a Normalization's count) untouched. Then each BatchNormalization's
    statistics are those of its inputs on ``images`` (as a trained network's
    are of its data): otherwise a deep random network explodes or dies out,
    and its features no longer depend on the image.
    """
    import keras

    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = np.asarray(variable)
        if not np.issubdtype(value.dtype, np.floating):
            continue
        if value.ndim >= 2:
            # A depthwise kernel (h, w, channels, 1) sums over h * w inputs.
            depthwise = value.ndim == 4 and value.shape[-1] == 1
            fan_in = int(np.prod(value.shape[: 2 if depthwise else -1]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), value.shape)
        else:
            value = value * rng.uniform(0.8, 1.2, value.shape)
        variable.assign(value.astype(np.float32))
    norms = [
        lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)
    ]
    drops = [lay for lay in model.layers if isinstance(lay, keras.layers.Dropout)]
    saved = [(lay, lay.momentum) for lay in norms] + [(lay, lay.rate) for lay in drops]
    for lay in norms:
        lay.momentum = 0.0  # the moving statistics become this batch's
    for lay in drops:
        lay.rate = 0.0
    model(images.astype("float32"), training=True)
    for lay, value in saved:
        setattr(lay, "momentum" if lay in norms else "rate", value)
    for lay in norms:
        # The second moment, not the variance: the few images of a test vary
        # little, and dividing by their spread alone would make every layer an
        # amplifier of rounding errors, which no trained network is.
        lay.moving_variance.assign(lay.moving_variance + lay.moving_mean**2)


def small_size(name):
    """A small input at which a network still tells images apart: 64 px or more.

    InceptionV3's last blocks see one position at its 75 px minimum, where no
    average smooths bfloat16's rounding: 139 px gives them 3 x 3.
    """
    return 139 if name == "inception_v3" else max(64, get_spec(name).min_size)


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """``{name: (path, size)}``: a seeded no-top weights file of each backbone."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in NAMES:
        spec = get_spec(name)
        size = small_size(name)
        model = spec.build(input_size=size)
        module = importlib.import_module(f"keras.applications.{spec.keras_module}")
        calibration = module.preprocess_input(photos(size, n=32, seed=1) * 1.0)
        seeded_weights(model, len(files), calibration)
        path = str(folder / f"{name}.weights.h5")
        model.save_weights(path)
        files[name] = (path, size)
    return files


@pytest.fixture(scope="module")
def keras_reference(weights_files):
    """``reference(name) -> (images, features)``, computed once per network."""
    computed = {}

    def reference(name):
        if name not in computed:
            path, size = weights_files[name]
            images = photos(size)
            computed[name] = images, keras_features(name, path, size, images)
        return computed[name]

    return reference


def keras_features(name, path, size, images, pooling="avg"):
    """What a Keras user computes: builder with ``pooling`` + preprocess_input.

    ``pooling=None``: the feature map of the network without its top.
    """
    import keras

    spec = get_spec(name)
    builder = getattr(keras.applications, spec.builder)
    model = builder(
        include_top=False,
        pooling=pooling,
        weights=path,
        input_shape=(size, size, 3),
    )
    module = importlib.import_module(f"keras.applications.{spec.keras_module}")
    batch = module.preprocess_input(images.astype("float32"))
    return np.asarray(model.predict(batch, verbose=0))


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# -- the registry, without building anything ---------------------------------


def test_the_registry_has_the_recipe_networks_and_the_modern_ones():
    assert set(NAMES) >= {
        "vgg16",
        "vgg19",
        "resnet50",
        "inception_v3",
        "xception",
        "resnet50v2",
        "densenet121",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "efficientnet_v2_s",
        "convnext_tiny",
    }
    assert [spec.name for spec in list_backbones()][0] == "vgg16"


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_is_complete(name):
    import keras

    spec = get_spec(name)
    assert callable(getattr(keras.applications, spec.builder))
    assert spec.preprocessing in PREPROCESSINGS
    assert spec.min_size <= spec.native_size
    assert len(spec.cut_points) == len(spec.dims) == len(set(spec.cut_points))
    assert spec.gflops > 0 and 60 < spec.imagenet_top1 < 90
    for pinned in (spec.imagenet, spec.imagenet_top):
        assert pinned.url.startswith("https://storage.googleapis.com/")
        assert pinned.url.endswith("/" + pinned.name)
        assert len(pinned.digest) == {"md5": 32, "sha256": 64}[pinned.algorithm]
    record = spec.as_record()
    assert record["default_layer"] == spec.cut_points[-1]
    assert record["imagenet"]["name"] == spec.imagenet.name


@pytest.mark.parametrize("name", NAMES)
def test_pinned_digests_are_the_ones_keras_checks(name):
    """The registry pins what Keras's source pins for the same files."""
    spec = get_spec(name)
    # ResNet50V2's digests sit with ResNet's.
    module_name = "resnet" if name.startswith("resnet") else spec.keras_module
    module = importlib.import_module(f"keras.src.applications.{module_name}")
    with open(module.__file__, encoding="utf-8") as file:
        source = file.read()
    for pinned in (spec.imagenet, spec.imagenet_top):
        if pinned is get_spec("vgg16").imagenet:
            continue  # tlsk pins this one by SHA-256 and size
        assert pinned.digest in source, (name, pinned.name)


def test_an_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"backbone must be one of \[.*'resnet50'"):
        ImageFeatureExtractor(backbone="resnet51", weights=None).fit()


# -- every network against Keras --------------------------------------------


@pytest.mark.parametrize("name", fast_or_slow(NAMES))
def test_float32_vectors_equal_keras_builder_preprocess_and_pooling(
    name, weights_files, keras_reference
):
    path, size = weights_files[name]
    images, expected = keras_reference(name)
    extractor = ImageFeatureExtractor(
        backbone=name, weights=path, input_size=size, precision="float32"
    ).fit()
    ours = extractor.transform(images)
    assert ours.shape == expected.shape == (3, get_spec(name).dims[-1])
    scale = np.abs(expected).max()
    assert scale > 1e-3, "the seeded weights keep the features away from zero"
    spread = np.abs(expected - expected.mean(axis=0)).max()
    assert spread > 1e-2 * scale, "and the features depend on the image"
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * scale)
    assert extractor.fingerprint_["model"] == name
    assert extractor.preprocessing_ == get_spec(name).preprocessing


@pytest.mark.parametrize("name", fast_or_slow(NAMES))
def test_bfloat16_vectors_agree_with_keras_float32(
    name, weights_files, keras_reference
):
    path, size = weights_files[name]
    images, expected = keras_reference(name)
    ours = (
        ImageFeatureExtractor(
            backbone=name, weights=path, input_size=size, precision="bfloat16"
        )
        .fit()
        .transform(images)
    )
    assert cosine(ours, expected).min() >= 0.999


@pytest.mark.parametrize("name", NAMES)
def test_every_cut_point_and_stage_end_is_a_layer_of_the_network(name):
    spec = get_spec(name)
    model = spec.build(input_size=spec.min_size)
    names = [layer.name for layer in model.layers]
    for layer, dim in zip(spec.cut_points[:-1], spec.dims[:-1], strict=True):
        assert model.get_layer(layer).output.shape[-1] == dim, layer
    assert model.output.shape[-1] == spec.dims[-1]
    ends = [names.index(end) for end in spec.stage_ends]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)


def test_an_early_cut_point_gives_its_own_dimension():
    config = BackboneConfig(
        backbone="resnet50", weights=None, layer="conv3_block4_out", input_size=32
    )
    backbone = get_backbone(config)
    assert backbone.output_dim == 512
    assert backbone.fingerprint["layer"] == "conv3_block4_out"


def test_a_cut_point_of_another_network_is_refused_with_the_list():
    with pytest.raises(ValueError, match=r"cut point of resnet50, one of \["):
        ImageFeatureExtractor(backbone="resnet50", layer="block5_pool").fit()


def test_an_input_below_the_networks_minimum_is_refused():
    with pytest.raises(ValueError, match=r"at least 75 for inception_v3; received 64"):
        ImageFeatureExtractor(backbone="inception_v3", input_size=64).fit()


def test_input_size_none_is_the_native_size():
    extractor = ImageFeatureExtractor(
        backbone="mobilenet_v3_large", weights=None, precision="float32"
    ).fit()
    assert extractor.input_size_ == 224 == extractor.fingerprint_["input_size"]


@pytest.mark.parametrize(
    "name", fast_or_slow(["efficientnet_b0", "resnet50", "convnext_tiny"])
)
def test_random_initialisation_is_the_same_in_every_build(name):
    spec = get_spec(name)
    config = BackboneConfig(backbone=name, weights=None, layer=spec.default_layer)
    config = dataclasses.replace(config, input_size=spec.min_size)
    images = photos(spec.min_size).astype("float32")
    first = get_backbone(config).predict(images)
    clear_caches()
    second = get_backbone(config).predict(images)
    np.testing.assert_array_equal(first, second)
    assert np.isfinite(first).all() and np.abs(first).max() > 0


# -- ConvNeXt: Keras's head norm after the pooling ----------------------------

# What a fingerprint held before ConvNeXt's head norm: a network other than
# ConvNeXt ("avg", "max"), "flatten" or an earlier cut point keeps exactly it.
PLAIN_KEYS = {"model", "weights_sha256", "layer", "pooling", "input_size", "precision"}


@pytest.fixture(scope="module")
def convnext(weights_files):
    """``(path, size, images, feature_map)``: seeded ConvNeXt-Tiny, photos, Keras's map.

    64 px: the last stage's map is 2 x 2, where a norm of each position then
    the pooling differs from the pooling then the norm (on a 1 x 1 map, 32 px,
    they are one). ``feature_map``: Keras's ``pooling=None`` output.
    """
    path, size = weights_files["convnext_tiny"]
    assert size == 64
    images = photos(size)
    return path, size, images, keras_features("convnext_tiny", path, size, images, None)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_convnext_pooled_vectors_are_keras_own_with_its_head_norm(pooling, convnext):
    path, size, images, feature_map = convnext
    expected = keras_features("convnext_tiny", path, size, images, pooling)
    extractor = ImageFeatureExtractor(
        backbone="convnext_tiny",
        weights=path,
        input_size=size,
        pooling=pooling,
        precision="float32",
    ).fit()
    ours = extractor.transform(images)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * scale)
    # Each position normalised, then pooled: not Keras's vector.
    pooled_map = {"avg": np.mean, "max": np.max}[pooling](feature_map, axis=(1, 2))
    assert np.abs(pooled_map - expected).max() > 0.1 * scale
    fingerprint = extractor.fingerprint_
    assert fingerprint["embedding"] == "keras-head-norm"
    assert fingerprint["layer"] == get_spec("convnext_tiny").default_layer
    plain = {key: value for key, value in fingerprint.items() if key != "embedding"}
    assert namespace_id(fingerprint) != namespace_id(plain)


def test_convnext_flatten_and_earlier_cut_points_have_no_head_norm(convnext):
    path, size, images, feature_map = convnext
    flatten = ImageFeatureExtractor(
        backbone="convnext_tiny",
        weights=path,
        input_size=size,
        pooling="flatten",
        precision="float32",
    ).fit()
    expected = feature_map.reshape(len(images), -1)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(
        flatten.transform(images), expected, rtol=1e-5, atol=1e-5 * scale
    )
    assert PLAIN_KEYS <= set(flatten.fingerprint_)
    assert "embedding" not in flatten.fingerprint_
    early = get_backbone(
        BackboneConfig(
            backbone="convnext_tiny",
            weights=None,
            layer="convnext_tiny_stage_2_block_8_identity",
            input_size=32,
        )
    )
    assert set(early.fingerprint) == PLAIN_KEYS
    assert early.output_dim == 384


@pytest.mark.parametrize(
    ("name", "layer"), [("vgg16", "block5_pool"), ("resnet50", "conv5_block3_out")]
)
def test_other_networks_keep_their_fingerprint(name, layer):
    backbone = get_backbone(
        BackboneConfig(backbone=name, weights=None, layer=layer, input_size=32)
    )
    assert backbone.fingerprint == {
        "model": name,
        "weights_sha256": "random-glorot-uniform-seed-0",
        "layer": layer,
        "pooling": "avg",
        "input_size": 32,
        "precision": "float32",
    }


def test_convnext_fine_tuning_head_sees_the_normed_embedding(convnext):
    """The dense layers' input is the extractor's vector; the norm trains with them."""
    path, size, images, _ = convnext
    classifier = KerasFineTuneClassifier(
        backbone="convnext_tiny",
        weights=path,
        input_size=size,
        dense_units=(),
        head_epochs=0,
        trainable_blocks=0,
        augmentation=False,
        early_stopping=False,
        validation_fraction=0.0,
        precision="float32",
        random_state=0,
    ).fit(images, [0, 1, 0])
    expected = keras_features("convnext_tiny", path, size, images, "avg")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(
        classifier.transform(images), expected, rtol=1e-5, atol=1e-5 * scale
    )
    model = classifier.model_
    head_input = model.get_layer("predictions").input
    assert head_input is model.get_layer("head_norm").output
    assert model.get_layer("head_norm").trainable


@pytest.mark.slow  # converting ConvNeXt to OpenVINO: ~17 s
def test_convnext_openvino_engine_has_the_head_norm_too(convnext):
    pytest.importorskip("openvino")
    path, size, images, _ = convnext
    extractor = ImageFeatureExtractor(
        backbone="convnext_tiny",
        weights=path,
        input_size=size,
        precision="float32",
        engine="openvino",
    ).fit()
    expected = keras_features("convnext_tiny", path, size, images, "avg")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(
        extractor.transform(images), expected, rtol=1e-4, atol=1e-4 * scale
    )
    assert extractor.fingerprint_["embedding"] == "keras-head-norm"
    assert extractor.fingerprint_["engine"] == "openvino"


# -- weights files ------------------------------------------------------------


def test_a_weights_file_of_another_network_fails_naming_file_and_network(
    weights_files,
):
    path, _ = weights_files["resnet50"]
    with pytest.raises(WeightsMismatchError) as info:
        ImageFeatureExtractor(backbone="vgg16", weights=path, input_size=32).fit()
    message = str(info.value)
    assert "cannot load VGG16 weights" in message and "resnet50.weights.h5" in message


def test_a_weights_file_of_a_similar_network_fails_too(weights_files):
    """VGG19's file into VGG16: Keras alone would load part of it and warn."""
    path, _ = weights_files["vgg19"]
    with pytest.raises(WeightsMismatchError, match=r"holds 32 arrays.* 26 variables"):
        ImageFeatureExtractor(backbone="vgg16", weights=path, input_size=32).fit()


def test_a_legacy_h5_file_of_another_network_fails_naming_it(tmp_path):
    """Keras's own files are in the legacy layout: one of ResNet50's into VGG16."""
    model = get_spec("resnet50").build(input_size=32)
    path = write_legacy_h5_weights(model, str(tmp_path / "resnet50_notop.h5"))
    with pytest.raises(WeightsMismatchError, match=r"VGG16 weights from .*50_notop"):
        ImageFeatureExtractor(backbone="vgg16", weights=path, input_size=32).fit()


def test_imagenet_weights_missing_offline_name_the_file_url_and_folder(
    tmp_path, monkeypatch
):
    from tlsk import WeightsUnavailableError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = get_spec("densenet121")
    with pytest.raises(WeightsUnavailableError) as info:
        ImageFeatureExtractor(backbone="densenet121").fit()
    message = str(info.value)
    assert spec.imagenet.url in message
    assert str(tmp_path / "models" / spec.imagenet.name) in message
    assert "TLSK_NO_DOWNLOAD" in message


def test_efficientnet_imagenet_weights_give_keras_own_imagenet_network(
    weights_files, tmp_path, monkeypatch
):
    """Keras builds EfficientNet differently for ImageNet weights; tlsk matches it.

    Keras's builder is made to find the test's file as its ImageNet download,
    and the registry to pin that file, so both sides load the same weights
    "as ImageNet's".
    """
    import keras
    import keras.src.applications.efficientnet as keras_efficientnet

    path, size = weights_files["efficientnet_b0"]
    spec = get_spec("efficientnet_b0")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / spec.imagenet.name  # legacy .h5, as Keras's
    model = spec.build(input_size=size)
    model.load_weights(path)
    write_legacy_h5_weights(model, str(cached))
    pin_weights(monkeypatch, cached, "http://127.0.0.1:9/never", "efficientnet_b0")
    monkeypatch.setattr(
        keras_efficientnet.file_utils, "get_file", lambda *args, **kwargs: path
    )
    images = photos(size)
    reference = keras.applications.EfficientNetB0(
        include_top=False, weights="imagenet", input_shape=(size, size, 3)
    )
    expected = reference.predict(images.astype("float32"), verbose=0).mean(axis=(1, 2))
    ours = (
        ImageFeatureExtractor(
            backbone="efficientnet_b0", input_size=size, precision="float32"
        )
        .fit()
        .transform(images)
    )
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * scale)
    plain = keras_features("efficientnet_b0", path, size, images)
    assert np.abs(ours - plain).max() > 1e-2 * scale, "the fix-up changes something"


def test_the_imagenet_file_is_fingerprinted_by_its_content(tmp_path, monkeypatch):
    path = tmp_path / "models" / get_spec("mobilenet_v3_large").imagenet.name
    path.parent.mkdir()
    model = get_spec("mobilenet_v3_large").build(input_size=32)
    write_legacy_h5_weights(model, str(path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    pin_weights(monkeypatch, path, "http://127.0.0.1:9/never", "mobilenet_v3_large")
    extractor = ImageFeatureExtractor(
        backbone="mobilenet_v3_large", input_size=32, precision="float32"
    ).fit()
    assert (
        extractor.fingerprint_["weights_sha256"]
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )
