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

Nothing is written outside OUT, whatever the names in DIR; symbolic links in
DIR are read, never recreated, and class folders that are links are ignored.
A non-empty OUT is an error unless --force, which replaces OUT/train, OUT/val,
OUT/test and OUT/split.json and keeps anything else; only a split that tlsk
wrote is replaced: a file in the parts that its split.json does not list is
refused, never removed.
"""

from __future__ import annotations

import sys

from tlsk.cli._options import fraction, int_at_least

HELP = "stratified train/val/test split of a folder-per-class tree (copies or links)"
EXAMPLE = """\
example:
  tlsk split data/pets data/pets-split --val 0.15 --test 0.15 --seed 1
  # -> data/pets-split/{train,val,test}/<class>/..., data/pets-split/split.json
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


def run(args):
    from tlsk.cli import CommandError
    from tlsk.cli._output import note, shown
    from tlsk.images.folders import SPLIT_MANIFEST, SPLIT_PARTS, split_image_folder

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
