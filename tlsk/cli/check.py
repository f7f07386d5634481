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
"""

from __future__ import annotations

HELP = "report images per class, undecodable files and duplicates across classes"
EXAMPLE = """\
example:
  tlsk check data/pets
  tlsk check data/pets --json --strict > report.json || echo "fix the data"
"""


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


def run(args):
    from tlsk.cli._output import note, print_json
    from tlsk.datasets import check_image_folder

    note(args, f"checking {args.dir} ...")
    report = check_image_folder(args.dir)
    if args.json:
        print_json(report)
    else:
        print_report(report)
    if args.strict and not report["ok"]:
        note(args, "problems found (--strict): exit code 1")
        return 1
    return 0


def shown(name):
    """A path as printed: repr() when it holds control or unencodable characters."""
    return name if name.isprintable() else repr(name)


def print_report(report):
    classes = report["classes"]
    width = max(len(shown(label)) for label in classes)
    print(
        f"{report['n_images']} images in {len(classes)} classes, "
        f"{report['n_bad']} bad files in {shown(report['root'])}"
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
    print("ok" if report["ok"] else "problems found")
