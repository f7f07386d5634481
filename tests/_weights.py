"""Weights files written by the tests: a random VGG16 (no top) in both formats."""

import dataclasses
import hashlib
from pathlib import Path

import h5py
import numpy as np


def random_vgg16_notop(seed, input_size=32):
    """A Keras VGG16 without top, with weights drawn from ``seed``."""
    import keras

    model = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(input_size, input_size, 3)
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            scale = np.sqrt(2.0 / np.prod(kernel.shape[:-1]))
            layer.set_weights(
                [
                    rng.normal(0, scale, kernel.shape).astype("float32"),
                    rng.normal(0, 0.01, bias.shape).astype("float32"),
                ]
            )
    return model


def write_keras3_weights(model, path):
    """``model.save_weights``: Keras 3's ``.weights.h5`` format."""
    model.save_weights(path)
    return path


def write_legacy_h5_weights(model, path):
    """The legacy Keras weights layout, as in Keras's own ImageNet files.

    Root attribute ``layer_names``; one group per layer with a
    ``weight_names`` attribute naming its datasets, trainable weights first
    (the order Keras's legacy loader assigns them in).
    """
    with h5py.File(path, "w") as file:
        names = [layer.name for layer in model.layers]
        file.attrs["layer_names"] = [name.encode() for name in names]
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = file.create_group(layer.name)
            weight_names = []
            weights = layer.trainable_weights + layer.non_trainable_weights
            for index, variable in enumerate(weights):
                name = f"{layer.name}_{index}:0"
                group.create_dataset(name, data=np.asarray(variable))
                weight_names.append(name.encode())
            group.attrs["weight_names"] = weight_names
    return path


def pin_weights(monkeypatch, source, url, backbone="vgg16", top=False, digest=None):
    """Make the registry pin ``source`` (its SHA-256 and size), served at ``url``.

    The test's stand-in for a file Keras publishes: the registry entry of
    ``backbone`` is replaced for the test only. ``digest`` pins another
    SHA-256 (a download that is not the pinned file).
    """
    data = Path(source).read_bytes()
    return _replace_pinned(
        monkeypatch,
        backbone,
        top,
        url=url,
        digest=digest or hashlib.sha256(data).hexdigest(),
        algorithm="sha256",
        size=len(data),
    )


def pin_url(monkeypatch, url, backbone="vgg16", top=False):
    """Make the registry's file of ``backbone`` come from ``url`` (digest kept)."""
    return _replace_pinned(monkeypatch, backbone, top, url=url)


def _replace_pinned(monkeypatch, backbone, top, **changes):
    from tlsk.networks.registry import BACKBONES

    spec = BACKBONES[backbone]
    field = "imagenet_top" if top else "imagenet"
    pinned = dataclasses.replace(getattr(spec, field), **changes)
    monkeypatch.setitem(
        BACKBONES, backbone, dataclasses.replace(spec, **{field: pinned})
    )
    return pinned
