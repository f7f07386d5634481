"""List the networks --backbone accepts, with what choosing one means.

One row per backbone of the registry: its native input size (the one its
ImageNet weights were trained at) and the smallest one it accepts, its cost in
GFLOP per image at the native size (measured), Keras's published ImageNet
top-1 accuracy, the number of stages --trainable-blocks counts, and whether
its ImageNet weights file (no top) is already in Keras's cache folder (else
the first use downloads it). Below each row, its cut points (--layer) with
the feature length each gives after "avg" or "max" pooling; the last one is
the default.

--json prints every field of every registry entry, the weights files' names,
URLs and pinned digests included.
"""

from __future__ import annotations

import os

from tlsk.cli._output import print_json

HELP = "list the backbones (networks) with their sizes, cut points and costs"
EXAMPLE = """examples:
  tlsk backbones
  tlsk backbones --json
"""


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="output as JSON")


def run(args):
    from tlsk.backbones import list_backbones
    from tlsk.weights import keras_cache_dir

    folder = keras_cache_dir()
    rows = []
    for spec in list_backbones():
        record = spec.as_record()
        path = os.path.join(folder, spec.imagenet.name)
        record["imagenet_cached"] = os.path.isfile(path)
        record["imagenet_path"] = path
        rows.append(record)
    if args.json:
        print_json(rows)
        return 0
    print(
        f"{'backbone':<20}{'size':>6}{'min':>5}{'GFLOP':>8}{'top-1':>7}"
        f"{'stages':>8}  imagenet weights"
    )
    for row in rows:
        cached = "cached" if row["imagenet_cached"] else "not cached"
        print(
            f"{row['name']:<20}{row['native_size']:>6}{row['min_size']:>5}"
            f"{row['gflops']:>8.2f}{row['imagenet_top1']:>6.1f}%"
            f"{row['n_stages']:>8}  {cached}"
        )
        cuts = [
            f"{name} ({dim})"
            for name, dim in zip(row["cut_points"], row["dims"], strict=True)
        ]
        print("\n".join(_wrapped(cuts, "    layers: ", 88)))
    print(
        f"\nImageNet files live in {folder}; top-1: Keras's published figures "
        "(keras.io/api/applications); GFLOP: measured without the top at the "
        "native size."
    )
    return 0


def _wrapped(items, lead, width):
    """``items`` joined by commas in lines of at most ``width``, never split."""
    lines, line = [], lead
    for item in items:
        if line.strip() and len(line) + len(item) + 2 > width:
            lines.append(line + ",")
            line = " " * len(lead)
        elif line != lead:
            line += ", "
        line += item
    return [*lines, line]
