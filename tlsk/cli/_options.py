"""Option types of the commands, and the feature extractor's options."""

from __future__ import annotations

import argparse

from tlsk._util.limits import MAX_BATCH_SIZE, MAX_INPUT_SIZE
from tlsk.images.decode import INTERPOLATIONS
from tlsk.images.tta import TTA_MODES, tta_views
from tlsk.networks.backbone import POOLINGS
from tlsk.networks.openvino import ENGINES
from tlsk.networks.precision import EXTRACTION_PRECISIONS
from tlsk.networks.preprocessing import PREPROCESSINGS
from tlsk.networks.registry import HUB_POOLINGS


def fraction(text):
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def add_near_duplicate_options(group):
    """How two images are found near duplicates: for check and split."""
    # Imported here: every command imports this module, two need these.
    from tlsk.evaluation.near_duplicates import MAX_BITS, MAX_DISTANCE, METHODS

    group.add_argument(
        "--near-duplicates-method",
        choices=METHODS,
        default="phash",
        help="what links two images: their perceptual hashes (default), their "
        "features (the extractor options below), or either",
    )
    group.add_argument(
        "--max-hash-bits",
        type=int_between(0, 64),
        default=MAX_BITS,
        metavar="N",
        help=f"of the 64 bits of two images' hashes, at most N differ (default: "
        f"{MAX_BITS}, measured)",
    )
    group.add_argument(
        "--max-feature-distance",
        type=unit_interval,
        default=MAX_DISTANCE,
        metavar="D",
        help="cosine distance of two images' features, in [0, 1] (default: "
        f"{MAX_DISTANCE})",
    )


def unit_interval(text):
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1]; got {text!r}")
    return value


def int_at_least(minimum):
    """argparse type: an int >= ``minimum`` (a bad value is a usage error)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}; got {text!r}"
            )
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def int_between(minimum, maximum):
    """argparse type: an int in ``[minimum, maximum]`` (else a usage error)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {minimum} to {maximum}; got {text!r}"
            )
        return value

    parse.__name__ = f"integer from {minimum} to {maximum}"
    return parse


SHARED_CACHE_HELP = (
    "the feature cache shared by every command: $TLSK_CACHE (a FILE.h5, or a "
    "folder that holds features.h5), else features.h5 in $XDG_CACHE_HOME/tlsk "
    "or ~/.cache/tlsk"
)


def shared_cache():
    """The feature cache every command uses when --cache names none.

    One file for all commands, so an image computed by one command (extract)
    is read by the next (train, check): ``$TLSK_CACHE`` if it names a
    ``.h5`` file, ``features.h5`` in it if it names a folder, else
    ``features.h5`` in the user's cache folder (``$XDG_CACHE_HOME/tlsk`` or
    ``~/.cache/tlsk``, where KerasHub's downloads live too). Its folder is
    created.
    """
    import os

    named = os.environ.get("TLSK_CACHE", "").strip()
    if named:
        named = os.path.expanduser(named)
        path = named if named.endswith(".h5") else os.path.join(named, "features.h5")
    else:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        path = os.path.join(base, "tlsk", "features.h5")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def add_extractor_options(parser):
    """The feature extractor's options, for the extract/train commands."""
    group = parser.add_argument_group("backbone and features")
    group.add_argument(
        "--backbone",
        default="vgg16",
        metavar="NAME|FILE.keras|PRESET_DIR",
        help="the network: a name 'tlsk backbones' lists (keras.applications "
        "CNNs; KerasHub's DINOv2, DINOv3, SigLIP 2, CLIP, ViT with "
        "tlsk[hub]), a .keras model file of your own (then give "
        "--preprocessing), or a KerasHub preset folder (default: vgg16)",
    )
    group.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (default; 'pretrained' says the same for KerasHub "
        "networks: their published preset), 'none' for a seeded random "
        "initialisation, the path of the backbone's no-top weights file, or "
        "of a KerasHub preset folder of that network",
    )
    group.add_argument(
        "--layer",
        metavar="LAYER",
        help="where the network is cut: a cut point 'tlsk backbones' lists, "
        "block1 to block<N> for a KerasHub network (default: its last)",
    )
    group.add_argument(
        "--pooling",
        choices=(*POOLINGS, *HUB_POOLINGS),
        help="how a feature map or token sequence becomes a vector (default: "
        "the network's own: avg for CNNs, cls for DINO and ViT, embedding for "
        "CLIP and SigLIP)",
    )
    group.add_argument(
        "--input-size",
        type=int_between(1, MAX_INPUT_SIZE),
        metavar="PX",
        help=f"side images are resized to, at most {MAX_INPUT_SIZE} (default: the "
        "backbone's native size)",
    )
    group.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        help="Pillow filter that resizes images (default: bilinear; a KerasHub "
        "network resizes as its preset's image converter does)",
    )
    group.add_argument(
        "--preprocessing",
        choices=PREPROCESSINGS,
        help="how pixels are prepared (default: the backbone's own; required "
        "for a .keras file)",
    )
    group.add_argument(
        "--batch-size",
        type=int_between(1, MAX_BATCH_SIZE),
        help="images per batch (default: the estimator's own, 32 for features)",
    )
    group.add_argument(
        "--precision",
        default="auto",
        choices=EXTRACTION_PRECISIONS,
        help="'auto' (default): bfloat16 where the CPU or GPU computes it "
        "natively (AMX, AVX512-BF16), float32 elsewhere; 'int8' (features "
        "only): quantized by OpenVINO's NNCF, calibrated on the images given",
    )
    group.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="who computes the features: 'keras', 'openvino' (pip install "
        "'tlsk[openvino]'), or 'auto' (default: OpenVINO for int8, else Keras)",
    )


