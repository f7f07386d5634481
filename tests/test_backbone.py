"""The truncated VGG16: configurations, weights sources, offline behaviour."""

import hashlib
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from tests._weights import (
    pin_url,
    pin_weights,
    random_vgg16_notop,
    write_keras3_weights,
    write_legacy_h5_weights,
)
from tlsk import clear_caches
from tlsk.networks import backbone as bb
from tlsk.networks.backbone import BackboneConfig, get_backbone


def _tiny(**kwargs):
    return BackboneConfig(**{"weights": None, "input_size": 32, **kwargs})


def _batch(n=3, size=32, seed=0):
    return (
        np.random.default_rng(seed)
        .uniform(-120, 120, (n, size, size, 3))
        .astype("float32")
    )


@pytest.mark.parametrize(
    "layer, pooling, input_size, dim",
    [
        ("block5_pool", "avg", 32, 512),
        ("block5_pool", "max", 32, 512),
        ("block5_pool", "flatten", 64, 2 * 2 * 512),
        ("block4_pool", "flatten", 32, 2 * 2 * 512),
        ("block3_conv3", "avg", 32, 256),
    ],
)
def test_output_width_follows_layer_pooling_and_size(layer, pooling, input_size, dim):
    backbone = get_backbone(_tiny(layer=layer, pooling=pooling, input_size=input_size))
    assert backbone.output_dim == dim
    features = backbone.predict(_batch(2, input_size))
    assert features.shape == (2, dim) and features.dtype == np.float32


def test_flatten_at_224_gives_the_classic_25088_values():
    config = BackboneConfig(weights=None, pooling="flatten")
    assert get_backbone(config).output_dim == 7 * 7 * 512 == 25088


def test_backbone_is_built_once_per_configuration():
    assert get_backbone(_tiny()) is get_backbone(_tiny())
    assert get_backbone(_tiny()) is not get_backbone(_tiny(pooling="max"))


def test_random_initialisation_is_the_same_in_every_build():
    first = get_backbone(_tiny()).predict(_batch())
    clear_caches()
    second = get_backbone(_tiny()).predict(_batch())
    np.testing.assert_array_equal(first, second)


def test_backbone_refuses_to_be_pickled():
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(get_backbone(_tiny()))


@pytest.mark.parametrize("writer", [write_keras3_weights, write_legacy_h5_weights])
def test_weights_file_written_by_the_test_is_loaded(tmp_path, writer):
    import keras

    reference = random_vgg16_notop(seed=7)
    suffix = ".weights.h5" if writer is write_keras3_weights else ".h5"
    path = str(tmp_path / f"vgg16{suffix}")
    writer(reference, path)
    backbone = get_backbone(_tiny(weights=path))
    x = _batch()
    expected = keras.layers.GlobalAveragePooling2D()(reference.predict(x, verbose=0))
    np.testing.assert_allclose(backbone.predict(x), np.asarray(expected), rtol=1e-5)
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert backbone.fingerprint["weights_sha256"] == sha


def test_a_weights_file_of_another_network_is_refused(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(bb.WeightsMismatchError, match="cannot load VGG16 weights"):
        get_backbone(_tiny(weights=path))


def test_weights_file_replaced_with_the_same_size_and_mtime_is_noticed(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    write_keras3_weights(random_vgg16_notop(seed=1), str(path))
    first = get_backbone(_tiny(weights=str(path)))
    stat = path.stat()
    # As `cp -p` would: other bytes, same size, same mtime.
    write_keras3_weights(random_vgg16_notop(seed=2), str(path))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    second = get_backbone(_tiny(weights=str(path)))
    assert second.fingerprint["weights_sha256"] != first.fingerprint["weights_sha256"]
    assert not np.allclose(second.predict(_batch()), first.predict(_batch()))


@pytest.mark.parametrize(
    "weights, match",
    [
        ("imagenett", "not a file"),
        (3, "received 3"),
    ],
)
def test_bad_weights_values_are_named(weights, match):
    with pytest.raises(ValueError, match=match):
        bb.resolve_weights(weights)


def test_weights_file_must_be_h5(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"'\.weights\.h5' or legacy '\.h5'"):
        bb.resolve_weights(path)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    # These tests download from file:// or refused loopback URLs only.
    monkeypatch.delenv("TLSK_NO_DOWNLOAD", raising=False)
    return tmp_path / "keras_home"


def _pin(monkeypatch, path, url, **kwargs):
    pin_weights(monkeypatch, path, url, **kwargs)


def test_offline_without_cached_weights_fails_at_once_naming_the_file(
    keras_home, monkeypatch
):
    # Port 9 on loopback refuses at once, as an unreachable host would.
    pin_url(monkeypatch, "http://127.0.0.1:9/vgg16.h5")
    start = time.monotonic()
    with pytest.raises(bb.WeightsUnavailableError) as info:
        bb.imagenet_weights_path()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert str(keras_home / "models" / bb.IMAGENET_WEIGHTS_FILE) in message
    assert "copy it to" in message
    assert not list((keras_home / "models").iterdir()), "no partial file left"


def test_imagenet_weights_are_downloaded_into_keras_cache_and_verified(
    tmp_path, keras_home, monkeypatch
):
    source = str(tmp_path / "published.h5")
    write_legacy_h5_weights(random_vgg16_notop(seed=3), source)
    _pin(monkeypatch, source, (tmp_path / "published.h5").as_uri())
    path = bb.imagenet_weights_path()
    assert path == str(keras_home / "models" / bb.IMAGENET_WEIGHTS_FILE)
    assert Path(path).read_bytes() == Path(source).read_bytes()
    backbone = get_backbone(_tiny(weights="imagenet"))
    assert backbone.fingerprint["weights_sha256"] == bb.file_sha256(source)


def test_a_bad_download_never_lands_in_keras_cache(tmp_path, keras_home, monkeypatch):
    source = str(tmp_path / "published.h5")
    write_legacy_h5_weights(random_vgg16_notop(seed=3), source)
    # The pinned digest is not that of what arrives.
    _pin(monkeypatch, source, (tmp_path / "published.h5").as_uri(), digest="0" * 64)
    with pytest.raises(bb.WeightsMismatchError, match="SHA-256 0000"):
        bb.imagenet_weights_path()
    assert not any((keras_home / "models").iterdir())


def test_tampered_imagenet_weights_are_refused(tmp_path, keras_home, monkeypatch):
    source = str(tmp_path / "published.h5")
    write_legacy_h5_weights(random_vgg16_notop(seed=3), source)
    _pin(monkeypatch, source, (tmp_path / "published.h5").as_uri())
    cached = keras_home / "models" / bb.IMAGENET_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    data = bytearray(Path(source).read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(bb.WeightsMismatchError, match="damaged or not the expected"):
        bb.imagenet_weights_path()


def test_no_download_switch_fails_at_once_without_touching_the_url(
    keras_home, monkeypatch
):
    monkeypatch.setenv("TLSK_NO_DOWNLOAD", "1")
    pin_url(monkeypatch, "http://127.0.0.1:9/never")
    with pytest.raises(bb.WeightsUnavailableError, match="TLSK_NO_DOWNLOAD"):
        bb.imagenet_weights_path()
