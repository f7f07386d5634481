"""Measure a trained model on a folder of labelled images, or compare several.

DIR holds one sub-folder per class (DIR/<class>/<images>), e.g. the test/
folder of 'tlsk split'. Prints the accuracy, per-class precision, recall and
F1, and the confusion matrix as a table (--json: the same as JSON). Classes
of DIR the model does not know are named and counted as errors; files that
cannot be decoded are skipped with a note.

--report OUT/ also writes a static HTML report to look at in a browser
(OUT/index.html, thumbnails in OUT/thumbs/): the confusion matrix with links
to the images of each cell, the most confident mistakes, the most confused
pairs of classes, a reliability diagram, a sortable table of every image and
what made the model (see tlsk.evaluation.report).

--tta flip|ten_crop averages the predictions over test-time augmented views
of each image (see tlsk.images.tta); the output says so ("tta" in the JSON).

With two or more MODELs (tlsk evaluate A.joblib B.skops DIR), each is
evaluated on the same images and they are compared: each model's accuracy
with its 95% Wilson interval and macro F1, the F1 of each class side by side,
and McNemar's test of each pair on the images exactly one of the two gets
right (exact binomial test below 25 such images, chi-squared with continuity
correction from 25 on; McNemar 1947, Dietterich 1998), in words: whether the
difference is likely to be chance. --json gives one object per model (the
one-model figures) and the comparison. --report writes the comparison page
instead: scores, per-class scores side by side (sortable), the images where
the models disagree with each one's answer (a model right and another
confidently wrong first), and each model's configuration. --tta applies to
every model; --plot draws one model's confusion matrix and is refused with
several (use --report). Each MODEL is loaded as one alone is (--trust
applies to each .skops MODEL); all are loaded before any runs, then run one
after the other. The same file given twice is compared with itself, with a warning.

With --zero-shot instead of MODEL, no model is trained: a CLIP or SigLIP
network (--backbone, SigLIP 2 base by default, or a KerasHub preset folder of
one) reads each class folder's name in a sentence ("a photo of a {}.",
--template to change it) and labels each image by it, as
tlsk.ZeroShotImageClassifier does: how far the class names alone go. It is
evaluated alone: --zero-shot takes no MODEL.

MODEL is a file written by 'tlsk train', with its .json metadata beside it.
A .skops MODEL builds only scikit-learn's estimators, numpy's arrays and
tlsk's estimators, and is refused, naming them, if it holds any other type
(--trust TYPE to allow one): the format for a model from someone else. A
joblib MODEL executes code when it is loaded: load only your own, or files
from a source you trust.
"""

from __future__ import annotations

import os

from tlsk._util.files import Publication
from tlsk.cli import CommandError
from tlsk.cli._folders import check_not_split, read_labelled_folder
from tlsk.cli._options import (
    add_report_option,
    add_trust_option,
    add_tta_option,
    tta_summary,
    with_tta,
)
from tlsk.cli._output import (
    check_outputs,
    classification_summary,
    counted,
    format_table,
    note,
    print_json,
    save_figure,
    shown,
    terminal_text,
)
from tlsk.cli._predictions import predict_proba, show_progress
from tlsk.cli._zero_shot import (
    add_zero_shot_options,
    check_zero_shot_options,
    zero_shot_metadata,
    zero_shot_model,
)
from tlsk.persistence.model_files import (
    load_model_with_metadata,
    metadata_path,
    serialization,
)

HELP = (
    "accuracy, per-class scores and confusion matrix of a model on an image "
    "folder, or several models compared"
)
EXAMPLE = """example:
  tlsk evaluate svm.joblib split/test --plot svm-test.png
  tlsk evaluate svm.joblib split/test --json > svm-test.json
  tlsk evaluate svm.joblib split/test --report svm-report/
  tlsk evaluate svm.joblib split/test --tta ten_crop --json
  tlsk evaluate shared.skops split/test
  tlsk evaluate svm.joblib finetuned.joblib split/test --report compare/
  tlsk evaluate --zero-shot --backbone siglip2_base_patch16_224 split/test
"""
USAGE = """%(prog)s [options] MODEL [MODEL ...] DIR
       %(prog)s --zero-shot [--backbone NAME|PRESET_DIR] [options] DIR"""


