"""Check a folder-per-class image tree before training on it.

Decodes every file under DIR/<class>/ (nothing is changed) and reports the
images per class, every file that cannot be decoded with its reason (empty,
truncated, not an image), and the same image content (SHA-256 of the file)
in two classes. Results go to stdout; the exit code is 0 unless --strict is
given and something is wrong (a bad file, a duplicate across classes, a class
with no image), then 1.

--json prints one object (paths relative to DIR, with '/'; lists sorted):

  {"format": "tlsk-check", "version": 1, "root": "/abs/DIR", "ok": false,
   "classes": {"cat": 120, "dog": 98},          images that decode, per class
   "n_images": 218, "n_bad": 1,
   "bad_files": [{"path": "dog/x.jpg", "class": "dog",
                  "reason": "image file is truncated"}],
   "duplicates": [{"sha256": "9f2c...", "classes": ["cat", "dog"],
                   "paths": ["cat/a.png", "dog/b.png"]}],
   "empty_classes": [],                          classes with no image
   "ignored": ["notes.txt"]}                     loose files and links in DIR

Symbolic links to folders are not followed, so a class folder that is a link
is ignored (and listed under "ignored"); hidden files are skipped.

--label-errors also ranks the images whose label is probably wrong: the
bottleneck features of every image that decodes (the extractor options of
'tlsk train', kept in the shared feature cache or --cache), out-of-fold class
probabilities of a classifier on them (--classifier, --folds), and confident
learning through cleanlab (pip install "tlsk[labels]"; see
tlsk.evaluation.label_errors). The suspects are printed most doubtful first with their
given and likely labels; --out writes them as CSV (file, label, likely,
p_label, p_likely); --json adds them under "label_errors". They do
not change "ok" or the exit code: a suspect is for a person to look at.

--near-duplicates also groups the images that are copies of one another
(resized, recompressed, slightly cropped or recoloured; files with the same
bytes too): by a perceptual hash of each image (the default, no network
needed; --max-hash-bits), by the bottleneck features (--near-duplicates-method
features: the extractor options and cache of --label-errors;
--max-feature-distance), or by either (both); see
tlsk.evaluation.near_duplicates for the measured thresholds. DIR may then be
a split made by 'tlsk split' (train/, val/, test/ of class folders): each
part is checked, and a group with members in two parts is a leak, which
inflates every test figure. The groups are printed, leaks first;
--near-duplicates-csv writes one row per member (group, file, label, part,
leak, closest, bits, distance, same_bytes); --json adds them under
"near_duplicates" (each {"group", "files", "labels", "parts",
"crosses_parts", "crosses_classes", "pairs": [{"a", "b", "bits", "distance",
"same_bytes"}]}, files relative to DIR; "pairs" holds each member's closest
link, at most one per member, not every pair linked) and, for a split,
"parts" (the check of each part, as above) and "leaks" (how many groups
cross parts). A leak makes "ok" false (so --strict exits with 1); near
duplicates inside one part or one folder do not: they are for a person to
look at.

--report OUT/ writes a static HTML page (OUT/index.html): a summary, the
bad files and why, the duplicates side by side, with --near-duplicates their
groups (leaks across the parts of a split first), with --label-errors the
suspects' gallery, a map of the images by their features (with either), and
a sample of each class. Each suspect has a keep / remove / relabel control;
the page's "download fixes.csv" writes the choices for --apply.

Without --apply or --undo, no image is moved or changed.
"""

from __future__ import annotations

import os

from tlsk._util.files import Publication
from tlsk.cli import CommandError
from tlsk.cli._fixes import (
    FIXES_HELP,
    add_fixes_arguments,
    fixes_requested,
    run_fixes,
)
from tlsk.cli._folders import check_not_split, split_parts
from tlsk.cli._options import (
    SHARED_CACHE_HELP,
    add_extractor_options,
    add_near_duplicate_options,
    add_report_option,
    extractor_params,
    int_at_least,
    shared_cache,
)
from tlsk.cli._output import check_outputs, counted, note, print_json, shown, write_csv
from tlsk.evaluation.classifiers import CLASSIFIERS

__doc__ += "\n" + FIXES_HELP  # the command's --help: one home for the fixes' text

HELP = "report images per class, undecodable files and duplicates across classes"
EXAMPLE = """\
example:
  tlsk check data/pets
  tlsk check data/pets --json --strict > report.json || echo "fix the data"
  tlsk check data/pets --label-errors --cache pets.h5 --out suspects.csv \
      --report pets-report/
  tlsk check data/pets-split --near-duplicates --strict \
      --near-duplicates-csv copies.csv
  tlsk check data/pets --apply fixes.csv     # the report's "download fixes.csv"
  tlsk check data/pets --undo
"""

