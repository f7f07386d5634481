"""Train a classifier on a folder of images; save it with its validation report.

DIR holds one sub-folder per class (DIR/<class>/<images>). If DIR has a
train/ sub-folder (the output of 'tlsk split'), the model trains on DIR/train
and is validated on DIR/val (a class can then not be named 'train');
otherwise a stratified --val fraction of DIR is held out for validation.
Files that cannot be decoded are skipped with a note.

Methods:
  bottleneck  features of a pretrained network (--backbone, VGG16 by default;
              'tlsk backbones' lists them), computed once and kept in the
              feature cache every command shares ($TLSK_CACHE, else
              ~/.cache/tlsk/features.h5; or --cache), and a scikit-learn
              classifier on them
              (--classifier):
              logreg (logistic regression), linear-svm (LinearSVC), svm (SVC,
              RBF kernel) or random-forest. The SVMs are wrapped in
              CalibratedClassifierCV (sigmoid, ensemble=False) so that the
              model gives probabilities that agree with its labels;
              scikit-learn deprecates SVC(probability=True). --grid chooses C
              (or n_estimators) by cross-validation on the cached features.
  finetune    the network (--backbone) with a new head: the head trains on
              the frozen base (--head-epochs), then the top --trainable-blocks
              stages with it (--finetune-epochs). A KerasHub transformer
              (DINOv2, DINOv3, SigLIP 2, CLIP, ViT, or a preset folder)
              opens its last --trainable-blocks transformer blocks, or, with
              --lora-rank R, trains rank-R low-rank adapters (LoRA) on their
              attention and MLP projections, the rest of the network frozen.
  scratch     a small CNN trained from scratch (--epochs): the baseline.

The backbone options serve bottleneck; finetune uses --backbone, --weights,
--pooling, --input-size, --interpolation and --batch-size of them, scratch
the last three. The metadata records the backbone.

Writes MODEL (--force to replace it): a MODEL ending in .skops is written in
the skops format, safe to give to someone else (loading it builds only
scikit-learn's estimators, numpy's arrays and tlsk's estimators; needs
'pip install tlsk[skops]'); any other suffix, e.g. .joblib, is a joblib
pickle, the fastest to load but one that runs code as it loads, for your own
use. A random forest's .skops file loads with --trust sklearn.tree._tree.Tree
(skops does not check a tree's node indices). Beside MODEL: its metadata
MODEL-stem.json (classes, method, parameters, validation metrics, tlsk
version, training time, data folder), the validation confusion matrix
MODEL-stem.confusion.png and, for finetune and scratch, the training curves
MODEL-stem.curves.png. The validation report goes to stdout (--json for
machines), progress and notes to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time

from tlsk._util.files import Publication
from tlsk.cli import CommandError
from tlsk.cli._folders import read_labelled_folder
from tlsk.cli._options import (
    SHARED_CACHE_HELP,
    add_extractor_options,
    calibration_images,
    check_keras_training,
    extractor_params,
    fraction,
    int_at_least,
    parse_weights,
    shared_cache,
)
from tlsk.cli._output import (
    check_outputs,
    classification_summary,
    counted,
    note,
    print_json,
    save_figure,
    shown,
)
from tlsk.cli._predictions import predict_proba
from tlsk.evaluation.classifiers import CLASSIFIERS, GRIDS
from tlsk.persistence.model_files import (
    metadata_path,
    model_file,
    save_model,
    serialization,
    untrusted_types,
)

HELP = "train a bottleneck, fine-tuned or from-scratch classifier on an image folder"
EXAMPLE = """examples:
  tlsk train photos/ --method bottleneck --classifier svm --grid --out svm.joblib
  tlsk train split/ --method finetune --backbone resnet50 --head-epochs 5 \\
      --finetune-epochs 5 --out finetuned.joblib
  tlsk train photos/ --method finetune --backbone dinov2_small \\
      --weights pretrained --trainable-blocks 4 --lora-rank 8 --out dino.joblib
  tlsk train photos/ --method scratch --epochs 30 --input-size 128 --out cnn.joblib
  tlsk train photos/ --method bottleneck --classifier svm --out to-share.skops