def add_arguments(parser):
    parser.usage = USAGE
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL [MODEL ...] DIR",
        help="the model file from 'tlsk train' (.skops, or joblib from a trusted "
        "source only), or several to compare, then the folder-per-class image "
        "tree; with --zero-shot, the folder only",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the confusion matrix as PNG (one MODEL only)",
    )
    add_report_option(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the --plot file or the --report folder if present",
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    add_tta_option(parser)
    add_trust_option(parser)
    group = parser.add_argument_group("zero-shot, no MODEL")
    add_zero_shot_options(parser, group, classes_given=False)
    group.add_argument(
        "--backbone",
        metavar="NAME|PRESET_DIR",
        help="with --zero-shot: a CLIP or SigLIP network, by name or KerasHub "
        "preset folder (default: siglip2_base_patch16_224)",
    )


def run(args):
    check_zero_shot_options(args)
    if args.zero_shot:
        if len(args.inputs) != 1:
            args.usage_error(
                "--zero-shot takes no MODEL: give only DIR (it evaluates the "
                "zero-shot network alone)"
            )
        models, args.dir = [], args.inputs[0]
    else:
        if len(args.inputs) < 2:
            args.usage_error("give a MODEL and DIR (or --zero-shot and DIR)")
        if args.backbone:
            args.usage_error("--backbone needs --zero-shot")
        *models, args.dir = args.inputs
    if len(models) > 1 and args.plot:
        args.usage_error(
            "--plot draws one model's confusion matrix: with several MODELs, "
            "use --report for the comparison page, or evaluate each model alone "
            "with its own --plot"
        )
    args.model = models[0] if len(models) == 1 else None
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    check_not_split(args, args.dir, part="test")
    inputs = []
    for model in models:
        inputs += [("MODEL", model), ("its metadata", metadata_path(model))]
    check_outputs(
        args,
        [("--plot", args.plot)],
        report=args.report,
        cache=args.cache,
        data=[args.dir],
        inputs=inputs,
    )
    if len(models) > 1:
        return _compare(args, models)
    if args.zero_shot:
        paths, labels, bad = read_labelled_folder(args, args.dir)
        model = zero_shot_model(args, labels=labels)
        metadata = zero_shot_metadata(model)
        model_name = f"zero-shot {os.fspath(model.backbone)}"
    else:
        model, metadata = load_model_with_metadata(args.model, trusted=args.trust)
        model_name = os.path.basename(args.model)
    model, metadata = _with_tta(args, model, metadata)
    if not args.zero_shot:
        paths, labels, bad = read_labelled_folder(args, args.dir)
    proba, classes = _predict(args, model, paths, labels)
    predicted = classes[proba.argmax(axis=1)]
    metrics, text = classification_summary(labels, predicted, classes)
    # The plot is put in place with the report: both are written, or neither.
    with Publication() as outputs:
        if args.plot:
            from tlsk.evaluation.plots import plot_confusion_matrix

            labels_shown = metrics["confusion_matrix"]["labels"]
            figure = plot_confusion_matrix(labels, predicted, labels=labels_shown)
            save_figure(figure, args.plot, outputs)
        if args.report:
            from tlsk.evaluation.report import MAP_POINTS, write_report

            note(
                args,
                f"writing the report: a map of up to {MAP_POINTS:,} images by the "
                "model's vectors, and where it looked in its worst mistakes ...",
            )
            page = write_report(
                args.report,
                paths,
                labels,
                proba,
                classes,
                names=_image_names(args, paths),
                metadata=metadata,
                force=args.force,
                title=f"{model_name} on {args.dir}",
                data_folder=args.dir,
                model=model,
            )
        outputs.publish()
    if args.plot:
        note(args, f"wrote {args.plot}")
    if args.report:
        note(args, f"wrote {page}")
    if args.json:
        print_json(
            {
                "model": (None if args.model is None else os.path.abspath(args.model)),
                "method": metadata.get("method"),
                "data": os.path.abspath(args.dir),
                "skipped_files": [str(err) for err in bad],
                "tta": args.tta,
                **metrics,
            }
        )
    else:
        name = model_name if args.model is None else args.model
        print(f"model: {shown(name)} ({shown(metadata.get('method', '?'))})")
        print(f"data: {shown(args.dir)}")
        if args.tta:
            print(f"test-time augmentation: {tta_summary(args.tta)}")
        print(text)
    return 0


def _with_tta(args, model, metadata):
    """The model with --tta applied, and its metadata saying so."""
    model = with_tta(model, args.tta)
    if args.tta:
        metadata = {**metadata, "tta": args.tta}
    return model, metadata


def _predict(args, model, paths, labels):
    """``(proba, classes)`` of ``model`` on ``paths``; a note if it knows no label."""
    known = set(map(str, model.classes_))
    if not known & set(labels.tolist()):
        note(
            args,
            f"none of the class folders of {args.dir!r} is a class of the model "
            f"({sorted(known)}); give the folder that holds the class folders",
        )
    show_progress(model, args)
    return predict_proba(model, paths)


def _image_names(args, paths):
    root = os.path.abspath(args.dir)
    return [os.path.relpath(os.path.abspath(p), root) for p in paths]


def _model_names(models):
    """A distinct name for each MODEL: its file name, or its path where two files
    share a file name; a file given twice is numbered ("m.joblib (2)")."""
    files = {}
    for model in models:
        files.setdefault(os.path.basename(model), set()).add(os.path.realpath(model))
    names = [
        os.path.basename(model)
        if len(files[os.path.basename(model)]) == 1
        else os.fspath(model)
        for model in models
    ]
    seen = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name} ({seen[name]})"
    return names


