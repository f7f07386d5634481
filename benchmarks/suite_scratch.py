"""The from-scratch baseline: SmallCNNClassifier's defaults vs the classic convnet.

The number transfer learning must beat has to be a fair one, so it is set
beside the small Keras convnet of the tutorials, written here in plain Keras:
three blocks of a 3x3 convolution (32, 32 and 64 filters, no padding, ReLU)
and a 2x2 max pooling, Flatten, Dense(64, ReLU), dropout 0.5, softmax; Adam
at Keras's default learning rate, batch 32, float32 (Keras's default policy),
tlsk's default augmentation, no validation hold-out.

Both train on the same real-photo crops (:mod:`tlsk.images.sample_data`, five
classes; sky and water are honestly hard to tell apart) for the same number
of epochs, and are scored on the same held-out crops. Each seed writes new
crops, splits them anew and seeds both networks; the two networks take turns
seed by seed. tlsk trains from the JPEG files with only ``input_size``,
``epochs`` and ``random_state`` set; the classic network gets the images
decoded in memory (decoding not timed).
"""

from __future__ import annotations

import os
import time

import numpy as np
from _suite import Section
from PIL import Image
from sklearn.model_selection import train_test_split

from tlsk import SmallCNNClassifier
from tlsk.images.sample_data import write_photo_folder
from tlsk.training.keras_classifier import AUGMENTATION_DEFAULTS

CLASSES = ("pagoda", "trees", "sky", "water", "petals")
# Seeds 0-11 served to choose SmallCNNClassifier's defaults; these are new.
FIRST_SEED = 100


def run(settings, workdir):
    size, epochs = settings["scratch_size"], settings["scratch_epochs"]
    n_train, n_test = settings["scratch_train"], settings["scratch_test"]
    seeds = range(FIRST_SEED, FIRST_SEED + settings["scratch_seeds"])
    section = Section(
        f"From-scratch baseline: {len(CLASSES)} classes of photo crops, "
        f"{n_train} train / {n_test} test at {size} px, {epochs} epochs, "
        f"seeds {seeds[0]}-{seeds[-1]} (same crops and split for both)",
        (
            "network",
            "accuracy (mean)",
            "min",
            "max",
            "per seed",
            "classes never predicted",
            "fit s (mean)",
        ),
    )
    results = {"tlsk": [], "classic": []}
    for seed in seeds:
        split = _photo_split(os.path.join(workdir, f"seed{seed}"), settings, seed)
        results["tlsk"].append(_tlsk_run(split, size, epochs, seed))
        results["classic"].append(_classic_run(split, size, epochs, seed))
    names = {
        "tlsk": "tlsk SmallCNNClassifier (defaults)",
        "classic": "classic Keras convnet (reference)",
    }
    for key, runs in results.items():
        accuracies = [run["accuracy"] for run in runs]
        section.add(
            names[key],
            round(float(np.mean(accuracies)), 3),
            round(min(accuracies), 3),
            round(max(accuracies), 3),
            " ".join(f"{a:.3f}" for a in accuracies),
            sum(run["never_predicted"] for run in runs),
            round(float(np.mean([run["seconds"] for run in runs])), 1),
        )
    tlsk, classic = results["tlsk"], results["classic"]
    ratio = _mean(tlsk, "accuracy") / _mean(classic, "accuracy")
    time_ratio = _mean(tlsk, "seconds") / _mean(classic, "seconds")
    section.target(
        "scratch accuracy, tlsk defaults / classic convnet", ratio, ">=", 1.0
    )
    section.notes += [
        f"accuracy ratio tlsk / classic {ratio:.3f}; fit time ratio "
        f"{time_ratio:.2f} (tlsk decodes the JPEG files as it trains)",
        f"classes: {', '.join(CLASSES)}; classes never predicted: summed over seeds "
        "(a network that lumps sky and water together loses one)",
        "tlsk: SmallCNNClassifier(input_size, epochs, random_state) and nothing "
        "else; classic: Adam 1e-3, batch 32, float32, the same augmentation",
    ]
    return section


def _photo_split(folder, settings, seed):
    """New crops for ``seed``, split stratified into train and test."""
    n_train, n_test = settings["scratch_train"], settings["scratch_test"]
    per_class = -(-(n_train + n_test) // len(CLASSES))
    paths, labels = write_photo_folder(
        folder,
        per_class=per_class,
        size=settings["scratch_size"],
        seed=seed,
        classes=CLASSES,
    )
    train, test = train_test_split(
        np.arange(len(paths)),
        train_size=n_train,
        test_size=n_test,
        stratify=labels,
        random_state=seed,
    )
    return {
        "train_paths": [paths[i] for i in train],
        "test_paths": [paths[i] for i in test],
        "y_train": labels[train],
        "y_test": labels[test],
    }


def _tlsk_run(split, size, epochs, seed):
    model = SmallCNNClassifier(input_size=size, epochs=epochs, random_state=seed)
    start = time.perf_counter()
    model.fit(split["train_paths"], split["y_train"])
    elapsed = time.perf_counter() - start
    return _scored(model.predict(split["test_paths"]), split["y_test"], elapsed)


def _classic_run(split, size, epochs, seed):
    """The tutorials' convnet, as a Keras user writes it, on decoded arrays."""
    import keras

    x_train = _decoded(split["train_paths"], size)
    x_test = _decoded(split["test_paths"], size)
    classes, y_train = np.unique(split["y_train"], return_inverse=True)
    keras.utils.set_random_seed(seed)
    model = _classic_convnet(size, len(classes))
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    elapsed = time.perf_counter() - start
    predicted = classes[np.argmax(model.predict(x_test, verbose=0), axis=1)]
    return _scored(predicted, split["y_test"], elapsed)


def _classic_convnet(size, n_classes):
    import keras

    augment = AUGMENTATION_DEFAULTS  # the augmentation tlsk trains with
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.RandomFlip(augment["flip"])(x)
    x = keras.layers.RandomRotation(augment["rotation"])(x)
    x = keras.layers.RandomZoom(augment["zoom"])(x)
    x = keras.layers.RandomTranslation(augment["shift"], augment["shift"])(x)
    for filters in (32, 32, 64):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _decoded(paths, size):
    return np.stack(
        [
            np.asarray(Image.open(path).convert("RGB").resize((size, size)))
            for path in paths
        ]
    ).astype(np.float32)


def _scored(predicted, y_test, seconds):
    return {
        "accuracy": float(np.mean(predicted == y_test)),
        "never_predicted": len(set(y_test.tolist()) - set(predicted.tolist())),
        "seconds": seconds,
    }


def _mean(runs, key):
    return float(np.mean([run[key] for run in runs]))
