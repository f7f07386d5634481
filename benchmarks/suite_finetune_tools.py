"""What each fine-tuning tool buys: accuracy and time with and without it.

One data set (real-photo crops of tlsk.images.sample_data, six classes, a
stratified train / test split), one configuration of
``KerasFineTuneClassifier`` (VGG16 at ``finetune_tools_size`` px, the last
two stages fine-tuned, default augmentation, validation and early stopping),
and one change per row against it:

- schedule: ``"cosine"`` and ``"one_cycle"`` instead of a constant rate;
- discriminative rates: ``block_lr_ratio=0.1`` (block4 at a tenth of the
  rate of the head, block5 at a third);
- gradual unfreezing: block5, then block4 and block5, sharing the epochs;
- ``"auto"`` learning rates from the range test, in both phases;
- warm start: phase 2 stopped after half its epochs, then ``fit`` again
  with ``warm_start=True``, ``head_epochs=0`` and the other half (a resumed
  run against an uninterrupted one);
- embeddings: ``transform`` of the baseline's network into a logistic
  regression, against the network's own softmax.

The tools that are not about a pretrained base (schedules, ``"auto"``
rates, warm start) are also measured on ``SmallCNNClassifier`` trained from
scratch on the same crops, against its defaults: those rows mean something
even where no pretrained weights can be had.

Every row trains from the same seeds, taking turns in each round (one round
per seed), so that a slow minute of a shared machine falls on all of them.
Accuracy is on the held-out crops; the time is of ``fit``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from _suite import Section

SEEDS_FULL = (0, 1, 2)


def variants(settings):
    """``{row name: (network, parameters over its baseline's, how it trains)}``."""
    half = settings["finetune_tools_epochs"] // 2
    return {
        "baseline (constant rates)": ("finetune", {}, "fit"),
        "schedule: cosine": ("finetune", {"schedule": "cosine"}, "fit"),
        "schedule: one_cycle": ("finetune", {"schedule": "one_cycle"}, "fit"),
        "block_lr_ratio=0.1": ("finetune", {"block_lr_ratio": 0.1}, "fit"),
        "gradual unfreezing": ("finetune", {"gradual_unfreezing": True}, "fit"),
        'learning rates "auto"': (
            "finetune",
            {"head_learning_rate": "auto", "finetune_learning_rate": "auto"},
            "fit",
        ),
        f"warm start (phase 2: {half} epochs, then resumed)": ("finetune", {}, "warm"),
        "transform + logistic regression": ("finetune", {}, "embeddings"),
        "scratch: baseline (constant rate)": ("scratch", {}, "fit"),
        "scratch: schedule cosine": ("scratch", {"schedule": "cosine"}, "fit"),
        "scratch: schedule one_cycle": ("scratch", {"schedule": "one_cycle"}, "fit"),
        'scratch: learning rate "auto"': ("scratch", {"learning_rate": "auto"}, "fit"),
        "scratch: warm start (half, then resumed)": ("scratch", {}, "warm"),
    }


def run(settings, workdir):
    from sklearn.model_selection import train_test_split

    from tlsk.images.sample_data import write_photo_folder
    from tlsk.networks.precision import resolve_precision

    size, epochs = settings["finetune_tools_size"], settings["finetune_tools_epochs"]
    paths, labels = write_photo_folder(
        os.path.join(workdir, "photos"),
        per_class=settings["finetune_tools_photos"],
        size=size,
        seed=5,
    )
    X_train, X_test, y_train, y_test = train_test_split(
        paths, labels, test_size=0.4, stratify=labels, random_state=0
    )
    seeds = settings["finetune_tools_seeds"]
    rows = variants(settings)
    scores = {name: [] for name in rows}
    times = {name: [] for name in rows}
    data = (X_train, y_train, X_test, y_test)
    # Untimed: the first fit of a process pays TensorFlow's one-time start-up.
    _train_and_score(settings, "finetune", {}, "fit", seeds[0], *data)
    for seed in seeds:  # a round: every row once, on the same seed
        for name, (network, params, how) in rows.items():
            started = time.perf_counter()
            accuracy = _train_and_score(settings, network, params, how, seed, *data)
            times[name].append(time.perf_counter() - started)
            scores[name].append(accuracy)
    section = Section(
        f"Fine-tuning tools: VGG16 at {size} px, last 2 stages, {epochs} + "
        f"{epochs} epochs; SmallCNNClassifier "
        f"{settings['finetune_tools_cnn_epochs']} epochs; {len(X_train)} training "
        f"/ {len(X_test)} test photo crops in 6 "
        f"classes at {size} px; mean over seeds {tuple(seeds)}",
        (
            "run",
            "accuracy",
            "min",
            "max",
            "accuracy - baseline",
            "fit s",
            "time / baseline",
        ),
    )
    baselines = {rows[name][0]: name for name in reversed(list(rows))}
    for name, (network, _, _) in rows.items():
        base_accuracy = float(np.mean(scores[baselines[network]]))
        base_time = float(np.mean(times[baselines[network]]))
        accuracy, seconds = float(np.mean(scores[name])), float(np.mean(times[name]))
        section.add(
            name,
            round(accuracy, 3),
            round(min(scores[name]), 3),
            round(max(scores[name]), 3),
            round(accuracy - base_accuracy, 3),
            round(seconds, 1),
            round(seconds / base_time, 2),
        )
    weights = settings["weights"] or "a seeded random initialisation"
    section.notes.append(
        f"VGG16 starts from {weights}"
        + (
            ""
            if settings["weights"]
            else " (no ImageNet weights in Keras's cache on this machine): the rows "
            "compare the tools on a network that learns its features here, "
            "not on pretrained ones"
        )
    )
    section.notes.append(f"precision {resolve_precision('auto')} (auto)")
    section.notes.append(
        "the embeddings row reuses the baseline's fit recipe; its time "
        "includes that fit, the transform and the logistic regression"
    )
    return section


def _train_and_score(settings, network, params, how, seed, *data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, y_train, X_test, y_test = data
    model = _model(settings, network, seed).set_params(**params)
    if how == "warm":  # stopped half-way through the last phase, then resumed
        _train_half_then_resume(model, network, X_train, y_train)
        return model.score(X_test, y_test)
    model.fit(X_train, y_train)
    if how == "embeddings":
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        head.fit(model.transform(X_train), y_train)
        return head.score(model.transform(X_test), y_test)
    return model.score(X_test, y_test)


def _model(settings, network, seed):
    from tlsk import KerasFineTuneClassifier, SmallCNNClassifier

    size, epochs = settings["finetune_tools_size"], settings["finetune_tools_epochs"]
    if network == "scratch":
        return SmallCNNClassifier(
            input_size=size,
            epochs=settings["finetune_tools_cnn_epochs"],
            random_state=seed,
        )
    return KerasFineTuneClassifier(
        weights=settings["weights"],
        input_size=size,
        trainable_blocks=2,
        head_epochs=epochs,
        finetune_epochs=epochs,
        random_state=seed,
    )


def _train_half_then_resume(model, network, X, y):
    if network == "scratch":
        half = model.epochs // 2
        rest = model.epochs - half
        model.set_params(epochs=half).fit(X, y)
        model.set_params(warm_start=True, epochs=rest).fit(X, y)
        return
    half = model.finetune_epochs // 2
    rest = model.finetune_epochs - half
    model.set_params(finetune_epochs=half).fit(X, y)
    model.set_params(warm_start=True, head_epochs=0, finetune_epochs=rest).fit(X, y)