"""

METHODS = ("bottleneck", "finetune", "scratch")


def add_arguments(parser):
    parser.add_argument("dir", metavar="DIR", help="folder-per-class image tree")
    parser.add_argument(
        "--method", choices=METHODS, default="bottleneck", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="MODEL",
        help="model file to write: MODEL.skops (to share) or MODEL.joblib",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace MODEL and its files if present"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON on stdout"
    )
    parser.add_argument(
        "--val",
        type=fraction,
        default=0.2,
        metavar="FRACTION",
        help="stratified part of DIR held out for validation when DIR has no "
        "train/ folder; 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="of every random choice (default: 0)"
    )

    group = parser.add_argument_group("bottleneck")
    group.add_argument(
        "--classifier", choices=CLASSIFIERS, default="logreg", help="(default: logreg)"
    )
    group.add_argument(
        "--grid",
        action="store_true",
        help="choose C (n_estimators for random-forest) by cross-validation "
        "among " + "; ".join(f"{k}: {v[1]}" for k, v in GRIDS.items()),
    )
    group.add_argument(
        "--cache",
        metavar="FILE.h5",
        help="feature cache (default: " + SHARED_CACHE_HELP + "); "
        "features already in it are not computed again",
    )
    add_extractor_options(parser)

    group = parser.add_argument_group("finetune and scratch")
    group.add_argument(
        "--epochs",
        type=int_at_least(0),
        metavar="N",
        help="scratch: training epochs (default 30); finetune: the default of "
        "both --head-epochs and --finetune-epochs (default 10)",
    )
    group.add_argument("--head-epochs", type=int_at_least(0), metavar="N")
    group.add_argument("--finetune-epochs", type=int_at_least(0), metavar="N")
    group.add_argument(
        "--trainable-blocks",
        type=int_at_least(0),
        default=1,
        metavar="N",
        help="finetune: stages of the backbone unfrozen in phase 2, from the top, "
        "at most its number of stages ('tlsk backbones'; a KerasHub network's "
        "transformer blocks) (default 1)",
    )
    group.add_argument(
        "--lora-rank",
        type=int_at_least(1),
        metavar="R",
        help="finetune, KerasHub transformers only: instead of unfreezing the "
        "last --trainable-blocks blocks, train rank-R low-rank adapters (LoRA) "
        "on their attention and MLP projections, every other weight of the "
        "network frozen: far fewer parameters to train (default: unfreeze)",
    )
    group.add_argument(
        "--no-augmentation",
        action="store_true",
        help="no random flips, rotations, zooms and shifts during training",
    )
    group.add_argument(
        "--monitor-fraction",
        type=fraction,
        default=0.1,
        metavar="FRACTION",
        help="part of the training images held out inside training for early "
        "stopping and the validation curves; 0: monitor the training loss "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--no-early-stopping", action="store_true", help="train every epoch"
    )


def run(args):
    started = time.perf_counter()
    out = os.fspath(args.out)
    serialization(out)  # a missing skops fails now, not after the training
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    outputs = [
        ("--out", out),
        ("the model's metadata", metadata_path(out)),
        ("the confusion matrix", model_file(out, ".confusion.png")),
    ]
    if args.method != "bottleneck":
        outputs.append(("the training curves", model_file(out, ".curves.png")))
    check_outputs(
        args,
        outputs,
        cache=_cache_path(args),
        cache_what="--cache" if args.cache else "the shared feature cache",
        data=[args.dir],
    )
    _check_lora_rank(args)
    if serialization(out) == "skops":
        _check_shareable(args, out)

    data = _load_data(args)
    record = {
        "method": args.method,
        "backbone": None if args.method == "scratch" else args.backbone,
        "classes": sorted(set(data.y_train.tolist())),
        "data": os.path.abspath(args.dir),
        "validation": data.validation,
        "n_train": len(data.train),
        "n_validation": len(data.val),
        "skipped_files": [str(err) for err in data.bad],
        "seed": args.seed,
    }
    if len(record["classes"]) < 2:
        raise CommandError(
            f"needs images of at least 2 classes to train; {args.dir!r} has "
            f"{record['classes']!r}"
        )
    note(
        args,
        f"training {args.method} on {counted(len(data.train), 'image')} of "
        f"{counted(len(record['classes']), 'class', 'classes')}; "
        f"validating on {len(data.val)}",
    )
    if args.method == "bottleneck":
        model, proba_val, details = _train_bottleneck(args, data)
    else:
        model, details = _train_keras(args, data)
        proba_val = None
    record.update(details)
    record["training_seconds"] = round(time.perf_counter() - started, 3)

    text, y_pred, labels = "", [], []
    record["metrics"] = None
    if data.val:
        if proba_val is None:
            proba_val, classes = predict_proba(model, data.val)
        else:
            classes = model.classes_
        y_pred = classes[proba_val.argmax(axis=1)]
        record["metrics"], text = classification_summary(data.y_val, y_pred, classes)
        labels = record["metrics"]["confusion_matrix"]["labels"]
    # The figures are written first and put in place with the model: a run
    # that fails to write any of its files changes none.
    with Publication() as figures:
        record["files"] = _plot(args, model, data.y_val, y_pred, labels, figures)
        save_model(model, out, record, force=args.force)
        figures.publish()
    if args.json:
        print_json({**record, "model": out, "metadata": metadata_path(out)})
    else:
        print(
            f"{args.method}"
            + (f" ({args.classifier})" if args.method == "bottleneck" else "")
            + f": {counted(len(record['classes']), 'class', 'classes')}, "
            f"{counted(len(data.train), 'training image')}, "
            f"{record['training_seconds']:.1f} s"
        )
        if text:
            print(f"validation: {shown(data.validation)}")
            print(text)
        else:
            print("no validation images: no report (--val 0)")
    note(args, f"wrote {out}, {metadata_path(out)}")
    untrusted = untrusted_types(out)
    if untrusted:
        note(
            args,
            f"{out} loads only with "
            + " ".join(f"--trust {name}" for name in untrusted)
            + " (trusted=[...] in load_model): tlsk does not trust these types",
        )
    for path in record["files"].values():
        note(args, f"wrote {path}")
    return 0


def _check_lora_rank(args):
    """Refuse --lora-rank now where it means nothing, in the command's words."""
    if args.lora_rank is None:
        return
    if args.method != "finetune":
        raise CommandError(
            "--lora-rank trains low-rank adapters of a fine-tuned KerasHub "
            f"transformer: it is for --method finetune; received --method "
            f"{args.method}"
        )
    from tlsk.networks.registry import BACKBONES, HubSpec

    spec = BACKBONES.get(args.backbone)
    if spec is not None and not isinstance(spec, HubSpec):
        raise CommandError(
            "--lora-rank trains low-rank adapters of a KerasHub transformer's "
            "attention and MLP (DINOv2, DINOv3, SigLIP 2, CLIP, ViT, or a KerasHub "
            f"preset folder); --backbone {args.backbone} is a keras.applications "
            "network: leave --lora-rank out (--trainable-blocks unfreezes its "
            "last stages)"
        )