_CSV_FIELDS = ("file", "label", "likely", "p_label", "p_likely")


def add_arguments(parser):
    parser.add_argument(
        "dir", metavar="DIR", help="folder with one sub-folder per class"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (schema above)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with 1 if anything is wrong (bad file, duplicate, empty class)",
    )
    add_report_option(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the --report folder or the --out file if present",
    )
    group = parser.add_argument_group("label errors")
    group.add_argument(
        "--label-errors",
        action="store_true",
        help="rank the images whose label is probably wrong (needs tlsk[labels])",
    )
    group.add_argument("--out", metavar="FILE.csv", help="write the suspects as CSV")
    group.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default="logreg",
        help="of the out-of-fold probabilities (default: logreg)",
    )
    group.add_argument(
        "--folds",
        type=int_at_least(2),
        default=5,
        metavar="K",
        help="of the out-of-fold probabilities, at most the smallest class's "
        "size (default: 5)",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="of the folds and samples (default: 0)"
    )
    group.add_argument(
        "--cache",
        metavar="FILE.h5",
        help="feature cache: features already in it are not computed again "
        "(default: " + SHARED_CACHE_HELP + ")",
    )
    group = parser.add_argument_group("near duplicates")
    group.add_argument(
        "--near-duplicates",
        action="store_true",
        help="group the images that are copies of one another; DIR may be a "
        "split (then groups across its parts are leaks)",
    )
    add_near_duplicate_options(group)
    group.add_argument(
        "--near-duplicates-csv",
        metavar="FILE.csv",
        help="write the groups as CSV, one row per image",
    )
    add_extractor_options(parser)
    add_fixes_arguments(parser)


def run(args):
    from tlsk.images.folders import check_image_folder

    if fixes_requested(args):
        return run_fixes(args)
    if args.out and not args.label_errors:
        raise CommandError("--out writes label errors: give --label-errors too")
    if args.near_duplicates_csv and not args.near_duplicates:
        raise CommandError(
            "--near-duplicates-csv writes near duplicates: give --near-duplicates too"
        )
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    parts = split_parts(args.dir) if args.near_duplicates else []
    if parts and args.label_errors:
        given = os.path.join(args.dir, parts[0])
        args.usage_error(
            f"{shown(args.dir)} is a split: --near-duplicates checks it across "
            "its parts, but --label-errors reads one folder of class folders, "
            f"such as {shown(given)}"
        )
    if not args.near_duplicates:
        check_not_split(args, args.dir, part="train")
    needs_features = args.label_errors or (
        args.near_duplicates and args.near_duplicates_method != "phash"
    )
    check_outputs(
        args,
        [("--out", args.out), ("--near-duplicates-csv", args.near_duplicates_csv)],
        report=args.report,
        cache=(args.cache or shared_cache()) if needs_features else None,
        data=[args.dir],
    )
    extractor = _extractor(args) if needs_features else None

    note(args, f"checking {args.dir} ...")
    if parts:
        report = _check_split(args.dir, parts)
    else:
        report = check_image_folder(args.dir)
    errors = duplicates = None
    if args.label_errors:
        errors = _label_errors(args, report, extractor)
        report = {**report, "label_errors": _rows(errors, report["root"])}
    if args.near_duplicates:
        duplicates = _near_duplicates(args, report, parts, extractor)
        report = _with_near_duplicates(report, duplicates, parts)
    if args.json:
        print_json(report)
    else:
        print_report(report)
    # The CSVs are put in place with the report: all are written, or none.
    with Publication() as outputs:
        if args.out:
            _write_csv(args.out, report["label_errors"], outputs)
        if args.near_duplicates_csv:
            write_near_duplicates_csv(
                args.near_duplicates_csv, duplicates, report["root"], outputs
            )
        if args.report:
            from tlsk.evaluation.report import check_report

            page = check_report(
                args.dir,
                args.report,
                check=report,
                label_errors=errors,
                near_duplicates=duplicates,
                features=_features(args, report, parts, extractor),
                force=args.force,
                seed=args.seed,
            )
        outputs.publish()
    if args.out:
        note(args, f"wrote {args.out}")
    if args.near_duplicates_csv:
        note(args, f"wrote {args.near_duplicates_csv}")
    if args.report:
        note(args, f"wrote {page}")
    if args.strict and not report["ok"]:
        note(args, "problems found (--strict): exit code 1")
        return 1
    return 0


def _extractor(args):
    """The fitted extractor, first: a missing weights file fails before any work."""
    from tlsk.features.extractor import ImageFeatureExtractor

    if args.label_errors:
        try:
            import cleanlab  # noqa: F401
        except ImportError as err:
            raise CommandError(
                '--label-errors needs cleanlab: pip install "tlsk[labels]"'
            ) from err
    cache = args.cache or shared_cache()
    return ImageFeatureExtractor(**extractor_params(args), cache=cache).fit()


