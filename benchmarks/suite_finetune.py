"""One fine-tuning epoch: KerasFineTuneClassifier from files vs plain Keras ``fit``.

The same network on both sides: VGG16 without top, block5 trainable, average
pooling, Dense(256) + dropout, softmax; SGD at 1e-4 with momentum 0.9, batch
32, one epoch, no augmentation, no validation. tlsk reads and decodes the
JPEG files while it trains; plain Keras gets the images already decoded,
resized and preprocessed in memory (decoding not timed). Both times include
building, compiling and tracing the model, as a user's first epoch does.
"""

from __future__ import annotations

import os

import numpy as np
from _suite import Section, keras_policy, seconds, write_photos

from tlsk import KerasFineTuneClassifier
from tlsk.images.decode import read_image, resize_image
from tlsk.networks.precision import keras_dtype, resolve_precision
from tlsk.networks.preprocessing import preprocess_vgg16


def run(settings, workdir):
    size, n = settings["size"], settings["finetune_images"]
    paths = write_photos(os.path.join(workdir, "finetune_photos"), n, seed=3)
    y = np.arange(n) % 2
    arrays = preprocess_vgg16(
        np.stack([resize_image(read_image(path), size) for path in paths])
    )
    auto = resolve_precision("auto")
    section = Section(
        f"Fine-tuning: one epoch, {n} JPEG files at {size} px, block5 trainable, "
        f"batch 32 (auto = {auto} here)",
        ("precision", "tlsk s", "plain Keras s", "tlsk / Keras"),
    )
    rounds = settings["finetune_rounds"]
    measured = {}
    for precision in ("float32", "auto"):
        resolved = resolve_precision(precision)
        if resolved not in measured:
            measured[resolved] = _best_of_rounds(
                paths, arrays, y, size, precision, settings, rounds
            )
        tlsk_seconds, keras_seconds = measured[resolved]
        ratio = tlsk_seconds / keras_seconds
        shown = f"auto ({auto})" if precision == "auto" else precision
        section.add(
            shown, round(tlsk_seconds, 1), round(keras_seconds, 1), round(ratio, 3)
        )
        section.target(
            f"fine-tuning epoch, tlsk / plain Keras ({shown})", ratio, "<=", 1.05
        )
    if auto == "float32":
        section.notes.append(
            "auto resolves to float32 on this machine: its row is the float32 runs"
        )
    section.notes.append(
        f"best of {rounds} rounds, tlsk and Keras taking turns in each"
    )
    return section


def _best_of_rounds(paths, arrays, y, size, precision, settings, rounds):
    """``(tlsk seconds, Keras seconds)``, each the best of ``rounds`` turns."""
    tlsk, keras = [], []
    for _ in range(rounds):
        tlsk.append(seconds(_tlsk_epoch, paths, y, size, precision, settings)[0])
        keras.append(
            seconds(
                _keras_epoch, arrays, y, size, resolve_precision(precision), settings
            )[0]
        )
    return min(tlsk), min(keras)


def _tlsk_epoch(paths, y, size, precision, settings):
    KerasFineTuneClassifier(
        weights=settings["weights"],
        input_size=size,
        head_epochs=0,
        finetune_epochs=1,
        trainable_blocks=1,
        augmentation=False,
        validation_fraction=0,
        early_stopping=False,
        precision=precision,
        random_state=0,
    ).fit(paths, y)


def _keras_epoch(arrays, y, size, precision, settings):
    """What a Keras user writes, mixed precision through the global policy."""
    import keras

    with keras_policy(keras_dtype(precision)):
        base = keras.applications.VGG16(
            include_top=False,
            weights=settings["weights"],
            input_shape=(size, size, 3),
        )
        for layer in base.layers:
            layer.trainable = layer.name.startswith("block5_")
        x = keras.layers.GlobalAveragePooling2D()(base.output)
        x = keras.layers.Dense(256, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
        outputs = keras.layers.Dense(2, activation="softmax", dtype="float32")(x)
        model = keras.Model(base.input, outputs)
        model.compile(
            keras.optimizers.SGD(1e-4, momentum=0.9),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(arrays, y, batch_size=32, epochs=1, verbose=0)
