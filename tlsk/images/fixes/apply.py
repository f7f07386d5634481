"""Fixes applied and undone: the plan carried out step by step, each move
journaled and fsynced before it is made; an undo puts back, newest first,
what the journal says tlsk moved."""

from __future__ import annotations

import os

from tlsk._util.files import folder_locked, fsync_dir
from tlsk.images.fixes import system_calls
from tlsk.images.fixes.csv_format import RowProblem
from tlsk.images.fixes.journal import Journal
from tlsk.images.fixes.moves import carry, remove_if_empty, restore, settle
from tlsk.images.fixes.paths import (
    data_root,
    journal_path,
    quarantine_path,
    source_path,
    split_parts,
    temporary_path,
)
from tlsk.images.fixes.plan import plan_steps
from tlsk.images.fixes.results import AppliedFixes, Move, UndoneFixes

__all__ = ["apply_fixes", "undo_fixes"]


def apply_fixes(root, fixes, *, quarantine=None, split=None) -> AppliedFixes:
    """Apply ``fixes`` to the data folder ``root``, journaled, undoable.

    Every fix is checked first (as :func:`read_fixes` does), against the tree
    as it is now; one bad fix and nothing moves. Then each move is recorded
    in the journal (:func:`journal_path`), fsynced, and made; see
    :mod:`tlsk.images.fixes` for the moves and the crash contract. Rows that
    an earlier, interrupted or complete, apply already did are not done again.

    Parameters
    ----------
    root : str or path-like
        The data folder, one sub-folder per class.
    fixes : list of Fix
        From :func:`read_fixes`, or built in Python.
    quarantine : str or path-like, optional
        Where removed files go (default: :func:`default_quarantine`); outside
        ``root``. On another file system, files are copied, fsynced, then
        removed from ``root``.
    split : list of str, optional
        When ``root`` is a split, its parts (as :func:`read_fixes`).

    Returns
    -------
    AppliedFixes

    Examples
    --------
    >>> import os, tempfile
    >>> from tlsk.images.fixes import Fix, apply_fixes, undo_fixes
    >>> root = os.path.join(tempfile.mkdtemp(), "data")
    >>> for name in ("cat/a.jpg", "cat/b.jpg", "dog/c.jpg"):
    ...     os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    ...     with open(os.path.join(root, name), "wb") as file:
    ...         _ = file.write(name.encode())
    >>> done = apply_fixes(
    ...     root, [Fix("cat/a.jpg", "relabel", "dog"), Fix("cat/b.jpg", "remove")]
    ... )
    >>> sorted(os.listdir(os.path.join(root, "dog")))
    ['a.jpg', 'c.jpg']
    >>> os.listdir(os.path.join(root + ".quarantine", "cat"))
    ['b.jpg']
    >>> undone = undo_fixes(root)
    >>> sorted(os.listdir(os.path.join(root, "cat"))), undone.complete
    (['a.jpg', 'b.jpg'], True)
    >>> os.path.exists(root + ".quarantine"), os.path.exists(done.journal)
    (False, False)
    """
    root = data_root(root)
    quarantine = quarantine_path(root, quarantine)
    summary = AppliedFixes(journal=journal_path(root))
    with folder_locked(root):
        journal = Journal(root)
        journal.load()
        for record in journal.moves():
            settle(root, record)
        steps, _ = plan_steps(
            root, list(fixes), quarantine, journal, split_parts(split)
        )
        batch = journal.next_batch()
        journal.append({"op": "apply", "batch": batch, "quarantine": quarantine})
        for number, step in enumerate(steps):
            fix = step.fix
            if step.kind == "already":
                summary.already.append(step.move)
                continue
            if step.kind == "keep":
                journal.append(
                    {
                        "op": "keep",
                        "batch": batch,
                        "step": number,
                        "file": fix.file,
                        "reason": fix.reason,
                    }
                )
                summary.kept.append(fix.file)
                continue
            record = {
                "op": "move",
                "batch": batch,
                "step": number,
                "action": fix.action,
                "label": fix.label,
                "reason": fix.reason,
                "from": fix.file,
                "to": step.destination,
                "made": step.made,
                "size": step.size,
                "sha256": step.sha256,
                "how": step.how,
            }
            journal.append(record)
            for folder in step.made:
                system_calls.mkdir(folder)
                fsync_dir(os.path.dirname(folder))
            carry(
                source_path(root, fix.file),
                step.destination,
                step.how,
                temporary_path(step.destination, "fix", record),
            )
            summary.moved.append(
                Move(fix.action, fix.file, step.destination, step.renamed)
            )
    return summary


def undo_fixes(root) -> UndoneFixes:
    """Put back every file that the fixes of ``root`` moved, newest first.

    Only files that the journal (:func:`journal_path`) says tlsk moved, and
    only if each is still where tlsk put it (same size and SHA-256) and its
    original place is free; otherwise it stays, and ``problems`` says why
    (nothing is overwritten). The leftovers of an interrupted move are
    removed, then the empty folders the fixes created. When nothing is left
    to undo, the journal is removed too, and the tree is as it was before
    the first apply. Undoing again after a kill, or after fixing a problem,
    goes on where it stopped.

    Returns
    -------
    UndoneFixes

    Examples
    --------
    >>> import tempfile
    >>> from tlsk.images.fixes import undo_fixes
    >>> undo_fixes(tempfile.mkdtemp()).restored  # no journal: nothing to do
    []
    """
    root = data_root(root)
    summary = UndoneFixes(journal=journal_path(root))
    with folder_locked(root):
        journal = Journal(root)
        journal.load()
        if not journal.exists:
            journal.remove_torn()
            return summary
        for record in reversed(journal.moves()):
            at_source, at_destination = settle(root, record)
            if at_destination == "ours" and at_source is None:
                try:
                    restore(root, record, source_path(root, record["from"]))
                except RowProblem as problem:  # a link where its folder was
                    summary.problems.append(
                        f"{record['to']!r} was not put back: {problem}"
                    )
                    continue
                summary.restored.append(
                    Move(record["action"], record["from"], record["to"])
                )
                at_source, at_destination = "ours", None
            if at_source is not None and at_destination != "ours":
                # Back, or never moved: nothing of it is left to undo, and a
                # later undo must not take what is there now for a loss.
                journal.append(
                    {"op": "undone", "batch": record["batch"], "step": record["step"]}
                )
            elif at_source is None:
                why = (
                    "is gone"
                    if at_destination is None
                    else "holds another file (changed since)"
                )
                summary.problems.append(
                    f"{record['from']!r} was not put back: {record['to']!r}, where "
                    f"the fixes moved it, {why}"
                )
            else:
                summary.problems.append(
                    f"{record['to']!r} was not put back: its old place "
                    f"{record['from']!r} holds another file"
                )
        for record in reversed(journal.moves(undone=True)):
            for folder in reversed(record["made"]):
                if remove_if_empty(folder):
                    summary.folders_removed.append(folder)
        summary.complete = not summary.problems
        if summary.complete:
            journal.remove()
    return summary
