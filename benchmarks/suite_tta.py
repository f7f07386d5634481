"""What test-time augmentation buys in accuracy and costs in time.

On two labelled sets, a quarter of each for training and the rest for
testing (stratified, few training images so that accuracy is not at its
ceiling): real-photo crops (:mod:`tlsk.images.sample_data`, six classes) and
scikit-learn's digits as PNG files. For each mode of :mod:`tlsk.images.tta`
(none, flip: 2 views, ten_crop: 10 views), side by side in one run:

- accuracy of a bottleneck pipeline (VGG16 features + StandardScaler +
  LogisticRegression) on the test images, the classifier trained on plain
  features (what ``tlsk evaluate --tta`` does with a trained model) and on
  features averaged over the same views;
- the time of the test images' transform into an empty cache (cold: every
  view computed and stored) and again (warm: every view read back), with
  the cold time's ratio to no TTA;
- on the photo crops, the same for a SmallCNNClassifier trained from scratch
  (probabilities averaged over the views; nothing is cached there).
"""

from __future__ import annotations

import os

import numpy as np
from _suite import Section, best_seconds, digits, seconds, write_digit_files
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MODES = (None, "flip", "ten_crop")
TRAIN_FRACTION = 0.25
COLUMNS = (
    "data",
    "model",
    "tta",
    "views",
    "accuracy, trained plain",
    "accuracy, trained with tta",
    "cold s",
    "cold images/s",
    "cold / no tta",
    "warm s",
)


def run(settings, workdir):
    size = settings["tta_size"]
    section = Section(
        f"Test-time augmentation: accuracy and time per mode, VGG16 features at "
        f"{size} px + StandardScaler + LogisticRegression, and a small CNN",
        COLUMNS,
    )
    tested = []
    for name, train, test in _data_sets(settings, workdir):
        tested.append(f"{len(train[0])} / {len(test[0])} {name}")
        rows = _bottleneck_rows(settings, workdir, name, train, test)
        for row in rows:
            section.add(*row)
        _targets(section, name, rows)
    if settings["tta_cnn_epochs"]:
        name, train, test = next(_data_sets(settings, workdir, only_photos=True))
        for row in _cnn_rows(settings, name, train, test):
            section.add(*row)
    section.notes.append(
        f"train / test images: {', '.join(tested)}; the CNN on the photo crops"
    )
    section.notes.append(
        "cold: an empty cache per mode, every view computed, hashed and "
        "stored; warm: the same transform again, best of 3 (all views read "
        f"back); VGG16 weights: {settings['weights'] or 'seeded random'}"
    )
    section.notes.append(
        "the digits are not mirror-symmetric: a mirrored 2 or 7 is another "
        "shape, so flips are expected to cost accuracy there"
    )
    return section


def _data_sets(settings, workdir, only_photos=False):
    """Yield ``(name, (train paths, labels), (test paths, labels))``."""
    from tlsk.images.sample_data import write_photo_folder

    paths, labels = write_photo_folder(
        os.path.join(workdir, "photos"),
        per_class=settings["tta_photos"],
        size=settings["tta_file_size"],
    )
    yield "photo crops", *_split(paths, labels)
    if only_photos:
        return
    n = settings["tta_digits"]
    n_train = round(n * TRAIN_FRACTION)
    X_train, X_test, y_train, y_test = digits(n_train, n - n_train)
    folder = os.path.join(workdir, "digits")
    train = write_digit_files(os.path.join(folder, "train"), X_train, 64)
    test = write_digit_files(os.path.join(folder, "test"), X_test, 64)
    yield "digits", (train, y_train), (test, y_test)


def _split(paths, labels):
    train, test, y_train, y_test = train_test_split(
        paths, labels, train_size=TRAIN_FRACTION, stratify=labels, random_state=0
    )
    return (train, y_train), (test, y_test)


def _extractor(settings, tta, cache):
    from tlsk import ImageFeatureExtractor

    return ImageFeatureExtractor(
        weights=settings["weights"],
        input_size=settings["tta_size"],
        tta=tta,
        cache=cache,
        verbose=0,
    ).fit()


def _bottleneck_rows(settings, workdir, name, train, test):
    """One row per mode: accuracies, cold and warm transform times."""
    from tlsk.images.tta import tta_views

    folder = os.path.join(workdir, name.replace(" ", "-"))
    os.makedirs(folder, exist_ok=True)
    shared = os.path.join(folder, "shared.h5")  # every mode: views computed once
    # Built and warmed up (network, cache code) before the first timed mode.
    _extractor(settings, None, os.path.join(folder, "warm-up.h5")).transform(
        test[0][:4]
    )
    features, rows, cold_plain = {}, [], None
    for tta in MODES:
        timed = _extractor(settings, tta, os.path.join(folder, f"{tta}.h5"))
        cold, test_features = seconds(timed.transform, test[0])
        warm = best_seconds(lambda t=timed: t.transform(test[0]), 3)
        cold_plain = cold_plain or cold
        extractor = _extractor(settings, tta, shared)
        features[tta] = (extractor.transform(train[0]), test_features)
        plain_train = features[None][0]
        rows.append(
            (
                name,
                "VGG16 + logistic regression",
                tta or "none",
                len(tta_views(tta)),
                _accuracy(plain_train, train[1], test_features, test[1]),
                _accuracy(features[tta][0], train[1], test_features, test[1]),
                round(cold, 3),
                round(len(test[0]) / cold, 1),
                round(cold / cold_plain, 2),
                round(warm, 4),
            )
        )
    return rows


def _accuracy(X_train, y_train, X_test, y_test):
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    classifier.fit(X_train, y_train)
    return round(float(classifier.score(X_test, y_test)), 4)


def _cnn_rows(settings, name, train, test):
    """A SmallCNNClassifier trained once; its predictions under each mode."""
    from tlsk import SmallCNNClassifier
    from tlsk.images.tta import tta_views

    model = SmallCNNClassifier(
        input_size=settings["tta_cnn_size"],
        epochs=settings["tta_cnn_epochs"],
        validation_fraction=0,
        early_stopping=False,
        random_state=0,
    ).fit(train[0], train[1])
    model.predict_proba(test[0][:4])  # warm up
    rows, plain = [], None
    for tta in MODES:
        model.set_params(tta=tta)
        elapsed, predicted = seconds(model.predict, test[0])
        plain = plain or elapsed
        accuracy = round(float(np.mean(predicted == np.asarray(test[1]))), 4)
        rows.append(
            (
                name,
                f"SmallCNNClassifier ({settings['tta_cnn_epochs']} epochs, "
                f"{settings['tta_cnn_size']} px)",
                tta or "none",
                len(tta_views(tta)),
                accuracy,
                None,
                round(elapsed, 3),
                round(len(test[0]) / elapsed, 1),
                round(elapsed / plain, 2),
                None,
            )
        )
    return rows


def _targets(section, name, rows):
    """Warm TTA costs what a cache read costs; ten crops cost about ten views."""
    by_mode = {row[2]: row for row in rows}
    section.target(
        f"{name}: warm ten_crop transform / cold no-tta transform",
        by_mode["ten_crop"][9] / by_mode["none"][6],
        "<=",
        0.5,
    )
    section.target(
        f"{name}: cold ten_crop / cold no-tta (10 views)",
        by_mode["ten_crop"][8],
        "<=",
        12.0,
    )
