"""The four ways to a classifier, side by side: accuracy and time of each.

On scikit-learn's handwritten digits (1,797 8x8 images in 10 classes, shipped
with scikit-learn, upscaled by tlsk to ``--size``), in one run:

1. ``SmallCNNClassifier``: a small CNN trained from scratch (the baseline);
2. bottleneck features + ``LogisticRegression``;
3. bottleneck features + ``SVC``;
4. ``KerasFineTuneClassifier``: new head, then block5 unfrozen;

held-out accuracy, fit time and predict time of each. (One fine-tuning epoch
through tlsk against plain Keras ``fit`` is in ``run.py``'s finetune section.)

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
from _suite import digits, weights_available  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from tlsk import (  # noqa: E402
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    VGG16FeatureExtractor,
)


def measure(name, estimator, X_train, y_train, X_test, y_test):
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = float(np.mean(estimator.predict(X_test) == y_test))
    return name, accuracy, fit_seconds, time.perf_counter() - start


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
    weights = weights_available()
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

    print(
        f"# digits: {args.train} train / {args.test} test images, {size} px, "
        f"VGG16 weights: {weights or 'random (ImageNet weights unavailable)'}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'method':<34}{'accuracy':>9}{'fit s':>9}{'predict s':>11}")
    for name, accuracy, fit_seconds, predict_seconds in runs:
        print(f"{name:<34}{accuracy:>9.3f}{fit_seconds:>9.1f}{predict_seconds:>11.2f}")


if __name__ == "__main__":
    main()