def _label_errors(args, report, extractor):
    from tlsk.evaluation.label_errors import find_label_errors

    paths, labels, _ = good_images(report, [])
    if len(set(labels)) < 2:
        raise CommandError(
            f"--label-errors needs images of at least 2 classes; {args.dir!r} has "
            f"{sorted(set(labels))}"
        )
    note(args, f"finding label errors among {counted(len(paths), 'image')} ...")
    return find_label_errors(
        paths,
        labels,
        extractor=extractor,
        classifier=args.classifier,
        cv=args.folds,
        random_state=args.seed,
    )


def _check_split(root, parts):
    """The check report of a split: each part checked as a folder of classes.

    Paths are relative to ``root`` (``train/cat/a.jpg``); ``"classes"``,
    ``"n_images"``, ``"n_bad"`` and the lists add up the parts; ``"parts"``
    holds each part's own report (paths relative to the part).
    """
    from tlsk.images.folders import check_image_folder

    checked = {}
    for part in parts:
        try:
            checked[part] = check_image_folder(os.path.join(root, part))
        except ValueError as err:  # a part with no class folder
            raise CommandError(str(err)) from err
    classes = {}
    for report in checked.values():
        for label, count in report["classes"].items():
            classes[label] = classes.get(label, 0) + count

    def prefixed(key, field):
        return [
            {**item, field: [f"{part}/{p}" for p in item[field]]}
            if isinstance(item[field], list)
            else {**item, field: f"{part}/{item[field]}"}
            for part, report in checked.items()
            for item in report[key]
        ]

    return {
        "format": checked[parts[0]]["format"],
        "version": 1,
        "root": os.path.abspath(root),
        "ok": all(report["ok"] for report in checked.values()),
        "split": list(parts),
        "classes": classes,
        "n_images": sum(report["n_images"] for report in checked.values()),
        "n_bad": sum(report["n_bad"] for report in checked.values()),
        "bad_files": prefixed("bad_files", "path"),
        "duplicates": prefixed("duplicates", "paths"),
        "empty_classes": sorted(
            {label for report in checked.values() for label in report["empty_classes"]}
        ),
        "ignored": [],
        "parts": checked,
    }


def _near_duplicates(args, report, parts, extractor):
    """Near duplicates among the images of DIR (of every part of a split)."""
    from tlsk.evaluation.near_duplicates import find_near_duplicates

    paths, labels, in_part = good_images(report, parts)
    note(
        args,
        f"finding near duplicates among {counted(len(paths), 'image')} "
        f"({args.near_duplicates_method}) ...",
    )
    return find_near_duplicates(
        paths,
        method=args.near_duplicates_method,
        max_bits=args.max_hash_bits,
        max_distance=args.max_feature_distance,
        extractor=extractor,
        labels=labels,
        parts=in_part if parts else None,
    )


def _features(args, report, parts, extractor):
    """``(paths, features)`` of the images for the report's map, or None.

    The features the label errors or near duplicates were found with: the
    extractor's cache holds them, so none is computed again.
    """
    if extractor is None:
        return None
    paths, _, _ = good_images(report, parts)
    note(args, f"mapping {counted(len(paths), 'image')} by their features ...")
    return paths, extractor.transform(paths)


def good_images(report, parts):
    """``(paths, labels, parts)`` of the images of DIR that decode, in DIR's order.

    ``parts`` are the split's parts (each image's part; None for a folder
    of classes).
    """
    from tlsk.images.folders import load_image_folder, relative_path

    root = report["root"]
    bad = {item["path"] for item in report["bad_files"]}
    paths, labels, in_part = [], [], []
    for part in parts or [None]:
        folder = root if part is None else os.path.join(root, part)
        found, classes = load_image_folder(folder, check=False)
        for path, label in zip(found, classes.tolist(), strict=True):
            if relative_path(path, root) not in bad:
                paths.append(path)
                labels.append(label)
                in_part.append(part)
    return paths, labels, in_part


def _with_near_duplicates(report, duplicates, parts):
    """``report`` with the groups (leaks first) and, for a split, the leaks."""
    rows = near_duplicate_rows(duplicates, report["root"])
    extra = {"near_duplicates": rows}
    if parts:
        leaks = len(duplicates.leaks())
        extra.update(leaks=leaks, ok=report["ok"] and not leaks)
    return {**report, **extra}


def near_duplicate_rows(duplicates, root):
    """The groups as JSON-ready rows, leaks first, files relative to ``root``."""
    rows = duplicates.rows(root)
    return sorted(rows, key=lambda row: (not row["crosses_parts"], row["group"]))


