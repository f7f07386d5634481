"""The zero-shot options of predict and evaluate: class names read by a CLIP or
SigLIP network instead of a trained model (tlsk.ZeroShotImageClassifier)."""

from __future__ import annotations

import os

from tlsk.cli import CommandError
from tlsk.cli._output import counted, note

DEFAULT_ZERO_SHOT_BACKBONE = "siglip2_base_patch16_224"


def add_zero_shot_options(parser, group, classes_given):
    """``--zero-shot`` and its ``--template`` and ``--cache`` in ``group``.

    ``classes_given``: predict takes the class names with the flag
    (``--zero-shot "cat,dog"``); evaluate takes them from DIR's folders.
    """
    if classes_given:
        group.add_argument(
            "--zero-shot",
            metavar="CLASSES",
            help="label with these class names, comma-separated ('cat,dog,bird'), "
            "read by a CLIP or SigLIP network (--backbone) instead of a trained "
            "MODEL: no labelled image needed",
        )
    else:
        group.add_argument(
            "--zero-shot",
            action="store_true",
            help="no MODEL: a CLIP or SigLIP network (--backbone) reads the class "
            "folders' names as class names (name them as you would say them: "
            "'golden retriever')",
        )
    group.add_argument(
        "--template",
        action="append",
        metavar="TEXT",
        help="with --zero-shot: the sentence each class name goes into, '{}' "
        "where it goes (default: 'a photo of a {}.'); repeat to average several",
    )
    group.add_argument(
        "--cache",
        metavar="FILE.h5",
        help="with --zero-shot: keep the image and text embeddings in this "
        "feature cache, so that a second run computes none again",
    )
    parser.set_defaults(usage_error=parser.error)


def check_zero_shot_options(args):
    """Refuse --template and --cache without --zero-shot (usage errors)."""
    if not args.zero_shot and (args.template or args.cache):
        args.usage_error("--template and --cache need --zero-shot")


def class_names(text):
    """``"cat, dog,bird"`` -> ``["cat", "dog", "bird"]``, errors named as a flag."""
    names = [name.strip() for name in text.split(",")]
    if len(names) < 2 or not all(names):
        raise CommandError(
            "--zero-shot needs two or more class names, comma-separated, none "
            f"empty (e.g. --zero-shot 'cat,dog,bird'); received {text!r}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CommandError(f"--zero-shot names {repeated} twice or more")
    return names


def zero_shot_model(args, classes=None, labels=None):
    """A fitted ZeroShotImageClassifier for ``classes``, or the classes of ``labels``.

    The network is --backbone (default SigLIP 2 base), the sentences
    --template; the text tower runs here, once (or never, with a --cache that
    holds the sentences).
    """
    from tlsk.training.zero_shot import DEFAULT_TEMPLATES, ZeroShotImageClassifier

    backbone = args.backbone or DEFAULT_ZERO_SHOT_BACKBONE
    templates = tuple(args.template) if args.template else DEFAULT_TEMPLATES
    bad = [template for template in templates if "{}" not in template]
    if bad:
        raise CommandError(
            f"--template needs '{{}}' where the class name goes (e.g. "
            f"--template 'a photo of a {{}}.'); received {bad[0]!r}"
        )
    model = ZeroShotImageClassifier(
        backbone=backbone,
        classes=classes,
        templates=templates,
        cache=args.cache,
        verbose=0 if args.quiet else 1,
    )
    shown_classes = classes if classes is not None else sorted(set(labels))
    note(
        args,
        f"zero-shot with {os.fspath(backbone)!r}: "
        f"{counted(len(shown_classes), 'class', 'classes')}, "
        f"{counted(len(templates), 'template')}",
    )
    return model.fit(None, labels)


def zero_shot_metadata(model):
    """What a report says made a zero-shot classifier."""
    return {
        "method": "zero-shot",
        "backbone": os.fspath(model.backbone),
        "classes": [str(name) for name in model.classes_],
        "templates": list(model.templates_),
        "scores": {"clip": "softmax", "siglip": "sigmoid, normalised"}[model.family_],
    }
