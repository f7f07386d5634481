"""The four ways to a classifier, side by side, and fine-tuning vs plain Keras.

On scikit-learn's handwritten digits (1,797 8x8 images in 10 classes, shipped
with scikit-learn, upscaled by tlsk to ``--size``), in one run:

1. ``SmallCNNClassifier``: a small CNN trained from scratch (the baseline);
2. bottleneck features + ``LogisticRegression``;
3. bottleneck features + ``SVC``;
4. ``KerasFineTuneClassifier``: new head, then block5 unfrozen;

held-out accuracy, fit time and predict time of each. Then one epoch of
fine-tuning (block5 trainable) through tlsk against the same network trained
with plain Keras ``Model.fit`` on the same images already in memory.

VGG16 starts from ImageNet weights when Keras's cache has them and from a
seeded random initialisation otherwise (then the transfer methods lose their
advantage: the point of the pretrained filters is gone). Usage::

    python benchmarks/bench_classifiers.py            # 600 train / 300 test, 64 px
    python benchmarks/bench_classifiers.py --quick    # 300 / 150, 48 px
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from tlsk import (  # noqa: E402
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    VGG16FeatureExtractor,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from tlsk.backbone import imagenet_weights_path  # noqa: E402
from tlsk.images import preprocess_vgg16, resize_image  # noqa: E402


def digits(n_train, n_test, seed=0):
    """Digits as uint8 grey images in [0, 255], stratified train/test split."""
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    return train_test_split(
        images,
        data.target,
        train_size=n_train,
        test_size=n_test,
        stratify=data.target,
        random_state=seed,
    )


def available_weights():
    try:
        imagenet_weights_path()
    except (WeightsUnavailableError, WeightsMismatchError):
        return None
    return "imagenet"


def measure(name, estimator, X_train, y_train, X_test, y_test):
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = float(np.mean(estimator.predict(X_test) == y_test))
    return name, accuracy, fit_seconds, time.perf_counter() - start


def plain_keras_finetune_epoch(weights, size, X, y, batch_size, seed):
    """The network KerasFineTuneClassifier builds, trained by hand for one epoch."""
    import keras

    from tlsk.backbone import resolve_weights, vgg16_base
    from tlsk.finetune import freeze_base

    start = time.perf_counter()
    arrays = np.stack([resize_image(np.repeat(x[..., None], 3, -1), size) for x in X])
    x_train = preprocess_vgg16(arrays)
    base, _ = vgg16_base(resolve_weights(weights), size)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.GlobalAveragePooling2D()(base(inputs))
    h = keras.layers.Dense(
        256,
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seed),
    )(h)
    h = keras.layers.Dropout(0.5, seed=seed)(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    freeze_base(model, trainable_blocks=1)
    model.compile(
        keras.optimizers.SGD(1e-4, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.size = 300, 150, 48
    X_train, X_test, y_train, y_test = digits(args.train, args.test)
    weights = available_weights()
    size, seed, batch = args.size, 0, 32
    common = {"input_size": size, "random_state": seed, "batch_size": batch}

    def extractor():
        return VGG16FeatureExtractor(weights=weights, input_size=size, batch_size=batch)

    runs = [
        measure(
            "SmallCNNClassifier (scratch)",
            SmallCNNClassifier(epochs=30, patience=5, augmentation=False, **common),
            X_train,
            y_train,
            X_test,
            y_test,
        ),
        measure(
            "bottleneck + LogisticRegression",
            make_pipeline(
                extractor(), StandardScaler(), LogisticRegression(max_iter=3000)
            ),
            X_train,
            y_train,
            X_test,
            y_test,
        ),
        measure(
            "bottleneck + SVC",
            make_pipeline(extractor(), StandardScaler(), SVC()),
            X_train,
            y_train,
            X_test,
            y_test,
        ),
        measure(
            "KerasFineTuneClassifier",
            KerasFineTuneClassifier(
                weights=weights,
                head_epochs=10,
                finetune_epochs=5,
                augmentation=False,
                **common,
            ),
            X_train,
            y_train,
            X_test,
            y_test,
        ),
    ]

    tlsk_epoch = KerasFineTuneClassifier(
        weights=weights,
        head_epochs=0,
        finetune_epochs=1,
        augmentation=False,
        validation_fraction=0,
        early_stopping=False,
        **common,
    )
    start = time.perf_counter()
    tlsk_epoch.fit(X_train, y_train)
    tlsk_seconds = time.perf_counter() - start
    keras_seconds = plain_keras_finetune_epoch(
        weights, size, X_train, y_train, batch, seed
    )

    print(
        f"# digits: {args.train} train / {args.test} test images, {size} px, "
        f"VGG16 weights: {weights or 'random (ImageNet weights unavailable)'}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'method':<34}{'accuracy':>9}{'fit s':>9}{'predict s':>11}")
    for name, accuracy, fit_seconds, predict_seconds in runs:
        print(f"{name:<34}{accuracy:>9.3f}{fit_seconds:>9.1f}{predict_seconds:>11.2f}")
    print(
        f"one fine-tuning epoch (build + fit): tlsk {tlsk_seconds:.1f} s, plain "
        f"Keras {keras_seconds:.1f} s: {tlsk_seconds / keras_seconds:.3f}x "
        "(target <= 1.05x)"
    )


if __name__ == "__main__":
    main()