def _check_shareable(args, out):
    """Refuse now, not after the training, a .skops model that may not be shared.

    A model to share names no file of this machine (a weights or .keras
    file): the network it would carry is checked as it will be saved.
    """
    from tlsk.persistence.model_files import check_shareable

    if args.method == "scratch":
        return
    network = {"backbone": args.backbone, "weights": parse_weights(args.weights)}
    if args.method == "bottleneck":
        from tlsk.features.extractor import ImageFeatureExtractor

        check_shareable(ImageFeatureExtractor(**network), out)
    else:
        from tlsk.training.finetune import KerasFineTuneClassifier

        check_shareable(KerasFineTuneClassifier(**network), out)


# -- data ---------------------------------------------------------------------


@dataclasses.dataclass
class TrainingData:
    """The images ``tlsk train`` learns from and validates on."""

    train: list  # image paths
    y_train: object  # their labels (a numpy array)
    val: list
    y_val: object
    bad: list  # ImageError of each file that cannot be decoded
    validation: str  # where the validation images come from, as printed


def _load_data(args):
    train_dir = os.path.join(args.dir, "train")
    if os.path.isdir(train_dir):
        _check_split_folder(args.dir, train_dir)
        train, y_train, bad = read_labelled_folder(args, train_dir)
        val_dir = os.path.join(args.dir, "val")
        if not os.path.isdir(val_dir):
            raise CommandError(
                f"{args.dir!r} has a train/ folder but no val/ folder; give the "
                f"folder-per-class tree {train_dir!r} itself to hold out --val"
            )
        val, y_val, bad_val = read_labelled_folder(args, val_dir)
        unknown = sorted(set(y_val.tolist()) - set(y_train.tolist()))
        if unknown:
            note(args, f"classes in {val_dir!r} but not in train/: {unknown}")
        return TrainingData(
            train, y_train, val, y_val, bad + bad_val, os.path.abspath(val_dir)
        )
    paths, labels, bad = read_labelled_folder(args, args.dir)
    if args.val == 0:
        return TrainingData(paths, labels, [], labels[:0], bad, "none")
    from sklearn.model_selection import train_test_split

    try:
        train, val, y_train, y_val = train_test_split(
            paths, labels, test_size=args.val, stratify=labels, random_state=args.seed
        )
    except ValueError as err:
        raise CommandError(
            f"cannot hold out a stratified --val {args.val} of "
            f"{counted(len(paths), 'image')} in "
            f"{counted(len(set(labels.tolist())), 'class', 'classes')} ({err}); "
            "add images, change "
            "--val, or give a 'tlsk split' folder"
        ) from err
    validation = (
        f"{args.val:g} of {os.path.abspath(args.dir)} held out "
        f"(stratified, seed {args.seed})"
    )
    return TrainingData(train, y_train, val, y_val, bad, validation)


