"""Where the fixes of a data folder read and write: the folder itself (its
links resolved), the quarantine, the journal's name, a fix's file, and the
hidden name of a copy in progress."""

from __future__ import annotations

import os

from tlsk.images.fixes.csv_format import FixesError

__all__ = [
    "data_root",
    "default_quarantine",
    "journal_path",
    "quarantine_path",
    "source_path",
    "split_parts",
    "temporary_path",
]


def default_quarantine(root) -> str:
    """``<root>.quarantine``, beside the data folder (``root``'s links resolved)."""
    return data_root(root) + ".quarantine"


def journal_path(root) -> str:
    """``<root>.tlsk-fixes.jsonl``, beside the data folder: the journal of its fixes."""
    return data_root(root) + ".tlsk-fixes.jsonl"


def data_root(root):
    """``root`` with its links resolved, checked: an existing folder, not the
    file system's root."""
    root = os.path.realpath(os.fsdecode(os.fspath(root)))
    if not os.path.isdir(root):
        raise FixesError(f"root must be an existing folder; received {root!r}")
    if os.path.dirname(root) == root:
        raise FixesError("root must be a data folder, not the file system's root")
    return root


def quarantine_path(root, quarantine):
    """The quarantine of the data folder ``root`` (given, or the default),
    checked: outside ``root``, not holding it, not the journal's name."""
    if quarantine is None:
        return root + ".quarantine"
    path = os.fsdecode(os.fspath(quarantine))
    folder, name = os.path.split(os.path.abspath(path))
    path = os.path.join(os.path.realpath(folder), name)
    for one, other in ((path, root), (root, path)):
        if os.path.commonpath([one, other]) == other:
            raise FixesError(
                f"quarantine must be outside the data folder {root!r}, and not "
                f"hold it; received {path!r}"
            )
    if path == journal_path(root):
        raise FixesError(f"quarantine {path!r} is the journal's name")
    return path


def split_parts(split):
    """The parts of a split as a tuple, or None for a folder of classes."""
    if split is None:
        return None
    if isinstance(split, str) or not all(isinstance(p, str) and p for p in split):
        raise TypeError(f"split must be a list of folder names; received {split!r}")
    return tuple(split)


def source_path(root, file):
    """The absolute path of ``file``, a fix's path relative to ``root``."""
    return os.path.join(root, *file.split("/"))


def temporary_path(path, kind, record):
    """The hidden name of a copy in progress beside ``path``, one per record."""
    return os.path.join(
        os.path.dirname(path), f".tlsk-{kind}-{record['batch']}-{record['step']}.part"
    )
