"""The whole recipe, offline, on handwritten digits that ship with scikit-learn.

Writes the 8x8 digits as PNG files in a folder per class, then: checks the
folder, splits it into train / validation / test, trains the from-scratch
baseline (SmallCNNClassifier), bottleneck features with logistic regression
and with an SVM, and a fine-tuned VGG16; evaluates each on the held-out test
images; predicts a few of them; prints a side-by-side table and writes a
report folder: PNG plots, metrics.json, and the models.

With the ImageNet weights in Keras's cache (or downloadable) VGG16 starts
from them; otherwise the demo says so once and uses a seeded random
initialisation, and the transfer methods then lose most of their advantage:
random filters still describe strokes, but not the way filters learnt on a
million photos do.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from tlsk._util.files import resolved, write_atomically
from tlsk._util.output_folders import (
    check_only_written,
    read_folder_marker,
    write_folder_marker,
)
from tlsk.cli import CommandError
from tlsk.cli._output import counted, note
from tlsk.persistence.model_files import save_model

# What a demo folder's marker says it is (tlsk._util.output_folders): a finished
# demo's, listing its files, or one that runs or was killed.
DEMO_KIND = "demo"
RUNNING_DEMO_KIND = "demo (unfinished)"

HELP = "run the whole recipe offline on generated data (the README's main job)"
EXAMPLE = """example:
  tlsk demo --out demo-report          # about 3 minutes on 2 CPU cores
  tlsk demo --out demo-report --quick  # under a minute, for a smoke test
"""


def add_arguments(parser):
    parser.add_argument(
        "--out", default="tlsk-demo", help="report folder (default: ./tlsk-demo)"
    )
    parser.add_argument("--force", action="store_true", help="reuse a non-empty --out")
    parser.add_argument(
        "--quick", action="store_true", help="fewer images and epochs (a smoke test)"
    )


def run(args):
    from tlsk.networks.backbone import (
        WeightsMismatchError,
        WeightsUnavailableError,
        imagenet_weights_path,
    )

    out = resolved(args.out)
    _check_demo_folder(out, args.force)
    os.makedirs(out, exist_ok=True)
    # While it runs, a demo may leave any of its files: a later --force may
    # reuse the folder of one that was killed. A finished one lists its files.
    write_folder_marker(out, RUNNING_DEMO_KIND, files=())
    try:
        imagenet_weights_path()
        weights = "imagenet"
    except (WeightsUnavailableError, WeightsMismatchError) as err:
        weights = None
        note(
            args,
            "note: ImageNet weights unavailable, so VGG16 starts from a random "
            "initialisation and the transfer methods lose most of their edge "
            f"over the from-scratch CNN.\n  ({err})",
        )
    settings = _settings(args.quick)
    data = os.path.join(out, "data")
    _write_digits(data, settings["per_class"])

    from tlsk.images.folders import (
        check_image_folder,
        load_image_folder,
        split_image_folder,
    )

    report = check_image_folder(data)
    note(args, f"check: {_check_summary(report)}")
    split = os.path.join(out, "split")
    split_image_folder(data, split, val=0.15, test=0.25, seed=0, force=True)
    train = load_image_folder(os.path.join(split, "train"), check=False)
    test = load_image_folder(os.path.join(split, "test"), check=False)

    rows, fitted = [], {}
    cache = os.path.join(out, "features.h5")
    for name, estimator in _methods(weights, settings, cache, train[1]):
        note(args, f"training {name} ...")
        row, fitted[name] = _fit_and_evaluate(name, estimator, train, test, out)
        rows.append(row)
    _print_table(rows, weights, settings)
    best = max(rows, key=lambda row: row["accuracy"])
    _predict_a_few(fitted[best["method"]], best["method"], test)

    metrics = {
        "weights": weights or "random",
        "settings": settings,
        "check": report,
        "methods": rows,
    }
    write_atomically(
        os.path.join(out, "metrics.json"),
        lambda file: file.write(json.dumps(metrics, indent=2, default=str).encode()),
    )
    write_folder_marker(out, DEMO_KIND)
    print(f"report written to {out}")
    return 0


def _check_demo_folder(out, force):
    """Refuse an --out that the demo may not write into.

    The demo writes data, a split, models and plots under fixed names: it may
    reuse (with --force) only a folder that an earlier demo made, never a
    folder of someone else's, whose files those names would overwrite.
    """
    try:
        present = os.listdir(out)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise CommandError(f"--out {out!r} is a file, not a folder") from None
    if not present:
        return
    if not force:
        raise CommandError(f"{out!r} is not empty; use --force to reuse it")
    marker = read_folder_marker(out)
    kind = None if marker is None else marker["kind"]
    if kind not in (DEMO_KIND, RUNNING_DEMO_KIND):
        raise CommandError(
            f"refusing to reuse {out!r}: it is not empty and no earlier 'tlsk "
            "demo' made it (--force reuses only a demo's folder); choose a new "
            "--out"
        )
    if kind == DEMO_KIND:
        present = {
            os.path.relpath(os.path.join(here, name), out).replace(os.sep, "/")
            for here, dirs, files in os.walk(out)
            for name in dirs + files
        }
        try:
            check_only_written(f"the demo folder {out!r}", present, marker["files"])
        except FileExistsError as err:
            raise CommandError(str(err)) from err


def _settings(quick):
    if quick:
        return {
            "per_class": 12,
            "input_size": 32,
            "epochs": 3,
            "head_epochs": 2,
            "finetune_epochs": 1,
            "validation_fraction": 0,  # too few images to hold some out
        }
    return {
        "per_class": 40,
        "input_size": 48,
        "epochs": 25,
        "head_epochs": 8,
        "finetune_epochs": 3,
        "validation_fraction": 0.1,
    }


def _write_digits(root, per_class):
    """scikit-learn's digits as 8x8 grey PNG files, one folder per digit."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    for label in range(10):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            image = Image.fromarray(images[index])
            write_atomically(
                os.path.join(folder, f"{i:03d}.png"),
                lambda file, image=image: image.save(file, "PNG"),
            )