def _check_split_folder(root, train_dir):
    """A DIR with a train/ folder is a 'tlsk split' folder: say so if it is not."""
    with os.scandir(train_dir) as entries:
        has_classes = any(
            entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
            for entry in entries
        )
    if not has_classes:
        raise CommandError(
            f"{root!r} has a train/ folder, so it is read as a 'tlsk split' "
            f"folder (train/<class>/, val/<class>/), but {train_dir!r} holds no "
            "class folders: a class may not be named 'train' (rename it), or "
            "give the folder that holds train/ and val/"
        )


# -- bottleneck ---------------------------------------------------------------


def _train_bottleneck(args, data):
    import numpy as np
    from sklearn.pipeline import Pipeline

    from tlsk.evaluation.classifiers import bottleneck_classifier
    from tlsk.features.extractor import ImageFeatureExtractor

    cache = _cache_path(args)
    params = extractor_params(args)
    calibration = calibration_images(args, data.train)
    extractor = ImageFeatureExtractor(**params, cache=cache).fit(calibration)
    # Train and validation features in one pass: each image through it once.
    features = extractor.transform(list(data.train) + list(data.val))
    X_train, X_val = features[: len(data.train)], features[len(data.train) :]
    y_train = np.asarray(data.y_train)

    classifier = bottleneck_classifier(args.classifier, y_train, args.seed, args.grid)
    details = {"classifier": args.classifier, "feature_cache": os.path.abspath(cache)}
    if args.grid:
        classifier, details["grid"] = _grid_search(args, classifier, X_train, y_train)
    else:
        classifier.fit(X_train, y_train)
    proba_val = classifier.predict_proba(X_val) if len(X_val) else None
    # The saved model computes features afresh: a cache path would tie the
    # model file to this machine's folders.
    saved_extractor = ImageFeatureExtractor(**{**params, "verbose": 0})
    saved_extractor.fit(calibration)  # the same images: the same int8 model
    model = Pipeline([("features", saved_extractor), *classifier.steps])
    details["extractor"] = saved_extractor.get_params()
    details["params"] = classifier[-1].get_params()
    return model, proba_val, details


