"""Engines: Keras against OpenVINO (float32, bfloat16, int8), in one run.

VGG16 cut at block5_pool with average pooling, the same weights for all.
On decoded, preprocessed arrays (the model-only bound): Keras float32, Keras
mixed_bfloat16 (where the CPU computes bfloat16 natively), OpenVINO float32,
bf16 and int8 (NNCF post-training quantization calibrated on the timed
images). From JPEG files: ``VGG16FeatureExtractor(engine=..., precision=...)
.transform(paths)`` on each engine and precision. Every run takes its turn
in each round; the best round counts. Each run's vectors are compared with
Keras float32's (cosine), and a LogisticRegression trained on each
configuration's features gives the accuracy on two labelled sets: scikit-learn's
digits (arrays) and photo crops written as JPEG files (six classes cut from
scikit-learn's sample photographs, half of them to train on).
"""

from __future__ import annotations

import os

import numpy as np
from _flops import model_gflops
from _suite import Section, cosine, digits, seconds, write_photos
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tlsk import VGG16FeatureExtractor
from tlsk.images.decode import read_image, resize_image
from tlsk.networks.backbone import BackboneConfig, get_backbone
from tlsk.networks.openvino import get_openvino_backbone, quantize_backbone
from tlsk.networks.precision import native_bfloat16, resolve_precision
from tlsk.networks.preprocessing import preprocess_vgg16

# (engine, precision) of every configuration measured.
KERAS = (("keras", "float32"), ("keras", "bfloat16"))
OPENVINO = (("openvino", "float32"), ("openvino", "bfloat16"), ("openvino", "int8"))
MIN_CALIBRATION = 32


def _array_runners(size, weights, arrays, batch):
    """``{(engine, precision): predict(arrays)}`` on decoded arrays."""
    runners = {}
    float32 = get_backbone(BackboneConfig(weights=weights, input_size=size))
    for engine, precision in KERAS + OPENVINO:
        if engine == "keras":
            config = BackboneConfig(
                weights=weights, input_size=size, precision=precision
            )
            backbone = get_backbone(config)
        else:
            quantization = None
            if precision == "int8":
                keys = [f"bench-{i}" for i in range(len(arrays))]
                quantization = quantize_backbone(float32, arrays, keys)
            backbone = get_openvino_backbone(float32, precision, quantization)
        runners[engine, precision] = lambda b=backbone: np.concatenate(
            [b.predict(arrays[i : i + batch]) for i in range(0, len(arrays), batch)]
        )
    return runners, model_gflops(float32.model, size)


def _extractor(engine, precision, size, weights, batch, fit_on):
    extractor = VGG16FeatureExtractor(
        weights=weights,
        input_size=size,
        batch_size=batch,
        precision=precision,
        engine=engine,
    )
    return extractor.fit(fit_on if precision == "int8" else None)


def _throughput(settings, workdir, section):
    size, batch, weights = settings["size"], settings["batch"], settings["weights"]
    n = max(settings["engine_images"], MIN_CALIBRATION)
    paths = write_photos(os.path.join(workdir, "photos"), n)
    decoded = np.stack([resize_image(read_image(path), size) for path in paths])
    arrays = preprocess_vgg16(decoded).astype(np.float32)
    runners, gflops = _array_runners(size, weights, arrays, batch)
    runs = {("arrays", *key): run for key, run in runners.items()}
    for engine, precision in (("auto", "auto"), *KERAS, *OPENVINO):
        extractor = _extractor(engine, precision, size, weights, batch, paths)
        runs["files", engine, precision] = lambda e=extractor: e.transform(paths)
    outputs = {key: run() for key, run in runs.items()}  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(settings["rounds"]):
        for key, run in runs.items():
            best[key] = min(best[key], seconds(run)[0])
    reference = outputs["arrays", "keras", "float32"]
    rates = {}
    for key in runs:
        rates[key] = n / best[key]
        similarity = cosine(outputs[key], reference)
        section.add(
            key[0],
            key[1],
            key[2],
            round(rates[key], 1),
            round(rates[key] * gflops, 1),
            round(float(similarity.mean()), 6),
            round(float(similarity.min()), 6),
        )
    return rates, outputs


