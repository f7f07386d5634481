"""``tlsk check DIR --apply FIXES.csv`` and ``--undo``: the choices made in a
check report (relabel, remove, keep), applied to the data folder and undone.

The format of the CSV, the moves, the quarantine and the journal are
:mod:`tlsk.images.fixes`'s; this module parses the flags, calls it and
prints one line per file and a count.
"""

from __future__ import annotations

import os
import shlex

from tlsk.cli import CommandError
from tlsk.cli._output import counted, note, shown

__all__ = ["FIXES_HELP", "add_fixes_arguments", "fixes_requested", "run_fixes"]

FIXES_HELP = """\
--apply FIXES.csv changes the data folder as the CSV says (the check
report's "download fixes.csv" writes it; columns file, action, label,
reason and sha256, the file's SHA-256 when the report showed it: a file
whose bytes differ is refused, so a CSV made for another folder moves
nothing): 'relabel' moves DIR/<class>/.../<name> to DIR/<label>/<name>,
'remove' moves the file to a quarantine beside the data (DIR.quarantine/,
same relative path; nothing is deleted), 'keep' moves nothing. Every row is
checked before anything moves; a taken name gets a new one (<stem>~<old
class><ext>), never replaced. Each move is journaled first in
DIR.tlsk-fixes.jsonl, so --undo puts every file back, even after a crash,
and removes the folders the fixes created. DIR may be a split (its paths
are then <part>/<class>/<name>, and a relabel stays in its part).
"""

# Options of ``tlsk check`` that read the data, which --apply and --undo change.
_CHECK_OPTIONS = (
    ("label_errors", "--label-errors"),
    ("near_duplicates", "--near-duplicates"),
    ("near_duplicates_csv", "--near-duplicates-csv"),
    ("cache", "--cache"),
    ("report", "--report"),
    ("out", "--out"),
    ("json", "--json"),
    ("strict", "--strict"),
    ("force", "--force"),
)


def add_fixes_arguments(parser):
    """Add ``--apply FIXES.csv``, ``--undo`` and ``--quarantine DIR`` to ``parser``."""
    group = parser.add_argument_group(
        "fixes", "change the data folder as a check report's choices say"
    )
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--apply",
        metavar="FIXES.csv",
        help="relabel, remove (to a quarantine) or keep files as the CSV says",
    )
    exclusive.add_argument(
        "--undo",
        action="store_true",
        help="put back every file that --apply moved in DIR",
    )
    group.add_argument(
        "--quarantine",
        metavar="FOLDER",
        help="with --apply: where removed files go (default: DIR.quarantine "
        "beside the data folder)",
    )


def fixes_requested(args):
    """Whether the command line asks for --apply, --undo or --quarantine."""
    return bool(
        getattr(args, "apply", None)
        or getattr(args, "undo", False)
        or getattr(args, "quarantine", None)
    )


def run_fixes(args) -> int:
    """Apply or undo the fixes of ``args.dir``; print what moved; 0 when done."""
    _check_usage(args)
    if not os.path.isdir(args.dir):
        raise CommandError(f"no folder at {args.dir!r}")
    if args.undo:
        return _undo(args)
    return _apply(args)


def _check_usage(args):
    given = [flag for name, flag in _CHECK_OPTIONS if getattr(args, name, None)]
    action = "--apply" if args.apply else "--undo" if args.undo else None
    if action is None:
        args.usage_error("--quarantine is for --apply: give --apply FIXES.csv")
    if given:
        args.usage_error(
            f"{action} changes the data folder; {' and '.join(given)} "
            f"{'reads' if len(given) == 1 else 'read'} it: run them one after "
            "the other"
        )
    if args.undo and args.quarantine:
        args.usage_error(
            "--undo finds every file in the journal: --quarantine is for --apply"
        )


def _apply(args):
    from tlsk.cli._folders import split_parts
    from tlsk.images.fixes import FixesError, apply_fixes, read_fixes

    if not os.path.isfile(args.apply):
        raise CommandError(f"no fixes CSV at {args.apply!r}")
    # In a split, paths are <part>/<class>/<name>, as its check report names them.
    where = {"quarantine": args.quarantine, "split": split_parts(args.dir) or None}
    try:
        fixes = read_fixes(args.apply, args.dir, **where)
        done = apply_fixes(args.dir, fixes, **where)
    except FixesError as err:
        raise CommandError(str(err)) from err
    root = os.path.realpath(args.dir)
    words = {"relabel": "relabelled", "remove": "removed"}
    for move in done.moved:
        taken = "  (its name was taken there)" if move.renamed else ""
        print(
            f"{words[move.action]:<10}  {shown(move.file)} -> "
            f"{shown(_place(move.destination, root))}{taken}"
        )
    for move in done.already:
        print(
            f"{'already':<10}  {shown(move.file)} -> "
            f"{shown(_place(move.destination, root))}  (by an earlier --apply)"
        )
    for file in done.kept:
        print(f"{'kept':<10}  {shown(file)}")
    counts = [
        f"{sum(move.action == action for move in done.moved)} {word}"
        for action, word in words.items()
    ]
    counts.append(f"{len(done.kept)} kept")
    if done.already:
        counts.append(f"{len(done.already)} already done")
    print(
        f"{counted(len(fixes), 'fix', 'fixes')} from {shown(args.apply)}: "
        f"{', '.join(counts)}"
    )
    note(
        args,
        f"journal: {shown(done.journal)}; put everything back with: "
        f"tlsk check {shown(shlex.quote(args.dir))} --undo",
    )
    return 0


def _undo(args):
    from tlsk.images.fixes import FixesError, undo_fixes

    try:
        undone = undo_fixes(args.dir)
    except FixesError as err:
        raise CommandError(str(err)) from err
    root = os.path.realpath(args.dir)
    for move in undone.restored:
        print(
            f"restored  {shown(_place(move.destination, root))} -> {shown(move.file)}"
        )
    restored = counted(len(undone.restored), "file")
    if not undone.complete:
        print(f"{restored} put back")
        problems = "\n".join("  " + problem for problem in undone.problems)
        raise CommandError(
            f"{counted(len(undone.problems), 'file')} could not be put back, "
            f"nothing was overwritten; the journal {undone.journal!r} is kept, so "
            f"--undo can finish once they are dealt with:\n{problems}\n"
            "A file that is gone (deleted from the quarantine) cannot come "
            "back: to accept its loss and end the undo, move the journal aside; "
            "tlsk never deletes it"
        )
    if not undone.restored and not undone.folders_removed:
        print(f"nothing to put back in {shown(args.dir)}: no fix moved a file")
        return 0
    folders = counted(len(undone.folders_removed), "empty folder")
    print(
        f"{restored} put back, {folders} that the fixes created removed; "
        "the folder is as it was before them"
    )
    return 0


def _place(path, root):
    """``path`` as printed: relative to the data folder inside it, relative to
    the working folder beside it, absolute elsewhere."""
    if os.path.commonpath([path, root]) == root:
        return os.path.relpath(path, root).replace(os.sep, "/")
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