def _grid_search(args, pipeline, X, y):
    from tlsk.evaluation.classifiers import tune

    best, grid = tune(pipeline, args.classifier, X, y, random_state=args.seed)
    note(
        args,
        f"grid search ({grid['folds']}-fold): best {grid['parameter']}="
        f"{grid['best']} (cross-validated accuracy {grid['best_score']:.3f})",
    )
    edge = grid_edge(grid)
    if edge:
        values = [result["value"] for result in grid["results"]]
        note(
            args,
            f"best {grid['parameter']}={grid['best']} is the {edge} value tried "
            f"({values[0]} to {values[-1]}): a better one may lie beyond this grid",
        )
    return best, grid


def grid_edge(grid):
    """``"smallest"`` or ``"largest"``: the end of the grid its best value is at.

    None when the best is inside, or ties with its neighbour: only a score that
    still rises at the end of the range says the best may lie beyond it. The
    values are in increasing order, as ``GRIDS`` lists them.
    """
    scores = [result["mean_accuracy"] for result in grid["results"]]
    values = [result["value"] for result in grid["results"]]
    if len(values) < 2:
        return None
    if grid["best"] == values[0] and scores[0] > scores[1]:
        return "smallest"
    if grid["best"] == values[-1] and scores[-1] > scores[-2]:
        return "largest"
    return None


# -- finetune and scratch -----------------------------------------------------


def _train_keras(args, data):
    from tlsk.training.finetune import KerasFineTuneClassifier
    from tlsk.training.scratch import SmallCNNClassifier

    check_keras_training(args)
    common = {
        "augmentation": not args.no_augmentation,
        "validation_fraction": args.monitor_fraction,
        "early_stopping": not args.no_early_stopping,
        "precision": args.precision,
        "random_state": args.seed,
        # Keras's one line per epoch when stderr is no terminal (log files).
        "verbose": 0 if args.quiet else (1 if sys.stderr.isatty() else 2),
    }
    for option in ("input_size", "batch_size"):  # else each estimator's default
        if getattr(args, option) is not None:
            common[option] = getattr(args, option)
    if args.method == "finetune":
        default = 10 if args.epochs is None else args.epochs
        model = KerasFineTuneClassifier(
            backbone=args.backbone,
            weights=parse_weights(args.weights),
            pooling=args.pooling,
            # None: the network's own (a KerasHub preset's image converter).
            interpolation=args.interpolation,
            head_epochs=_first(args.head_epochs, default),
            finetune_epochs=_first(args.finetune_epochs, default),
            trainable_blocks=args.trainable_blocks,
            lora_rank=args.lora_rank,
            **common,
        )
    else:
        model = SmallCNNClassifier(
            epochs=_first(args.epochs, 30),
            interpolation=args.interpolation or "bilinear",
            **common,
        )
    # Keras writes its progress to stdout, which is for results.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(list(data.train), data.y_train)
    params = {k: v for k, v in model.get_params().items() if k != "verbose"}
    return model, {"params": params, "history": model.history_}


# -- plots --------------------------------------------------------------------


def _plot(args, model, y_true, y_pred, labels, figures):
    """Stage the plots in ``figures``; return ``{kind: path}``. Without matplotlib,
    say so."""
    from tlsk.evaluation.plots import plot_confusion_matrix, plot_history

    files = {}
    try:  # matplotlib is an optional extra, imported when a figure is drawn
        if len(y_true):
            path = model_file(args.out, ".confusion.png")
            figure = plot_confusion_matrix(y_true, y_pred, labels=labels)
            save_figure(figure, path, figures)
            files["confusion_matrix"] = path
        if args.method != "bottleneck":
            path = model_file(args.out, ".curves.png")
            save_figure(plot_history(model.history_), path, figures)
            files["training_curves"] = path
    except ImportError as err:
        note(args, f"no plots: {err}")
    return files


# -- argument types -------------------------------------------------------------


def _cache_path(args):
    """The feature cache of --method bottleneck (None for the others)."""
    if args.method != "bottleneck":
        return None
    return args.cache or shared_cache()


def _first(value, default):
    return default if value is None else value
