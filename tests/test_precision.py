"""precision: float32 and bfloat16 agree, "auto" follows the hardware, and the
user's global Keras dtype policy is never touched."""

import pickle

import numpy as np
import pytest

import tlsk.networks.precision
from tests._datasets import coloured_images
from tlsk import (
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    VGG16FeatureExtractor,
    clear_caches,
)
from tlsk.networks.backbone import BackboneConfig, get_backbone
from tlsk.networks.precision import cpu_flags, resolve_precision

ZEN3_FLAGS = {"fpu", "sse4_2", "avx", "avx2", "fma", "sha_ni", "vaes"}
SAPPHIRE_RAPIDS_FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
COOPER_LAKE_FLAGS = {"avx2", "avx512f", "avx512_bf16"}


@pytest.fixture
def machine(monkeypatch):
    """Pretend the CPU has the given flags, and no GPU."""

    def pretend(flags):
        monkeypatch.setattr(tlsk.networks.precision, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(tlsk.networks.precision, "_gpu_has_bfloat16", lambda: None)

    return pretend


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (ZEN3_FLAGS, "float32"),
        (set(), "float32"),
        (SAPPHIRE_RAPIDS_FLAGS, "bfloat16"),
        (COOPER_LAKE_FLAGS, "bfloat16"),
    ],
)
def test_auto_picks_bfloat16_only_where_the_cpu_computes_it(machine, flags, expected):
    machine(flags)
    assert resolve_precision("auto") == expected


@pytest.mark.parametrize(("gpu", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_a_visible_gpu_decides_alone(monkeypatch, gpu, expected):
    # An AMX CPU beside a V100: TensorFlow computes on the GPU, which has no
    # native bfloat16; an Ampere GPU beside an old CPU: it does.
    cpu = SAPPHIRE_RAPIDS_FLAGS if not gpu else ZEN3_FLAGS
    monkeypatch.setattr(tlsk.networks.precision, "cpu_flags", lambda: set(cpu))
    monkeypatch.setattr(tlsk.networks.precision, "_gpu_has_bfloat16", lambda: gpu)
    assert resolve_precision("auto") == expected


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_explicit_precision_is_kept_whatever_the_hardware(machine, precision):
    machine(ZEN3_FLAGS)
    assert resolve_precision(precision) == precision


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="precision must be one of .*'float16'"):
        resolve_precision("float16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_bf16\n\n"
    )
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()


def test_extractor_resolves_auto_at_fit_into_the_fingerprint(machine):
    machine(SAPPHIRE_RAPIDS_FLAGS)
    extractor = VGG16FeatureExtractor(weights=None, input_size=32).fit()
    assert extractor.precision_ == "bfloat16"
    assert extractor.fingerprint_["precision"] == "bfloat16"
    machine(ZEN3_FLAGS)
    assert VGG16FeatureExtractor(weights=None, input_size=32).fit().precision_ == (
        "float32"
    )


def _extract(precision, images, **params):
    extractor = VGG16FeatureExtractor(
        weights=None, input_size=64, precision=precision, **params
    )
    return extractor.fit_transform(images)


def _cosine(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(
    ("layer", "pooling"), [("block5_pool", "avg"), ("block4_conv3", "max")]
)
def test_bfloat16_features_agree_with_float32(layer, pooling):
    images, _ = coloured_images(12, size=64, seed=3)
    full = _extract("float32", images, layer=layer, pooling=pooling)
    mixed = _extract("bfloat16", images, layer=layer, pooling=pooling)
    assert mixed.dtype == np.float32 and mixed.shape == full.shape
    assert not np.array_equal(full, mixed), "bfloat16 computed nothing in bfloat16"
    assert _cosine(full, mixed).min() > 0.999


def test_bfloat16_vectors_never_served_as_float32(tmp_path):
    images, _ = coloured_images(6, size=64, seed=4)
    cache = tmp_path / "features.h5"
    mixed = _extract("bfloat16", images, cache=cache)
    full = _extract("float32", images, cache=cache)
    assert not np.array_equal(full, mixed)
    np.testing.assert_array_equal(full, _extract("float32", images))
    np.testing.assert_array_equal(mixed, _extract("bfloat16", images, cache=cache))


def _policy():
    import keras

    return keras.config.dtype_policy().name


@pytest.mark.parametrize("users_policy", ["float32", "mixed_float16"])
def test_the_users_global_dtype_policy_is_never_changed(users_policy):
    import keras

    keras.config.set_dtype_policy(users_policy)  # conftest restores it after
    images, labels = coloured_images(8, size=32, seed=5)
    for precision in ("float32", "bfloat16"):
        extractor = VGG16FeatureExtractor(
            weights=None, input_size=32, precision=precision
        )
        features = extractor.fit_transform(images)
        assert features.dtype == np.float32 and np.isfinite(features).all()
        SmallCNNClassifier(
            filters=(4,),
            dense_units=4,
            epochs=1,
            input_size=32,
            validation_fraction=0,
            precision=precision,
            random_state=0,
        ).fit(images, labels)
        assert _policy() == users_policy


def test_float32_extractor_computes_in_float32_under_a_users_mixed_policy():
    import keras

    images, _ = coloured_images(4, size=32, seed=6)
    expected = _extract("float32", images)
    keras.config.set_dtype_policy("mixed_float16")
    keras.config.set_floatx("float16")
    clear_caches()  # built again, under the user's settings
    np.testing.assert_allclose(_extract("float32", images), expected, rtol=1e-5)
    model = get_backbone(
        BackboneConfig(weights=None, input_size=64, precision="float32")
    ).model
    computing = [
        layer for layer in model.layers if type(layer).__name__ != "InputLayer"
    ]
    assert {layer.dtype_policy.name for layer in computing} == {"float32"}
    assert model.input.dtype == "float32"


def _compute_dtypes(model):
    dtypes = {}
    for layer in model.layers:
        for inner in getattr(layer, "layers", [layer]):
            if inner.weights:
                dtypes[inner.name] = inner.dtype_policy.compute_dtype
    return dtypes


def test_fine_tuning_in_bfloat16_keeps_the_softmax_in_float32():
    images, labels = coloured_images(8, size=32, seed=7)
    model = KerasFineTuneClassifier(
        weights=None,
        input_size=32,
        dense_units=(8,),
        head_epochs=1,
        finetune_epochs=1,
        validation_fraction=0,
        precision="bfloat16",
        random_state=0,
    ).fit(images, labels)
    assert model.precision_ == "bfloat16"
    dtypes = _compute_dtypes(model.model_)
    assert dtypes["block5_conv3"] == "bfloat16"
    assert dtypes["head_dense1"] == "bfloat16"
    assert dtypes["predictions"] == "float32"
    proba = model.predict_proba(images)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # The saved model (.keras bytes, safe_mode) keeps its precision.
    restored = pickle.loads(pickle.dumps(model))
    assert _compute_dtypes(restored.model_) == dtypes
    np.testing.assert_array_equal(restored.predict_proba(images), proba)


def test_bfloat16_classifier_learns_what_float32_learns():
    images, labels = coloured_images(24, size=32, seed=8)
    accuracy = {}
    for precision in ("float32", "bfloat16"):
        model = SmallCNNClassifier(
            filters=(8, 8),
            dense_units=16,
            epochs=15,
            input_size=32,
            augmentation=False,
            validation_fraction=0,
            precision=precision,
            random_state=0,
        ).fit(images, labels)
        accuracy[precision] = model.score(images, labels)
    assert accuracy["float32"] >= 0.9
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) <= 0.1
