"""Label images with a trained model, or with a network's own ImageNet classes.

PATH is an image file or a folder, searched recursively (hidden files and
folders inside it are skipped). Writes CSV, one row per image, to stdout or
--out FILE.csv:

  path,label,probability[,label_2,probability_2,...],error

with the --top-k most probable classes, most probable first. With --tta,
the probabilities are averaged over test-time augmented views of each image
(flips, or ten crops; see tlsk.images.tta), at 2 or 10 times the cost. A file that
cannot be decoded gets a row with its error and an empty label, and the
others go on. Exit code 0 when at least one image was labelled (count the
rows with an error), 1 when none was.

With --imagenet, every positional argument is a PATH, and the labels are
the 1,000 ImageNet classes of a backbone's own classifier (--backbone, VGG16
by default): the columns are then
path,wnid,label,probability[,wnid_2,label_2,probability_2,...],error. This
needs that network's ImageNet weights with the classifier top from Keras's
cache, downloaded if missing, or --weights-file; offline without them it
fails at once.

With --zero-shot "cat,dog,bird", every positional argument is a PATH too,
and no model is trained: a CLIP or SigLIP network (--backbone, SigLIP 2 base
by default, or a KerasHub preset folder of one) scores each image against a
sentence per class ("a photo of a cat.", --template to change it), as
tlsk.ZeroShotImageClassifier does. The columns are those of a MODEL. This
needs the network's published KerasHub preset, downloaded if missing, or
its preset folder as --backbone; offline without them it fails at once.

MODEL is a file written by 'tlsk train', with its .json metadata beside it.
A .skops MODEL builds only scikit-learn's estimators, numpy's arrays and
tlsk's estimators, and is refused, naming them, if it holds any other type
(--trust TYPE to allow one): the format for a model from someone else. A
joblib MODEL executes code when it is loaded: load only your own, or files
from a source you trust.
"""

from __future__ import annotations

import sys

from tlsk.cli import CommandError
from tlsk.cli._folders import image_files
from tlsk.cli._options import (
    add_trust_option,
    add_tta_option,
    int_at_least,
    tta_summary,
    with_tta,
)
from tlsk.cli._output import (
    check_outputs,
    counted,
    csv_bytes,
    note,
    write_csv,
    write_stdout,
)
from tlsk.cli._predictions import predict_proba, show_progress
from tlsk.cli._zero_shot import (
    add_zero_shot_options,
    check_zero_shot_options,
    class_names,
    zero_shot_model,
)
from tlsk.persistence.model_files import load_model, metadata_path

HELP = "label images (files or folders) with a trained model or ImageNet classes"
EXAMPLE = """examples:
  tlsk predict svm.joblib new-photos/ cat.jpg --top-k 3 --out labels.csv
  tlsk predict svm.joblib new-photos/ --tta flip
  tlsk predict shared.skops new-photos/
  tlsk predict --imagenet holiday/ --top-k 5
  tlsk predict --imagenet --backbone efficientnet_b0 holiday/
  tlsk predict --zero-shot "cat,dog,bird" photos/
  tlsk predict --zero-shot "cat,dog" --backbone clip_vit_base_patch16 photos/
"""
USAGE = """%(prog)s [options] MODEL PATH [PATH ...]
       %(prog)s --imagenet [options] PATH [PATH ...]
       %(prog)s --zero-shot CLASSES [options] PATH [PATH ...]"""


def add_arguments(parser):
    parser.usage = USAGE
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL PATH",
        help="the model file from 'tlsk train' (.skops, or joblib from a trusted "
        "source only), then image files "
        "or folders; with --imagenet or --zero-shot, image files or folders "
        "only",
    )
    parser.add_argument(
        "--top-k",
        type=int_at_least(1),
        default=1,
        metavar="K",
        help="the K most probable labels per image (default: 1)",
    )
    parser.add_argument("--out", metavar="FILE.csv", help="write the CSV here")
    parser.add_argument(
        "--force", action="store_true", help="replace the --out file if present"
    )
    add_tta_option(parser)
    add_trust_option(parser)
    group = parser.add_argument_group("a network's own labels, no MODEL")
    group.add_argument(
        "--imagenet",
        action="store_true",
        help="a network's own ImageNet classes instead of a trained model",
    )
    add_zero_shot_options(parser, group, classes_given=True)
    group.add_argument(
        "--backbone",
        metavar="NAME|PRESET_DIR",
        help="with --imagenet: the network whose ImageNet classifier labels the "
        "images, a name 'tlsk backbones' lists (default: vgg16); with "
        "--zero-shot: a CLIP or SigLIP network, by name or KerasHub preset "
        "folder (default: siglip2_base_patch16_224)",
    )
    group.add_argument(
        "--weights-file",
        metavar="FILE",
        help="the network's weights with its top instead of Keras's ImageNet ones",
    )
    group.add_argument(
        "--class-index",
        metavar="FILE.json",
        help="ImageNet class index ({'0': [wnid, name], ...}) instead of Keras's",
    )
    parser.set_defaults(usage_error=parser.error)


