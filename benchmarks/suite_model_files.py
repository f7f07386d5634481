"""Model files: joblib against skops, save and load time and file size.

Two models as ``tlsk train`` writes them: a bottleneck pipeline (VGG16
extractor + calibrated RBF SVM on 512-dimensional features) and a fine-tuned
VGG16 classifier (its network travels as ``.keras`` bytes in both formats).
Each is saved with :func:`tlsk.save_model` and loaded with
:func:`tlsk.load_model`, metadata and SHA-256 check included, in turns, best
of the rounds. Loading skops also reads the file's list of types and checks
each against tlsk's trust rule before anything is built. "fresh load" is
one load in a new process that has imported tlsk (as ``tlsk predict`` does):
for skops it includes importing ``skops.io``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from _suite import Section, seconds
from sklearn.pipeline import Pipeline

from tlsk import KerasFineTuneClassifier, VGG16FeatureExtractor, load_model, save_model
from tlsk.evaluation.classifiers import bottleneck_classifier

FORMATS = ("joblib", "skops")


def run(settings, workdir):
    os.makedirs(workdir, exist_ok=True)
    size, rounds = settings["model_files_size"], settings["model_files_rounds"]
    section = Section(
        f"Model files: joblib vs skops, save and load (best of {rounds} rounds)",
        (
            "model",
            "format",
            "file MB",
            "save s",
            "load s",
            "load / joblib load",
            "fresh load s",
        ),
    )
    models = {
        "bottleneck (VGG16 + calibrated SVM)": _bottleneck(settings, size),
        "fine-tuned VGG16": _finetuned(settings, size),
    }
    for name, model in models.items():
        measured = _measure(model, os.path.join(workdir, name.split()[0]), rounds)
        for kind in FORMATS:
            megabytes, save, load, fresh = measured[kind]
            ratio = load / measured["joblib"][2]
            section.add(
                name,
                kind,
                round(megabytes, 3),
                round(save, 3),
                round(load, 3),
                round(ratio, 2),
                round(fresh, 3),
            )
        section.target(f"{name}: skops load / joblib load", ratio, "<=", 3.0)
    section.notes.append(
        "save s and load s: the same process for every turn (skops and "
        "TensorFlow already imported), formats taking turns"
    )
    return section


def _bottleneck(settings, size):
    rng = np.random.default_rng(0)
    n = settings["model_files_images"]
    y = np.arange(n) % 6
    features = rng.normal(size=(n, 512)).astype(np.float32) + y[:, None] * 0.1
    classifier = bottleneck_classifier("svm", y).fit(features, y)
    extractor = VGG16FeatureExtractor(weights=settings["weights"], input_size=size)
    return Pipeline([("features", extractor.fit()), *classifier.steps])


def _finetuned(settings, size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    model = KerasFineTuneClassifier(
        weights=settings["weights"],
        input_size=size,
        head_epochs=1,
        finetune_epochs=0,
        augmentation=False,
        validation_fraction=0,
        verbose=0,
    )
    return model.fit(images, np.arange(12) % 2)


def _measure(model, stem, rounds):
    """``{format: (file MB, best save s, best load s)}``, formats taking turns."""
    saves, loads = {k: [] for k in FORMATS}, {k: [] for k in FORMATS}
    for _ in range(rounds):
        for kind in FORMATS:
            path = _path(stem, kind)
            saves[kind].append(seconds(save_model, model, path, force=True)[0])
            loads[kind].append(seconds(load_model, path)[0])
    return {
        kind: (
            os.path.getsize(_path(stem, kind)) / 1e6,
            min(saves[kind]),
            min(loads[kind]),
            _fresh_load_seconds(_path(stem, kind)),
        )
        for kind in FORMATS
    }


def _path(stem, kind):
    # m.joblib and m.skops would share one metadata file, m.json.
    return f"{stem}-{kind}.{kind}"


FRESH_LOAD = """
import sys, time
import tlsk
start = time.perf_counter()
tlsk.load_model(sys.argv[1])
print(time.perf_counter() - start)
"""


def _fresh_load_seconds(path):
    result = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, path],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if result.returncode:
        raise RuntimeError(f"loading {path!r} failed: {result.stderr[-2000:]}")
    return float(result.stdout.split()[-1])