def parse_weights(text):
    """'imagenet' | 'none' | a path -> the extractor's ``weights`` value."""
    return None if text.lower() == "none" else text


def extractor_params(args, **overrides):
    """Keyword arguments for ImageFeatureExtractor from parsed options."""
    return {
        "backbone": args.backbone,
        "weights": parse_weights(args.weights),
        "layer": args.layer,
        "pooling": args.pooling,
        "input_size": args.input_size,
        "interpolation": args.interpolation,
        "preprocessing": args.preprocessing,
        "precision": args.precision,
        "engine": args.engine,
        "verbose": 0 if args.quiet else 1,
        **({} if args.batch_size is None else {"batch_size": args.batch_size}),
        **overrides,
    }


def calibration_images(args, images):
    """What the extractor's ``fit`` is given: the images for int8, else None."""
    return list(images) if args.precision == "int8" else None


def check_keras_training(args):
    """Training runs on Keras: refuse int8 and the OpenVINO engine for it."""
    from tlsk.cli import CommandError

    if args.precision == "int8" or args.engine == "openvino":
        raise CommandError(
            f"--method {args.method} trains on Keras in float32 or bfloat16; "
            "--precision int8 and --engine openvino are for --method bottleneck "
            f"(received --precision {args.precision} --engine {args.engine})"
        )


def add_report_option(parser):
    """``--report OUT/``: the HTML report folder of evaluate and check."""
    parser.add_argument(
        "--report",
        metavar="OUT/",
        help="also write an HTML report to this folder (OUT/index.html)",
    )


def add_tta_option(parser):
    """``--tta MODE``: test-time augmentation for predict and evaluate."""
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: average over the image and its mirror "
        "('flip', 2x the time) or also four corner crops and their mirrors "
        "('ten_crop', 10x)",
    )


def add_trust_option(parser):
    """``--trust TYPE``: a further type a ``.skops`` model may build."""
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="a type a .skops MODEL may build beyond scikit-learn's estimators, "
        "numpy's arrays and tlsk's estimators (repeat for several; e.g. "
        "sklearn.tree._tree.Tree for a random forest); only for a file whose "
        "author you trust",
    )


def with_tta(model, tta):
    """The loaded ``model`` predicting with test-time augmentation ``tta``.

    A bottleneck Pipeline gets a copy of its fitted extractor that averages
    the features over the views; a Keras classifier averages its
    probabilities (its ``tta`` parameter). None leaves the model as it is.
    """
    from sklearn.pipeline import Pipeline

    from tlsk.cli import CommandError
    from tlsk.features.extractor import ImageFeatureExtractor

    if tta is None:
        return model
    if isinstance(model, Pipeline) and isinstance(model[0], ImageFeatureExtractor):
        name = model.steps[0][0]
        return model.set_params(**{name: model[0].with_tta(tta)})
    if "tta" in model.get_params():
        return model.set_params(tta=tta)
    raise CommandError(
        f"--tta needs a tlsk model (a bottleneck pipeline or a Keras "
        f"classifier); received a {type(model).__name__}"
    )


def tta_summary(tta):
    """How the output names ``tta``: ``"flip (2 views per image)"``, or ``"none"``."""
    from tlsk.cli._output import counted

    if tta is None:
        return "none"
    return f"{tta} ({counted(len(tta_views(tta)), 'view')} per image)"
