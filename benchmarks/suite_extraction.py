"""Extraction from JPEG files: tlsk against the ways people do it with plain Keras.

All runs read the same JPEG files and use VGG16 cut at block5_pool with
average pooling and the same weights, batch size and input size:

- ``keras predict`` / ``keras predict_on_batch``: the model-only bound, on
  images already decoded, resized and preprocessed in memory;
- ``keras image_dataset_from_directory + predict``: Keras's own file pipeline
  (tf.data, parallel decoding, prefetch);
- ``keras load_img + predict, one image at a time``: the tutorial loop;
- ``tlsk``: ``VGG16FeatureExtractor(precision=...).transform(paths)``.

Each gets one untimed warm-up batch (graph tracing). Rates are also given in
achieved GFLOP/s beside the matrix-multiply peak measured in the same run.
"""

from __future__ import annotations

import os

import numpy as np
from _flops import model_gflops
from _suite import (
    Section,
    best_seconds,
    cosine,
    keras_policy,
    seconds,
    write_photos,
)

from tlsk import VGG16FeatureExtractor
from tlsk.images.decode import read_image, resize_image
from tlsk.networks.precision import keras_dtype, resolve_precision
from tlsk.networks.preprocessing import preprocess_vgg16


def matmul_peak(precision, sizes=(1024, 2048, 4096), repeat=3):
    """``(GFLOP/s, how)``: the fastest square matrix product found on this machine.

    TensorFlow's matmul at several sizes and, for float32, NumPy's BLAS too
    (often the faster here): the practical peak that VGG16's convolutions,
    which are matrix products underneath, can be held against.
    """
    import tensorflow as tf

    best = (0.0, "")
    for n in sizes:
        if precision == "float32":
            a, b = (np.random.default_rng(i).random((n, n), np.float32) for i in (1, 2))
            rate = 2 * n**3 / best_seconds(lambda a=a, b=b: a @ b, repeat) / 1e9
            best = max(best, (rate, f"NumPy BLAS, n={n}"))
        dtype = tf.float32 if precision == "float32" else tf.bfloat16
        x = tf.cast(tf.random.uniform((n, n), seed=1), dtype)
        y = tf.cast(tf.random.uniform((n, n), seed=2), dtype)
        product = tf.function(lambda x=x, y=y: tf.matmul(x, y))
        product().numpy()
        rate = 2 * n**3 / best_seconds(lambda p=product: p().numpy(), repeat) / 1e9
        best = max(best, (rate, f"TensorFlow matmul, n={n}"))
    return best


def keras_vgg16(size, precision, weights):
    """Plain ``keras.applications.VGG16`` as its users build it, in ``precision``.

    Mixed precision the Keras way: the global policy, put back afterwards.
    """
    import keras

    with keras_policy(keras_dtype(precision)):
        return keras.applications.VGG16(
            include_top=False,
            weights=weights,
            pooling="avg",
            input_shape=(size, size, 3),
        )


