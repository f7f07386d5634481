"""Does bfloat16 cost accuracy? The same classification task on both precisions.

scikit-learn's digits (10 classes), upscaled, through VGG16 features and a
LogisticRegression; float32 and bfloat16 features of the same images.
"""

from __future__ import annotations

import numpy as np
from _suite import Section, cosine, digits, seconds
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tlsk import VGG16FeatureExtractor


def run(settings, workdir):
    n_train, n_test, size = settings["train"], settings["test"], settings["digit_size"]
    X_train, X_test, y_train, y_test = digits(n_train, n_test)
    section = Section(
        f"Downstream accuracy: digits, {n_train} train / {n_test} test at {size} px, "
        "VGG16 features + StandardScaler + LogisticRegression",
        ("precision", "accuracy", "extraction images/s"),
    )
    features, accuracy = {}, {}
    for precision in ("float32", "bfloat16"):
        extractor = VGG16FeatureExtractor(
            weights=settings["weights"], input_size=size, precision=precision
        ).fit()
        extractor.transform(X_train[:32])
        elapsed, train = seconds(extractor.transform, X_train)
        test = extractor.transform(X_test)
        features[precision] = np.concatenate([train, test])
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        classifier.fit(train, y_train)
        accuracy[precision] = float(classifier.score(test, y_test))
        section.add(
            precision, round(accuracy[precision], 4), round(n_train / elapsed, 1)
        )
    a, b = features["float32"], features["bfloat16"]
    similarity = cosine(a, b)
    section.target(
        "mean cosine, bfloat16 vs float32 features (digits)",
        float(similarity.mean()),
        ">=",
        0.999,
    )
    section.target(
        "accuracy points lost in bfloat16",
        100 * (accuracy["float32"] - accuracy["bfloat16"]),
        "<=",
        1.0,
    )
    section.notes.append(
        f"cosine similarity: mean {similarity.mean():.6f}, "
        f"min {similarity.min():.6f}; "
        f"weights: {settings['weights'] or 'seeded random'}"
    )
    return section