def _compare(args, models):
    """Evaluate several MODELs on DIR side by side: scores and McNemar's test."""
    from tlsk.evaluation.comparison import compare_models

    names = _model_names(models)
    same = {}
    for model in models:
        same.setdefault(os.path.realpath(model), []).append(model)
    for copies in same.values():
        if len(copies) > 1:
            note(
                args,
                f"warning: {copies[0]!r} is given {len(copies)} times: its "
                "answers are compared with themselves",
            )
    # --trust is for the .skops MODELs; given with none, it is refused as for one.
    skops = [serialization(path) == "skops" for path in models]
    # Every model is loaded before any runs, so that a refused file fails before
    # minutes of predictions; each is let go once it has run.
    loaded = {}
    for name, path, is_skops in zip(names, models, skops, strict=True):
        trusted = args.trust if is_skops or not any(skops) else ()
        model, metadata = load_model_with_metadata(path, trusted=trusted)
        loaded[name] = _with_tta(args, model, metadata)
    paths, labels, bad = read_labelled_folder(args, args.dir)
    probas, classes, metadata, done = {}, {}, {}, {}
    for name, path in zip(names, models, strict=True):
        model, metadata[name] = loaded.pop(name)
        real = os.path.realpath(path)
        if real in done:  # the same file again: the same answers
            probas[name], classes[name] = probas[done[real]], classes[done[real]]
        else:
            probas[name], classes[name] = _predict(args, model, paths, labels)
            done[real] = name
        del model
    comparison = compare_models(labels, probas, classes=classes)
    if args.report:
        from tlsk.evaluation.report import write_comparison_report

        page = write_comparison_report(
            args.report,
            paths,
            labels,
            probas,
            classes,
            names=_image_names(args, paths),
            metadata=metadata,
            force=args.force,
            data_folder=args.dir,
            title=f"{', '.join(names)} on {args.dir}",
        )
        note(args, f"wrote {page}")
    summaries = {}
    for name in names:
        predicted = classes[name][probas[name].argmax(axis=1)]
        summaries[name] = classification_summary(labels, predicted, classes[name])[0]
    if args.json:
        print_json(
            {
                "data": os.path.abspath(args.dir),
                "skipped_files": [str(err) for err in bad],
                "tta": args.tta,
                "models": [
                    {
                        "name": name,
                        "model": os.path.abspath(path),
                        "method": metadata[name].get("method"),
                        "accuracy_interval": list(comparison.models[name].interval),
                        **summaries[name],
                    }
                    for name, path in zip(names, models, strict=True)
                ],
                "comparison": {
                    "n_images": comparison.n_images,
                    "n_disagreements": len(comparison.disagreements),
                    "pairs": [pair.as_dict() for pair in comparison.pairs],
                },
            }
        )
    else:
        print(_comparison_text(args, comparison, names, models, metadata))
    return 0


def _comparison_text(args, comparison, names, models, metadata):
    n = comparison.n_images
    lines = [f"data: {shown(args.dir)} ({counted(n, 'image')})"]
    if args.tta:
        lines.append(f"test-time augmentation: {tta_summary(args.tta)}")
    lines.append("")
    paths_differ = [os.fspath(path) for path in models] != names
    rows = [["model", *(["file"] if paths_differ else []), "method"]]
    rows[0] += ["accuracy", "95% interval", "macro F1"]
    for name, path in zip(names, models, strict=True):
        scores = comparison.models[name]
        low, high = scores.interval
        rows.append(
            [
                shown(name),
                *([shown(path)] if paths_differ else []),
                shown(metadata[name].get("method", "?")),
                f"{scores.accuracy:.3f}",
                f"{low:.3f}-{high:.3f}",
                f"{scores.macro_f1:.3f}",
            ]
        )
    lines += format_table(rows)
    lines += ["", "F1 per class (-: not a class of the model)"]
    rows = [["class", *map(shown, names)]]
    for label in comparison.labels:
        row = [shown(label)]
        for name in names:
            scores = comparison.models[name]
            known = label in scores.classes
            row.append(f"{scores.per_class[label]['f1']:.3f}" if known else "-")
        rows.append(row)
    lines += format_table(rows)
    lines += [
        "",
        "McNemar's test on the images one model gets right and the other wrong "
        "(exact binomial below 25 such images, chi-squared with continuity "
        "correction from 25 on; each pair on its own):",
    ]
    lines += [terminal_text("  " + pair.sentence()) for pair in comparison.pairs]
    lines.append(
        f"the models disagree on {counted(len(comparison.disagreements), 'image')}"
    )
    return "\n".join(lines)