def run(settings, workdir):
    import keras

    size, batch, n = settings["size"], settings["batch"], settings["images"]
    rounds, weights = settings["rounds"], settings["weights"]
    folder = os.path.join(workdir, "photos")
    paths = write_photos(folder, n)
    auto = resolve_precision("auto")
    section = Section(
        f"Extraction: {n} JPEG files (320-480 x 240-360 px) -> {size} px, batch "
        f"{batch}, block5_pool + avg, best of {rounds} interleaved rounds "
        f"(auto = {auto} here)",
        ("run", "precision", "images/s", "GFLOP/s", "% of matmul peak"),
    )
    found = {p: matmul_peak(p) for p in ("float32", "bfloat16")}
    peaks = {p: rate for p, (rate, _) in found.items()}
    arrays = preprocess_vgg16(
        np.stack([resize_image(read_image(path), size) for path in paths])
    )
    models = {p: keras_vgg16(size, p, weights) for p in ("float32", "bfloat16")}
    flops = model_gflops(models["float32"], size) * 1e9
    extractors = {
        p: VGG16FeatureExtractor(
            weights=weights, input_size=size, batch_size=batch, precision=p
        ).fit()
        for p in ("float32", "auto", "bfloat16")
    }
    runs = {}
    for precision, model in models.items():
        runs["keras predict, decoded arrays", precision] = lambda m=model: m.predict(
            arrays, batch_size=batch, verbose=0
        )
        runs["keras predict_on_batch, decoded arrays", precision] = lambda m=model: [
            m.predict_on_batch(arrays[i : i + batch]) for i in range(0, n, batch)
        ]
    for precision, extractor in extractors.items():
        runs["tlsk from files", precision] = lambda e=extractor: e.transform(paths)
    dataset = _keras_dataset(folder, size, batch)
    # Keras's pipelines at auto's precision: the comparison is of pipelines.
    auto_model = models[auto]
    runs["keras image_dataset_from_directory + predict", auto] = lambda: (
        auto_model.predict(dataset, verbose=0)
    )
    n_loop = settings["loop_images"]
    runs["keras load_img + predict, one image at a time", auto] = lambda: [
        _predict_one(path, size, auto_model) for path in paths[:n_loop]
    ]
    counts = {name: n for name in runs}
    counts["keras load_img + predict, one image at a time", auto] = n_loop

    # Warm-up (graph tracing), then rounds in which every run takes its turn,
    # so that a slow minute on a shared machine hits all of them alike.
    for model in models.values():
        model.predict(arrays[:batch], batch_size=batch, verbose=0)
        model.predict_on_batch(arrays[:batch])
    for extractor in extractors.values():
        extractor.transform(paths[:batch])
    auto_model.predict(dataset.take(1), verbose=0)
    _predict_one(paths[0], size, auto_model)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, function in runs.items():
            best[name] = min(best[name], seconds(function)[0])
    rates = {name: counts[name] / best[name] for name in runs}
    features = {p: e.transform(paths) for p, e in extractors.items()}

    for (name, precision), rate in rates.items():
        shown = f"auto ({auto})" if precision == "auto" else precision
        gflops = rate * flops / 1e9
        peak = peaks[auto if precision == "auto" else precision]
        section.add(
            name, shown, round(rate, 2), round(gflops, 1), round(100 * gflops / peak, 1)
        )
    for precision, (peak, how) in found.items():
        section.add(f"matmul peak ({how})", precision, None, round(peak, 1), 100.0)
    _targets(section, rates, auto)
    similarity = cosine(features["float32"], features["bfloat16"])
    section.target(
        "mean cosine, bfloat16 vs float32 features (these files)",
        float(similarity.mean()),
        ">=",
        0.999,
    )
    section.notes.append(
        f"cosine similarity of bfloat16 to float32 features: mean "
        f"{similarity.mean():.6f}, min {similarity.min():.6f}; VGG16: "
        f"{flops / 1e9:.2f} GFLOP per image at {size} px (TensorFlow's profiler)"
    )
    section.notes.append(
        f"the one-image-at-a-time loop ran on the first {n_loop} files; "
        f"weights: {weights or 'seeded random (same cost as ImageNet)'}"
    )
    models.clear()
    keras.backend.clear_session()
    return section


def _targets(section, rates, auto):
    def rate(name, precision):
        return rates[name, precision]

    bound = {
        p: max(
            rate("keras predict, decoded arrays", p),
            rate("keras predict_on_batch, decoded arrays", p),
        )
        for p in ("float32", "bfloat16")
    }
    tlsk_auto = rate("tlsk from files", "auto")
    for p in ("float32", "bfloat16"):
        section.target(
            f"tlsk {p} from files / model-only {p}",
            rate("tlsk from files", p) / bound[p],
            ">=",
            0.95,
        )
    section.target(
        "tlsk auto / tlsk float32",
        tlsk_auto / rate("tlsk from files", "float32"),
        ">=",
        6.0,
        why_not_applicable=(
            "auto is float32 here (no native bfloat16)" if auto == "float32" else None
        ),
    )
    section.target(
        f"tlsk auto / one-image-at-a-time loop ({auto})",
        tlsk_auto / rate("keras load_img + predict, one image at a time", auto),
        ">=",
        5.0,
    )
    section.target(
        f"tlsk auto / image_dataset_from_directory + predict ({auto})",
        tlsk_auto / rate("keras image_dataset_from_directory + predict", auto),
        ">=",
        1.0,
    )


def _keras_dataset(folder, size, batch):
    """Keras's file pipeline: image_dataset_from_directory, map, prefetch."""
    import keras
    import tensorflow as tf

    return (
        keras.utils.image_dataset_from_directory(
            folder,
            labels=None,
            image_size=(size, size),
            batch_size=batch,
            shuffle=False,
            interpolation="bilinear",
            verbose=False,
        )
        .map(
            keras.applications.vgg16.preprocess_input,
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def _predict_one(path, size, model):
    """The tutorial loop's body: load_img, img_to_array, preprocess_input, predict."""
    import keras

    image = keras.utils.load_img(path, target_size=(size, size))
    x = keras.utils.img_to_array(image)[np.newaxis]
    return model.predict(keras.applications.vgg16.preprocess_input(x), verbose=0)
