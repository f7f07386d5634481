"""The journal of a data folder's fixes: JSON lines, read whole, appended to
line by line, each line fsynced before what it describes happens; a journal
torn by a kill (a prefix of its header, a last line cut short) is read as
the whole lines before the tear."""

from __future__ import annotations

import json
import os
import stat

from tlsk._util.files import file_kind, fsync_dir
from tlsk.images.fixes import system_calls
from tlsk.images.fixes.csv_format import FixesError, label_of, not_the_file
from tlsk.images.fixes.moves import state
from tlsk.images.fixes.paths import journal_path
from tlsk.images.fixes.results import Move

__all__ = ["JOURNAL_FORMAT", "JOURNAL_VERSION", "Journal"]

JOURNAL_FORMAT = "tlsk-fixes"
JOURNAL_VERSION = 1


class Journal:
    """The journal of a data folder: read whole, appended to line by line."""

    def __init__(self, root):
        self.root = root
        self.path = journal_path(root)
        self.records = []
        self.exists = False
        self.torn = False
        self.length = 0  # bytes up to the last complete line

    def header(self):
        header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION}
        return _line({**header, "root": self.root})

    def load(self):
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            raise FixesError(
                f"the journal {self.path!r} is {file_kind(mode)}; move it away"
            )
        with open(self.path, "rb") as file:
            data = file.read()
        if b"\n" not in data:
            # Killed while writing its first line: a prefix of the header.
            if not self.header().startswith(data):
                raise FixesError(f"{self.path!r} is not a journal of tlsk's fixes")
            self.torn = True
            return
        self.exists = True
        self.length = data.rindex(b"\n") + 1
        lines = data[: self.length].split(b"\n")[:-1]
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            raise FixesError(f"{self.path!r} is not a journal of tlsk's fixes")
        if header.get("version") != JOURNAL_VERSION or header.get("root") != self.root:
            raise FixesError(
                f"the journal {self.path!r} is of {header.get('root')!r} "
                f"(version {header.get('version')!r}), not of {self.root!r} "
                f"(version {JOURNAL_VERSION}); move it away"
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except ValueError as err:
                raise FixesError(
                    f"the journal {self.path!r} is damaged at line {number}: {err}; "
                    "nothing was moved"
                ) from err
            self.records.append(record)

    def moves(self, *, undone=False):
        """The move records, in order; those an undo finished only if ``undone``."""
        finished = {
            (record.get("batch"), record.get("step"))
            for record in self.records
            if record.get("op") == "undone"
        }
        return [
            record
            for record in self.records
            if record.get("op") == "move"
            and (undone or (record["batch"], record["step"]) not in finished)
        ]

    def next_batch(self):
        return 1 + max((r.get("batch", 0) for r in self.records), default=0)

    def append(self, record):
        if not self.exists:
            self._create()
        elif os.path.getsize(self.path) != self.length:
            system_calls.truncate(self.path, self.length)
        data = _line(record)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            system_calls.write_line(fd, data)
        finally:
            os.close(fd)
        self.length += len(data)
        self.records.append(record)

    def _create(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        flags |= os.O_TRUNC if self.torn else os.O_EXCL
        fd = os.open(self.path, flags, 0o666)
        data = self.header()
        try:
            system_calls.write_line(fd, data)
        finally:
            os.close(fd)
        fsync_dir(os.path.dirname(self.path))
        self.exists, self.torn, self.length = True, False, len(data)

    def remove(self):
        system_calls.unlink(self.path)
        fsync_dir(os.path.dirname(self.path))
        self.exists = False

    def remove_torn(self):
        if self.torn:
            system_calls.unlink(self.path)
            fsync_dir(os.path.dirname(self.path))

    def done(self, root, fix):
        """The Move of an earlier apply that did ``fix`` already, or None."""
        record = self._last_move_of(fix.file)
        if record is None or (record["action"], record["label"]) != (
            fix.action,
            label_of(fix),
        ):
            return None
        if state(root, record) != (None, "ours"):
            return None
        if fix.sha256 is not None and record.get("sha256") != fix.sha256:
            raise not_the_file(fix)
        renamed = os.path.basename(record["to"]) != fix.file.split("/")[-1]
        return Move(fix.action, fix.file, record["to"], renamed)

    def moved_to(self, root, fix):
        """Words for a missing file that an earlier apply moved elsewhere."""
        record = self._last_move_of(fix.file)
        if record is None or state(root, record)[1] != "ours":
            return ""
        return (
            f"; earlier fixes moved it to {record['to']!r} ({_said_record(record)}): "
            "undo them first to give it another action"
        )

    def _last_move_of(self, file):
        for record in reversed(self.moves()):
            if record["from"] == file:
                return record
        return None


def _said_record(record):
    if record["action"] == "relabel":
        return f"relabel to {record['label']!r}"
    return record["action"]


def _line(record):
    # ensure_ascii: a name that is not UTF-8 (surrogate escapes) stays exact.
    return (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode()