def run(args):
    check_zero_shot_options(args)
    if args.imagenet and args.zero_shot:
        args.usage_error("give --imagenet or --zero-shot, not both")
    if not args.imagenet and (args.weights_file or args.class_index):
        args.usage_error("--weights-file and --class-index need --imagenet")
    if args.imagenet:
        if args.tta:
            args.usage_error("--tta needs a MODEL, not --imagenet")
        targets = args.inputs
    elif args.zero_shot:
        classes = class_names(args.zero_shot)
        targets = args.inputs
    else:
        if args.backbone:
            args.usage_error("--backbone needs --imagenet or --zero-shot")
        if len(args.inputs) < 2:
            args.usage_error("give a MODEL and at least one PATH (or --imagenet)")
        model = load_model(args.inputs[0], trusted=args.trust)
        model = with_tta(model, args.tta)
        targets = args.inputs[1:]
    paths = image_files(targets)
    if not paths:
        raise CommandError(f"no files in {', '.join(map(repr, targets))}")
    read = [("an image to label", path) for path in paths]
    if not (args.imagenet or args.zero_shot):
        model_path = args.inputs[0]
        read += [("MODEL", model_path), ("its metadata", metadata_path(model_path))]
    check_outputs(args, [("--out", args.out)], cache=args.cache, inputs=read)
    if args.zero_shot:
        model = with_tta(zero_shot_model(args, classes=classes), args.tta)
    if args.imagenet:
        header, rows = _imagenet_rows(args, paths)
    else:
        header, rows = _model_rows(args, model, paths)

    if args.out:
        write_csv(args.out, header, rows)
        note(args, f"wrote {counted(len(rows), 'row')} to {args.out}")
    else:
        write_stdout(csv_bytes(header, rows, terminal=sys.stdout.isatty()))
    failed = sum(1 for row in rows if row[-1])
    if failed:
        print(
            f"tlsk predict: {failed} of {counted(len(rows), 'image')} could not be "
            "labelled "
            "(see the error column)",
            file=sys.stderr,
        )
    return 1 if failed == len(rows) else 0


def _model_rows(args, model, paths):
    from tlsk.images.folders import find_bad_images

    bad = {err.path: err for err in find_bad_images(paths)}
    good = [path for path in paths if path not in bad]
    classes = model.classes_
    k = min(args.top_k, len(classes))
    if k < args.top_k:
        note(
            args,
            f"the model knows {counted(len(classes), 'class', 'classes')}: --top-k {k}",
        )
    header = ["path", "label", "probability"]
    for rank in range(2, k + 1):
        header += [f"label_{rank}", f"probability_{rank}"]
    header.append("error")
    results = {}
    if good:
        if args.tta:
            note(args, f"test-time augmentation: {tta_summary(args.tta)}")
        show_progress(model, args)
        proba, classes = predict_proba(model, good)
        for path, row in zip(good, proba, strict=True):
            best = row.argsort(kind="stable")[::-1][:k]
            results[path] = [
                cell for i in best for cell in (classes[i], _probability(row[i]))
            ]
    rows = []
    for path in paths:
        if path in bad:
            rows.append([path, *[""] * (2 * k), bad[path].reason])
        else:
            rows.append([path, *results[path], ""])
    return header, rows


def _imagenet_rows(args, paths):
    try:
        from tlsk.networks.imagenet import predict_imagenet
    except ImportError as err:
        raise CommandError(f"--imagenet is not available: {err}") from err
    from tlsk.images.decode import ImageError
    from tlsk.networks.weights import WeightsUnavailableError

    try:
        results = predict_imagenet(
            paths,
            top_k=args.top_k,
            weights=args.weights_file or "imagenet",
            class_index=args.class_index,
            backbone=args.backbone or "vgg16",
        )
    except WeightsUnavailableError as err:
        # The library names Keras's cache; the command also takes the file.
        flag = "--class-index" if "class index" in str(err) else "--weights-file"
        raise CommandError(f"{err}, or give its path as {flag}") from err
    header = ["path", "wnid", "label", "probability"]
    for rank in range(2, args.top_k + 1):
        header += [f"wnid_{rank}", f"label_{rank}", f"probability_{rank}"]
    header.append("error")
    rows = []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, ImageError):
            rows.append([path, *[""] * (3 * args.top_k), result.reason])
            continue
        cells = [
            cell
            for wnid, name, probability in result
            for cell in (wnid, name, _probability(probability))
        ]
        cells += [""] * (3 * args.top_k - len(cells))
        rows.append([path, *cells, ""])
    return header, rows


def _probability(value):
    return f"{float(value):.6f}"
