"""List the networks --backbone accepts, with what choosing one means.

One row per backbone of the registry, keras.applications' CNNs first: its
native input size (the one its ImageNet weights were trained at) and the
smallest one it accepts, its cost in GFLOP per image at the native size
(measured), Keras's published ImageNet top-1 accuracy, the number of stages
--trainable-blocks counts, and whether its ImageNet weights file (no top) is
already in Keras's cache folder (else the first use downloads it). Below each
row, its cut points (--layer) with the feature length each gives after "avg"
or "max" pooling; the last one is the default.

Then KerasHub's networks (DINOv2, DINOv3, SigLIP 2, CLIP, ViT; the optional
extra tlsk[hub]): native size, patch size, GFLOP, transformer blocks
(--layer block1 to block<N>, --trainable-blocks), the poolings each offers
with their feature lengths (the first is its default), the KerasHub preset
its pretrained weights come from and whether it is in KerasHub's download
cache, and the published linear-probe figure where there is one.

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
    from tlsk.networks.hub import published_preset_is_cached
    from tlsk.networks.registry import HubSpec, list_backbones
    from tlsk.networks.weights import keras_cache_dir

    folder = keras_cache_dir()
    rows = []
    for spec in list_backbones():
        record = spec.as_record()
        if isinstance(spec, HubSpec):
            record["pretrained_cached"] = published_preset_is_cached(spec)
        else:
            path = os.path.join(folder, spec.imagenet.name)
            record["imagenet_cached"] = os.path.isfile(path)
            record["imagenet_path"] = path
        rows.append(record)
    if args.json:
        print_json(rows)
        return 0
    print("keras.applications (weights: Keras's ImageNet files)")
    print(
        f"{'backbone':<28}{'size':>6}{'min':>5}{'GFLOP':>8}{'top-1':>7}"
        f"{'stages':>8}  imagenet weights"
    )
    for row in rows:
        if "imagenet_cached" not in row:
            continue
        cached = "cached" if row["imagenet_cached"] else "not cached"
        print(
            f"{row['name']:<28}{row['native_size']:>6}{row['min_size']:>5}"
            f"{row['gflops']:>8.2f}{row['imagenet_top1']:>6.1f}%"
            f"{row['n_stages']:>8}  {cached}"
        )
        cuts = [
            f"{name} ({dim})"
            for name, dim in zip(row["cut_points"], row["dims"], strict=True)
        ]
        print("\n".join(_wrapped(cuts, "    layers: ", 88)))
    print(
        "\nKerasHub (pip install 'tlsk[hub]'; weights: its presets, "
        "--weights pretrained)"
    )
    print(
        f"{'backbone':<28}{'size':>6}{'patch':>6}{'GFLOP':>8}{'blocks':>8}"
        "  poolings (dims)  preset"
    )
    for row in rows:
        if "pretrained_cached" not in row:
            continue
        cached = "cached" if row["pretrained_cached"] else "not cached"
        poolings = ", ".join(f"{p} ({d})" for p, d in row["poolings"].items())
        print(
            f"{row['name']:<28}{row['native_size']:>6}{row['patch_size']:>6}"
            f"{row['gflops']:>8.2f}{row['n_blocks']:>8}  {poolings}"
        )
        print(f"    {row['weights_from']}; {cached}")
        if row["linear_probe"]:
            print(f"    {row['linear_probe']}")
    print(
        f"\nImageNet files live in {folder}; KerasHub presets in its download "
        "cache (kagglehub); top-1: Keras's published figures "
        "(keras.io/api/applications); GFLOP: measured without the top at the "
        "native size; --layer of a KerasHub network: block1 to block<blocks>."
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
