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

--report OUT/ writes a static HTML page (OUT/index.html): a sample of each
class, the bad files and why, the duplicates side by side and, with
--label-errors, the suspects' gallery.

No image is moved or changed.
"""

from __future__ import annotations

import os

from tlsk._util.files import Publication
from tlsk.cli import CommandError
from tlsk.cli._folders import check_not_split
from tlsk.cli._options import (
    SHARED_CACHE_HELP,
    add_extractor_options,
    add_report_option,
    extractor_params,
    int_at_least,
    shared_cache,
)
from tlsk.cli._output import check_outputs, counted, note, print_json, shown, write_csv
from tlsk.evaluation.classifiers import CLASSIFIERS

HELP = "report images per class, undecodable files and duplicates across classes"
EXAMPLE = """\
example:
  tlsk check data/pets
  tlsk check data/pets --json --strict > report.json || echo "fix the data"
  tlsk check data/pets --label-errors --cache pets.h5 --out suspects.csv \
      --report pets-report/
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
    add_extractor_options(parser)


def run(args):
    from tlsk.images.folders import check_image_folder

    if args.out and not args.label_errors:
        raise CommandError("--out writes label errors: give --label-errors too")
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    check_not_split(args, args.dir, part="train")
    check_outputs(
        args,
        [("--out", args.out)],
        report=args.report,
        cache=(args.cache or shared_cache()) if args.label_errors else None,
        data=[args.dir],
    )
    extractor = _extractor(args) if args.label_errors else None

    note(args, f"checking {args.dir} ...")
    report = check_image_folder(args.dir)
    errors = None
    if args.label_errors:
        errors = _label_errors(args, report, extractor)
        report = {**report, "label_errors": _rows(errors, report["root"])}
    if args.json:
        print_json(report)
    else:
        print_report(report)
    # The CSV is put in place with the report: both are written, or neither.
    with Publication() as outputs:
        if args.out:
            _write_csv(args.out, report["label_errors"], outputs)
        if args.report:
            from tlsk.evaluation.report import check_report

            page = check_report(
                args.dir,
                args.report,
                check=report,
                label_errors=errors,
                force=args.force,
                seed=args.seed,
            )
        outputs.publish()
    if args.out:
        note(args, f"wrote {args.out}")
    if args.report:
        note(args, f"wrote {page}")
    if args.strict and not report["ok"]:
        note(args, "problems found (--strict): exit code 1")
        return 1
    return 0


def _extractor(args):
    """The fitted extractor, first: a missing weights file fails before any work."""
    from tlsk.features.extractor import ImageFeatureExtractor

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
    from tlsk.images.folders import load_image_folder, relative_path

    root = report["root"]
    bad = {item["path"] for item in report["bad_files"]}
    paths, labels = load_image_folder(root, check=False)
    keep = [i for i, path in enumerate(paths) if relative_path(path, root) not in bad]
    paths, labels = [paths[i] for i in keep], labels[keep]
    if len(set(labels.tolist())) < 2:
        raise CommandError(
            f"--label-errors needs images of at least 2 classes; {args.dir!r} has "
            f"{sorted(set(labels.tolist()))}"
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
    print("ok" if report["ok"] else "problems found")


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