def _labelled_sets(settings, workdir):
    """Yield ``(name, X_train, X_test, y_train, y_test)``: digits, photo crops."""
    from tlsk.images.sample_data import write_photo_folder

    yield "digits", *digits(settings["train"], settings["test"])
    paths, labels = write_photo_folder(
        os.path.join(workdir, "engine_photos"),
        per_class=settings["engine_photos"],
        size=settings["engine_photo_file_size"],
    )
    X_train, X_test, y_train, y_test = train_test_split(
        paths, labels, test_size=0.5, stratify=labels, random_state=0
    )
    yield "photo crops", X_train, X_test, y_train, y_test


def _accuracy(settings, workdir):
    """``{(data set, engine, precision): accuracy}`` on each engine."""
    size = settings["digit_size"]
    scores = {}
    for name, X_train, X_test, y_train, y_test in _labelled_sets(settings, workdir):
        for engine, precision in KERAS + OPENVINO:
            extractor = _extractor(
                engine, precision, size, settings["weights"], settings["batch"], X_train
            )
            classifier = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=3000)
            )
            classifier.fit(extractor.transform(X_train), y_train)
            test = extractor.transform(X_test)
            scores[name, engine, precision] = float(classifier.score(test, y_test))
        scores[name, "sizes"] = (len(X_train), len(X_test))
    return scores


def run(settings, workdir):
    size, n = settings["size"], max(settings["engine_images"], MIN_CALIBRATION)
    auto = resolve_precision("auto")
    native = native_bfloat16()
    section = Section(
        f"Engines: VGG16 block5_pool + avg at {size} px, {n} images, batch "
        f"{settings['batch']}, best of {settings['rounds']} interleaved rounds "
        f"(auto = {auto}, engine auto = keras unless int8); cosine against Keras "
        "float32 on arrays; accuracy on digits and photo crops below",
        (
            "input",
            "engine",
            "precision",
            "images/s",
            "GFLOP/s",
            "mean cosine",
            "min cosine",
        ),
    )
    rates, outputs = _throughput(settings, workdir, section)
    scores = _accuracy(settings, workdir)
    for (name, *config), score in scores.items():
        if config == ["sizes"]:
            continue
        n_train, n_test = scores[name, "sizes"]
        section.notes.append(
            f"{name} accuracy ({n_train} train / {n_test} test at "
            f"{settings['digit_size']} px, LogisticRegression), {config[0]} "
            f"{config[1]}: {score:.4f}"
        )
    _targets(section, rates, outputs, scores, native, auto)
    section.notes.append(
        f"weights: {settings['weights'] or 'seeded random (no ImageNet file here)'}"
    )
    return section


def _targets(section, rates, outputs, scores, native, auto):
    no_amx = None if native else "no native bfloat16 (no AMX) on this CPU"
    fastest_arrays = max(
        rates["arrays", engine, auto] for engine in ("keras", "openvino")
    )
    section.target(
        f"tlsk auto from files / fastest runtime on arrays in {auto}",
        rates["files", "auto", "auto"] / fastest_arrays,
        ">=",
        1.0,
    )
    section.target(
        "tlsk int8 from files / Keras bfloat16 on arrays",
        rates["files", "openvino", "int8"] / rates["arrays", "keras", "bfloat16"],
        ">=",
        1.8,
        why_not_applicable=no_amx,
    )
    reference = outputs["arrays", "keras", "float32"]
    section.target(
        "mean cosine, int8 files vs Keras float32",
        float(cosine(outputs["files", "openvino", "int8"], reference).mean()),
        ">=",
        0.999,
    )
    for name in ("digits", "photo crops"):
        section.target(
            f"{name} accuracy points lost in int8",
            100 * (scores[name, "keras", "float32"] - scores[name, "openvino", "int8"]),
            "<=",
            1.0,
        )
