"""What the fixes did: a file moved (:class:`Move`), and the summaries that
:func:`~tlsk.images.fixes.apply_fixes` and :func:`~tlsk.images.fixes.undo_fixes`
return."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AppliedFixes", "Move", "UndoneFixes"]


@dataclass(frozen=True)
class Move:
    """A file moved by a fix (or put back by an undo).

    ``file`` is the image's path relative to the data folder before the fix;
    ``destination`` the absolute path it was moved to; ``renamed`` is True
    when its name was taken there and it got a new one.
    """

    action: str
    file: str
    destination: str
    renamed: bool = False


@dataclass
class AppliedFixes:
    """What :func:`apply_fixes` did: ``moved`` now, ``already`` moved by an
    earlier apply of the same fixes, ``kept`` (paths relative to the data
    folder); ``journal`` is its path."""

    moved: list[Move] = field(default_factory=list)
    already: list[Move] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    journal: str = ""


@dataclass
class UndoneFixes:
    """What :func:`undo_fixes` did: ``restored`` files (each a :class:`Move`
    whose ``destination`` is where the fix had put it), ``problems`` (files
    left where they are, and why), ``folders_removed``; ``complete`` when
    nothing is left to undo (the journal is then removed)."""

    restored: list[Move] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    folders_removed: list[str] = field(default_factory=list)
    journal: str = ""
    complete: bool = True
