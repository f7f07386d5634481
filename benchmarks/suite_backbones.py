"""Every registered backbone: tlsk from JPEG files against plain Keras ``predict``.

For each network, at its native input size, in float32 and in ``auto`` (the
precision tlsk picks on this machine):

- ``keras predict``: ``keras.applications.<Builder>(include_top=False,
  pooling="avg")`` on images already decoded, resized and passed through the
  network's own ``preprocess_input`` in memory, the best of ``predict`` and
  ``predict_on_batch`` (the model-only bound; bfloat16 the Keras way, with the
  global ``mixed_bfloat16`` policy, put back afterwards);
- ``tlsk from files``: ``ImageFeatureExtractor(backbone=...).transform(paths)``,
  which also reads, decodes and resizes every JPEG file;
- ``tlsk from arrays``: the same on the decoded, resized uint8 images, to tell
  tlsk's own overhead from the cost of decoding (on 2 cores, decoding takes
  CPU time from the network, which ``keras predict`` never pays).

Both sides load the same weights file (ImageNet's when Keras's cache has it,
else the Keras builder's own random initialisation saved once), so they do
the same arithmetic. Each run gets an untimed warm-up; then the runs of one
network take turns for ``rounds`` rounds and each keeps its best. The number
of images per network is chosen from its cost so that each run lasts a few
seconds.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
from _flops import model_gflops
from _suite import Section, keras_policy, seconds, write_photos

from tlsk import ImageFeatureExtractor, clear_caches, list_backbones
from tlsk.images.decode import read_image, resize_image
from tlsk.networks.backbone import imagenet_weights_path
from tlsk.networks.precision import keras_dtype, resolve_precision
from tlsk.networks.registry import BackboneSpec
from tlsk.networks.weights import WeightsMismatchError, WeightsUnavailableError


def run(settings, workdir):
    import keras

    auto = resolve_precision("auto")
    rounds, batch = settings["rounds"], settings["batch"]
    section = Section(
        f"Backbones: tlsk from JPEG files vs Keras predict on decoded arrays, at "
        f"each network's native size, batch {batch}, best of {rounds} interleaved "
        f"rounds (auto = {auto} here)",
        (
            "backbone",
            "size",
            "dim",
            "GFLOP/image",
            "precision",
            "images",
            "keras images/s",
            "tlsk images/s",
            "tlsk / keras",
            "tlsk arrays / keras",
            "tlsk GFLOP/s",
        ),
    )
    photos = write_photos(os.path.join(workdir, "photos"), settings["backbone_images"])
    chosen = settings.get("backbones") or [
        spec.name for spec in list_backbones() if isinstance(spec, BackboneSpec)
    ]
    for name in chosen:
        for row in _measure(name, photos, settings, workdir, auto):
            section.add(*row)
            precision, ratio = row[4], row[8]
            section.target(
                f"{name} tlsk {precision} from files / keras predict",
                ratio,
                ">=",
                0.95,
            )
        keras.backend.clear_session()
        clear_caches()
    section.notes.append(
        "weights: ImageNet's where Keras's cache has the file, else the Keras "
        "builder's random initialisation saved to a file both sides load"
    )
    section.notes.append(
        "GFLOP/image: TensorFlow's profiler on the network without its top at "
        "that size (the registry's figure at the native size)"
    )
    return section


def _measure(name, photos, settings, workdir, auto):
    """The rows of one network: float32 and auto, Keras and tlsk, in turns."""
    import keras

    from tlsk.networks.registry import get_spec

    spec = get_spec(name)
    size = settings.get("backbone_size") or spec.native_size
    batch, rounds = settings["batch"], settings["rounds"]
    weights = _weights_file(spec, size, workdir)
    gflops = model_gflops(spec.build(input_size=size), size)
    # A few seconds a run at ~100 GFLOP/s, in whole batches.
    n = int(np.clip(settings["backbone_seconds"] * 100 / gflops, batch, len(photos)))
    n -= n % batch if n >= batch else 0
    paths = photos[:n]
    module = importlib.import_module(f"keras.applications.{spec.keras_module}")
    decoded = np.stack([resize_image(read_image(p), size) for p in paths])
    arrays = module.preprocess_input(decoded.astype("float32"))
    precisions = ("float32", auto) if auto != "float32" else ("float32",)
    runs = {}
    for precision in precisions:
        with keras_policy(keras_dtype(precision)):
            model = getattr(keras.applications, spec.builder)(
                include_top=False,
                weights=weights,
                pooling="avg",
                input_shape=(size, size, 3),
            )
        extractor = ImageFeatureExtractor(
            backbone=name,
            weights=weights,
            input_size=size,
            batch_size=batch,
            precision=precision,
        ).fit()
        runs["keras predict", precision] = lambda m=model: m.predict(
            arrays, batch_size=batch, verbose=0
        )
        runs["keras predict_on_batch", precision] = lambda m=model: [
            m.predict_on_batch(arrays[i : i + batch]) for i in range(0, n, batch)
        ]
        runs["tlsk", precision] = lambda e=extractor: e.transform(paths)
        runs["tlsk arrays", precision] = lambda e=extractor: e.transform(decoded)
        # Warm-up: graph tracing and the first allocation, untimed.
        model.predict(arrays[:batch], batch_size=batch, verbose=0)
        model.predict_on_batch(arrays[:batch])
        extractor.transform(paths[:batch])
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for key, function in runs.items():
            best[key] = min(best[key], seconds(function)[0])
    rows = []
    for precision in precisions:
        keras_rate = n / min(
            best["keras predict", precision], best["keras predict_on_batch", precision]
        )
        tlsk_rate = n / best["tlsk", precision]
        arrays_rate = n / best["tlsk arrays", precision]
        shown = f"auto ({auto})" if precision == auto != "float32" else precision
        rows.append(
            (
                name,
                size,
                spec.dims[-1],
                round(gflops, 2),
                shown,
                n,
                round(keras_rate, 2),
                round(tlsk_rate, 2),
                round(tlsk_rate / keras_rate, 3),
                round(arrays_rate / keras_rate, 3),
                round(tlsk_rate * gflops, 1),
            )
        )
    return rows


def _weights_file(spec, size, workdir):
    """ImageNet's file when cached, else Keras's random initialisation, saved."""
    try:
        return imagenet_weights_path(download=False, backbone=spec.name)
    except (WeightsUnavailableError, WeightsMismatchError):
        path = os.path.join(workdir, f"{spec.name}.weights.h5")
        spec.build(input_size=size).save_weights(path)
        return path
