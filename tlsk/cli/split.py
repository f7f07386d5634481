"""Split a folder-per-class image tree into train / validation / test folders.

Writes OUT/train/<class>/, OUT/val/<class>/ and OUT/test/<class>/, stratified:
each class is split on its own with --val and --test as fractions of it, and
every part gets at least one image of every class (a class too small for
that, fewer than 3 images for a three-way split, is an error naming it; set
--val 0 or --test 0 for fewer parts). The same --seed gives the same split.

Files are copied, or with --link hard-linked (the split then shares the
files: editing one edits the other), or symbolically linked where a hard
link is impossible (another file system). Files that cannot be decoded are
skipped, and the same image in two classes is kept in both; both are
reported on stderr even with --quiet. OUT/split.json, written last, lists
each part's files ({"parts": {"train": [{"path", "source", "class",
"sha256"}], ...}, "counts", "skipped", "duplicates", "seed", ...}).

--near-duplicates first groups the images that are copies of one another
(resized, recompressed, slightly cropped or recoloured), as 'tlsk check
--near-duplicates' does and with its options (a perceptual hash by default;
features with --near-duplicates-method and the extractor options), and
keeps each group's members of one class in one part, as it keeps identical
files: no copy of a test image is trained on. A group in two classes is
kept in both, each class's members together. split.json lists the groups
used under "near_duplicates" (null without the option).

Nothing is written outside OUT, whatever the names in DIR; symbolic links in
DIR are read, never recreated, and class folders that are links are ignored.
A non-empty OUT is an error unless --force, which replaces OUT/train, OUT/val,
OUT/test and OUT/split.json and keeps anything else; only a split that tlsk
wrote is replaced: a file in the parts that its split.json does not list is
refused, never removed.
"""

from __future__ import annotations

import sys

from tlsk.cli._options import (
    SHARED_CACHE_HELP,
    add_extractor_options,
    add_near_duplicate_options,
    extractor_params,
    fraction,
    int_at_least,
    shared_cache,
)

HELP = "stratified train/val/test split of a folder-per-class tree (copies or links)"
EXAMPLE = """\
example:
  tlsk split data/pets data/pets-split --val 0.15 --test 0.15 --seed 1
  # -> data/pets-split/{train,val,test}/<class>/..., data/pets-split/split.json
  tlsk split data/pets data/pets-split --near-duplicates   # copies kept together
"""


def add_arguments(parser):
    parser.add_argument(
        "dir", metavar="DIR", help="folder with one sub-folder per class"
    )
    parser.add_argument("out", metavar="OUT", help="folder to write the split into")
    parser.add_argument(
        "--val", type=fraction, default=0.1, help="validation fraction (default 0.1)"
    )
    parser.add_argument(
        "--test", type=fraction, default=0.1, help="test fraction (default 0.1)"
    )
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random seed (default 0)"
    )
    parser.add_argument(
        "--link",
        action="store_true",
        help="hard-link files (symbolic links where impossible) instead of copying",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUT's train/, val/, test/ and split.json if OUT is not empty",
    )
    group = parser.add_argument_group("near duplicates")
    group.add_argument(
        "--near-duplicates",
        action="store_true",
        help="keep the images that are copies of one another in one part",
    )
    add_near_duplicate_options(group)
    group.add_argument(
        "--cache",
        metavar="FILE.h5",
        help="feature cache of the features method (default: "
        + SHARED_CACHE_HELP
        + ")",
    )
    add_extractor_options(parser)


def _near_duplicate_groups(args):
    """The files of each near-duplicate group of DIR (its files that decode)."""
    import os

    from tlsk.cli import CommandError
    from tlsk.cli._output import counted, note
    from tlsk.evaluation.near_duplicates import find_near_duplicates
    from tlsk.images.folders import check_image_folder, load_image_folder, relative_path

    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    extractor = None
    if args.near_duplicates_method != "phash":
        from tlsk.features.extractor import ImageFeatureExtractor

        cache = args.cache or shared_cache()
        extractor = ImageFeatureExtractor(**extractor_params(args), cache=cache).fit()
    try:
        bad = {item["path"] for item in check_image_folder(args.dir)["bad_files"]}
        paths, _ = load_image_folder(args.dir, check=False)
    except ValueError as err:
        raise CommandError(str(err)) from err
    paths = [path for path in paths if relative_path(path, args.dir) not in bad]
    note(args, f"finding near duplicates among {counted(len(paths), 'image')} ...")
    found = find_near_duplicates(
        paths,
        method=args.near_duplicates_method,
        max_bits=args.max_hash_bits,
        max_distance=args.max_feature_distance,
        extractor=extractor,
    )
    return [group.files for group in found.groups]


def run(args):
    from tlsk.cli import CommandError
    from tlsk.cli._output import note, shown
    from tlsk.images.folders import SPLIT_MANIFEST, SPLIT_PARTS, split_image_folder

    groups = _near_duplicate_groups(args) if args.near_duplicates else None
    note(args, f"splitting {args.dir} into {args.out} ...")
    try:
        manifest = split_image_folder(
            args.dir,
            args.out,
            val=args.val,
            test=args.test,
            seed=args.seed,
            link=args.link,
            force=args.force,
            near_duplicates=groups,
        )
    except FileExistsError as err:
        if args.force:  # what --force may not replace: the library says why
            raise CommandError(str(err)) from err
        raise CommandError(
            f"{args.out!r} is not empty; use --force to replace its train/, val/, "
            "test/ and split.json"
        ) from err

    for bad in manifest["skipped"]:
        print(f"skipped {shown(bad['path'])}: {bad['reason']}", file=sys.stderr)
    for duplicate in manifest["duplicates"]:
        paths = " = ".join(shown(path) for path in duplicate["paths"])
        print(f"same image in two classes (kept in both): {paths}", file=sys.stderr)
    if manifest["near_duplicates"] is not None:
        kept = manifest["near_duplicates"]
        note(
            args,
            f"kept {len(kept)} near-duplicate group{'s' * (len(kept) != 1)} "
            "together (listed in split.json)",
        )

    counts = manifest["counts"]
    width = max(len(shown(label)) for label in manifest["classes"])
    print(f"{'class':<{width}}  " + "  ".join(f"{part:>6}" for part in SPLIT_PARTS))
    for label in manifest["classes"]:
        row = "  ".join(f"{counts[part].get(label, 0):>6}" for part in SPLIT_PARTS)
        print(f"{shown(label):<{width}}  {row}")
    totals = "  ".join(f"{sum(counts[part].values()):>6}" for part in SPLIT_PARTS)
    print(f"{'total':<{width}}  {totals}")
    print(f"manifest: {shown(str(args.out))}/{SPLIT_MANIFEST}")
    return 0