def write_near_duplicates_csv(path, duplicates, root, publication):
    """One CSV row per member of a group (:data:`CSV_FIELDS` of the library)."""
    from tlsk.evaluation.near_duplicates import CSV_FIELDS

    rows = duplicates.csv_rows(root)
    rows.sort(key=lambda row: (not row["leak"], row["group"]))
    table = [[row[field] for field in CSV_FIELDS] for row in rows]
    write_csv(path, CSV_FIELDS, table, publication)


def _rows(errors, root):
    """The suspects as JSON-ready rows, paths relative to ``root``."""
    from tlsk.images.folders import relative_path

    return [
        {
            "file": relative_path(s.image, root),
            "label": s.given,
            "likely": s.likely,
            "p_label": round(s.p_given, 6),
            "p_likely": round(s.p_likely, 6),
        }
        for s in errors.suspects()
    ]


def _write_csv(path, rows, publication):
    table = [[row[field] for field in _CSV_FIELDS] for row in rows]
    write_csv(path, _CSV_FIELDS, table, publication)


def print_report(report):
    classes = report["classes"]
    width = max(len(shown(label)) for label in classes)
    print(
        f"{counted(report['n_images'], 'image')} in "
        f"{counted(len(classes), 'class', 'classes')}, "
        f"{counted(report['n_bad'], 'bad file')} in {shown(report['root'])}"
    )
    if "parts" in report:  # a split: each class's images in each part
        parts = report["split"]
        print(f"  {'':<{width}}  " + "  ".join(f"{part:>6}" for part in parts))
        for label in classes:
            counts = [report["parts"][part]["classes"].get(label, 0) for part in parts]
            print(f"  {shown(label):<{width}}  " + "  ".join(f"{n:>6}" for n in counts))
    else:
        for label, count in classes.items():
            print(f"  {shown(label):<{width}}  {count:>6}")
    if report["bad_files"]:
        print(f"files that cannot be decoded ({len(report['bad_files'])}):")
        for bad in report["bad_files"]:
            print(f"  {shown(bad['path'])}: {bad['reason']}")
    if report["duplicates"]:
        print(f"same image in two or more classes ({len(report['duplicates'])}):")
        for duplicate in report["duplicates"]:
            print("  " + " = ".join(shown(path) for path in duplicate["paths"]))
    if report["empty_classes"]:
        names = ", ".join(shown(label) for label in report["empty_classes"])
        print(f"classes with no image: {names}")
    if report["ignored"]:
        names = ", ".join(shown(name) for name in report["ignored"])
        print(f"ignored (not class folders): {names}")
    if "label_errors" in report:
        _print_suspects(report["label_errors"])
    if "near_duplicates" in report:
        _print_near_duplicates(report)
    print("ok" if report["ok"] else "problems found")


def _print_near_duplicates(report):
    rows = report["near_duplicates"]
    leaks = report.get("leaks")
    across = "" if leaks is None else f", {leaks} across parts (leakage)"
    print(
        f"near duplicates: {counted(len(rows), 'group')}{across}"
        + (", leaks first:" if leaks else ":" if rows else "")
    )
    for row in rows:
        where = ""
        if row["crosses_parts"]:
            where = " LEAK across " + ", ".join(dict.fromkeys(row["parts"]))
        closest = {}
        for pair in row["pairs"]:
            for name in (pair["a"], pair["b"]):
                closest.setdefault(name, []).append(pair)
        print(f"  group {row['group']}{where}:")
        for name in row["files"]:
            print(f"    {shown(name)}  ({_nearest(closest[name])})")


def _nearest(pairs):
    """How close an image is to its nearest member: the measures of that pair."""
    best = min(
        pairs,
        key=lambda p: (
            not p["same_bytes"],
            64 if p["bits"] is None else p["bits"],
            2.0 if p["distance"] is None else p["distance"],
        ),
    )
    if best["same_bytes"]:
        return "same bytes"
    words = []
    if best["bits"] is not None:
        words.append(f"{best['bits']} bits")
    if best["distance"] is not None:
        words.append(f"cosine distance {best['distance']:.4f}")
    return ", ".join(words)


def _print_suspects(rows):
    from tlsk.cli._output import format_table

    print(f"labels that are probably wrong ({len(rows)}), most doubtful first:")
    if rows:
        table = [["file", "label", "likely", "p(label)", "p(likely)"]] + [
            [
                shown(row["file"]),
                shown(row["label"]),
                shown(row["likely"]),
                f"{row['p_label']:.3f}",
                f"{row['p_likely']:.3f}",
            ]
            for row in rows
        ]
        for line in format_table(table):
            print("  " + line)
