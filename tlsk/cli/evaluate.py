"""Measure a trained model on a folder of labelled images.

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

With --zero-shot instead of MODEL, no model is trained: a CLIP or SigLIP
network (--backbone, SigLIP 2 base by default, or a KerasHub preset folder of
one) reads each class folder's name in a sentence ("a photo of a {}.",
--template to change it) and labels each image by it, as
tlsk.ZeroShotImageClassifier does: how far the class names alone go.

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
    note,
    print_json,
    save_figure,
    shown,
)
from tlsk.cli._predictions import predict_proba, show_progress
from tlsk.cli._zero_shot import (
    add_zero_shot_options,
    check_zero_shot_options,
    zero_shot_metadata,
    zero_shot_model,
)
from tlsk.persistence.model_files import load_model_with_metadata, metadata_path

HELP = "accuracy, per-class scores and confusion matrix of a model on an image folder"
EXAMPLE = """example:
  tlsk evaluate svm.joblib split/test --plot svm-test.png
  tlsk evaluate svm.joblib split/test --json > svm-test.json
  tlsk evaluate svm.joblib split/test --report svm-report/
  tlsk evaluate svm.joblib split/test --tta ten_crop --json
  tlsk evaluate shared.skops split/test
  tlsk evaluate --zero-shot --backbone siglip2_base_patch16_224 split/test
"""
USAGE = """%(prog)s [options] MODEL DIR
       %(prog)s --zero-shot [--backbone NAME|PRESET_DIR] [options] DIR"""


def add_arguments(parser):
    parser.usage = USAGE
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL DIR",
        help="the model file from 'tlsk train' (.skops, or joblib from a trusted "
        "source only), then the folder-per-class image tree; with --zero-shot, "
        "the folder only",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="also draw the confusion matrix as PNG"
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
            args.usage_error("--zero-shot takes no MODEL: give only DIR")
        args.model, args.dir = None, args.inputs[0]
    else:
        if len(args.inputs) != 2:
            args.usage_error("give a MODEL and DIR (or --zero-shot and DIR)")
        if args.backbone:
            args.usage_error("--backbone needs --zero-shot")
        args.model, args.dir = args.inputs
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    check_not_split(args, args.dir, part="test")
    inputs = []
    if args.model is not None:
        inputs = [("MODEL", args.model), ("its metadata", metadata_path(args.model))]
    check_outputs(
        args,
        [("--plot", args.plot)],
        report=args.report,
        cache=args.cache,
        data=[args.dir],
        inputs=inputs,
    )
    if args.zero_shot:
        paths, labels, bad = read_labelled_folder(args, args.dir)
        model = zero_shot_model(args, labels=labels)
        metadata = zero_shot_metadata(model)
        model_name = f"zero-shot {os.fspath(model.backbone)}"
    else:
        model, metadata = load_model_with_metadata(args.model, trusted=args.trust)
        model_name = os.path.basename(args.model)
    model = with_tta(model, args.tta)
    if args.tta:
        metadata = {**metadata, "tta": args.tta}
    if not args.zero_shot:
        paths, labels, bad = read_labelled_folder(args, args.dir)
    known = set(map(str, model.classes_))
    if not known & set(labels.tolist()):
        note(
            args,
            f"none of the class folders of {args.dir!r} is a class of the model "
            f"({sorted(known)}); give the folder that holds the class folders",
        )
    show_progress(model, args)
    proba, classes = predict_proba(model, paths)
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
            from tlsk.evaluation.report import write_report

            root = os.path.abspath(args.dir)
            page = write_report(
                args.report,
                paths,
                labels,
                proba,
                classes,
                names=[os.path.relpath(os.path.abspath(p), root) for p in paths],
                metadata=metadata,
                force=args.force,
                title=f"{model_name} on {args.dir}",
                data_folder=args.dir,
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
