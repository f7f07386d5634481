"""Fixes to a folder-per-class tree: relabel a file, remove it to a quarantine, or
keep it; every move journaled first, so that any of it can be undone.

The fixes CSV
-------------
UTF-8 text (a byte-order mark is allowed), comma-separated, quoted as RFC 4180
quotes (``"a, b.jpg"``, ``"say ""hi"".jpg"``). The first row names the
columns, in any order:

``file`` (required)
    The image, relative to the data folder, with ``/`` between names:
    ``<class>/<name>`` or ``<class>/<sub>/.../<name>``, as ``tlsk check --json``
    prints paths. It must be an existing regular file below a class folder;
    an absolute path, ``..``, ``.``, an empty name, a hidden name (``.x``) and
    a symbolic link anywhere on the way are refused. A name that is not UTF-8
    is given by its bytes, as the ``tlsk check`` CSVs write it. In a split
    (``split=``: ``train/``, ``val/``, ``test/`` of class folders) it is
    ``<part>/<class>/<name>``, and a relabel stays in its part.
``action`` (required)
    ``relabel``, ``remove`` or ``keep`` (case and surrounding spaces ignored).
``label``
    For ``relabel``, the class the file moves to: an existing class folder,
    or a new one, which must then be a safe folder name (one printable name,
    not hidden, no ``/``, no space at either end, at most 255 bytes). Read
    for ``relabel`` only.
``reason``
    Free text, kept in the journal (``label error``, ``near duplicate``).
``sha256``
    The SHA-256 of the file's bytes (64 hexadecimal digits), as the check
    report's page writes it for every file it shows. When given, a file whose
    bytes differ (the CSV made for another folder, or the file changed since)
    is refused with the other bad rows. An empty cell, or no such column (a
    CSV written by hand), checks nothing.

The check report's page writes the columns in this order: ``file, action,
label, reason, sha256``.

A cell that starts with ``'`` loses that one quote: spreadsheets take it as
"this is text", and the check report's page puts one before every cell
that starts with ``'``, a formula character (``= + - @``) or white space,
so that no spreadsheet runs a name. Write ``''x.jpg`` for a file named ``'x.jpg``.
Blank rows are skipped. The same file twice with the same action is read
once; with different actions it is an error.

What the actions do
-------------------
- ``relabel`` moves ``root/<old>/<sub>/<name>`` to ``root/<label>/<name>``,
  creating the class folder if needed.
- ``remove`` moves ``root/<path>`` to ``<quarantine>/<path>`` (the same
  relative path); the quarantine is ``<root>.quarantine`` beside the data
  folder unless another is given. Nothing is ever deleted.
- ``keep`` moves nothing; it is recorded in the journal.

Nothing is overwritten. When the name a file would take is taken (on disk,
or by an earlier row of the same fixes), the file gets the first free name
of ``<stem>~<old class><ext>``, ``<stem>~<old class>~2<ext>``, ... for a
relabel, and of ``<stem>~2<ext>``, ``<stem>~3<ext>``, ... in the quarantine,
and the summary says so. The names depend only on the tree and the order of
the rows, so the same fixes on the same tree always give the same result.

Every row is checked before anything moves: one error names the CSV, each
bad row's line and its problem, and the tree is left as it was.

The journal
-----------
``<root>.tlsk-fixes.jsonl`` beside the data folder (``root`` with its links
resolved), JSON lines: a header ``{"format": "tlsk-fixes", "version": 1,
"root": ...}``, then one record per applied batch and per fix, and one
per move an undo has finished (so that a later undo takes nothing found
there since for a loss). A move's
record (where from, where to, which folders it creates, the file's size and
SHA-256, and whether it is a rename or, across file systems, a copy) is
written and fsynced *before* the move. A move is a hard link of the new
name then removal of the old one (so an existing name is never replaced;
where the file system has no hard links, a rename after checking that the
name is free); across file systems, a copy into a hidden temporary file
beside the destination, fsynced, linked into place, then removal of the
source. Killed at any moment, every file is whole at its old place, at its
new place, or (for an instant) at both, and the journal says which files
tlsk may have moved: :func:`undo_fixes` puts back each file that is where
tlsk put it (a move that never happened is skipped), removes the leftovers
of an interrupted move and the empty folders tlsk created, then the
journal. Applying the same fixes again after a crash finishes the work:
rows already applied are reported as such, and nothing is moved twice.
"""

# The code, one job a module (each imports only the ones above it):
#   csv_format    the CSV: its columns and actions, Fix, FixesError, parsing,
#                 the words that name a bad row
#   results       Move, AppliedFixes, UndoneFixes
#   paths         the data folder, the quarantine, the journal's name
#   system_calls  every change to the file system, one call each (the crash
#                 tests stop a process before each)
#   moves         link then unlink, rename, copy across file systems; where a
#                 moved file is (size and SHA-256)
#   journal       the JSON-lines journal: header, records, a torn last line
#   plan          read_fixes; every fix checked, then planned as a step
#   apply         apply_fixes and undo_fixes

from tlsk.images.fixes.apply import apply_fixes, undo_fixes
from tlsk.images.fixes.csv_format import ACTIONS, FIXES_COLUMNS, Fix, FixesError
from tlsk.images.fixes.journal import JOURNAL_FORMAT as JOURNAL_FORMAT
from tlsk.images.fixes.journal import JOURNAL_VERSION as JOURNAL_VERSION
from tlsk.images.fixes.paths import default_quarantine, journal_path
from tlsk.images.fixes.plan import read_fixes
from tlsk.images.fixes.results import AppliedFixes, Move, UndoneFixes

__all__ = [
    "ACTIONS",
    "FIXES_COLUMNS",
    "AppliedFixes",
    "Fix",
    "FixesError",
    "Move",
    "UndoneFixes",
    "apply_fixes",
    "default_quarantine",
    "journal_path",
    "read_fixes",
    "undo_fixes",
]

# The public classes are named by this package, where users import them: in
# tracebacks, reprs of the classes and pickles, as they always were.
for _public in (AppliedFixes, Fix, FixesError, Move, UndoneFixes):
    _public.__module__ = __name__
del _public