def _check_summary(report):
    counts = report["classes"]
    return (
        f"{counted(sum(counts.values()), 'image')} in "
        f"{counted(len(counts), 'class', 'classes')}, "
        f"{counted(len(report['bad_files']), 'bad file')}, "
        f"{counted(len(report['duplicates']), 'image')} in two classes"
    )


def _methods(weights, settings, cache, train_labels):
    from sklearn.pipeline import make_pipeline

    from tlsk import KerasFineTuneClassifier, SmallCNNClassifier, VGG16FeatureExtractor
    from tlsk.evaluation.classifiers import bottleneck_classifier

    size = settings["input_size"]
    keras_common = {
        "input_size": size,
        "random_state": 0,
        "augmentation": False,
        "validation_fraction": settings["validation_fraction"],
    }

    def features():
        return VGG16FeatureExtractor(weights=weights, input_size=size, cache=cache)

    return [
        (
            "scratch CNN",
            SmallCNNClassifier(epochs=settings["epochs"], patience=4, **keras_common),
        ),
        (
            "bottleneck + logistic regression",
            make_pipeline(features(), bottleneck_classifier("logreg", train_labels, 0)),
        ),
        (
            "bottleneck + SVM",
            make_pipeline(features(), bottleneck_classifier("svm", train_labels, 0)),
        ),
        (
            "fine-tuned VGG16",
            KerasFineTuneClassifier(
                weights=weights,
                head_epochs=settings["head_epochs"],
                finetune_epochs=settings["finetune_epochs"],
                **keras_common,
            ),
        ),
    ]


def _fit_and_evaluate(name, estimator, train, test, out):
    from tlsk.evaluation.plots import plot_confusion_matrix, plot_history

    (train_paths, train_labels), (test_paths, test_labels) = train, test
    start = time.perf_counter()
    estimator.fit(train_paths, train_labels)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = estimator.predict(test_paths)
    predict_seconds = time.perf_counter() - start
    accuracy = float(np.mean(predicted == test_labels))
    slug = name.replace(" + ", "-").replace(" ", "-").lower()
    plot_confusion_matrix(
        test_labels, predicted, path=os.path.join(out, f"{slug}.confusion.png")
    )
    if hasattr(estimator, "history_"):
        plot_history(estimator, os.path.join(out, f"{slug}.curves.png"))
    row = {
        "method": name,
        "accuracy": accuracy,
        "fit_seconds": round(fit_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
        "test_images": len(test_paths),
    }
    models = os.path.join(out, "models")
    os.makedirs(models, exist_ok=True)
    save_model(
        estimator,
        os.path.join(models, f"{slug}.joblib"),
        {"method": name, "classes": sorted(set(train_labels)), "metrics": row},
        force=True,
    )
    return row, estimator


def _print_table(rows, weights, settings):
    print(
        f"# digits, {counted(settings['per_class'], 'image')} per class, "
        f"{settings['input_size']} px, VGG16 weights: {weights or 'random'}"
    )
    print(f"{'method':<34}{'accuracy':>9}{'fit s':>9}{'predict s':>11}")
    for row in rows:
        print(
            f"{row['method']:<34}{row['accuracy']:>9.3f}"
            f"{row['fit_seconds']:>9.1f}{row['predict_seconds']:>11.2f}"
        )


def _predict_a_few(estimator, name, test, count=5):
    paths, labels = test
    chosen = np.linspace(0, len(paths) - 1, count).astype(int)
    proba = estimator.predict_proba([paths[i] for i in chosen])
    classes = estimator.classes_
    print(f"\npredictions of {name} on {count} held-out images:")
    for i, p in zip(chosen, proba, strict=True):
        print(
            f"  {os.path.relpath(paths[i])}: true {labels[i]}, predicted "
            f"{classes[np.argmax(p)]} ({np.max(p):.2f})"
        )
