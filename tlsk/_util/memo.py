"""The one kind of per-process cache tlsk keeps: a bounded, thread-safe memo.

Seven things are remembered within a process because computing them again
costs seconds or a file read: built networks, compiled OpenVINO models,
ImageNet heads, weight-file digests, content keys of image files, open cache
readers and parsed cache manifests. Each is a :class:`Memo`: a map with a
name, a documented bound and least-recently-used eviction, and
:func:`clear_caches` (public as ``tlsk.clear_caches``) empties them all.

What is remembered about a *file* is keyed by its
:func:`tlsk._util.files.file_identity` and only once the file has settled
(:func:`settled`): written twice within the file system's timestamp
resolution, a file could otherwise keep the same identity with new bytes
(git's "racily clean" entries). "Settled" is by this machine's clock; on a
network file system whose server's clock runs behind, a file still being
written could look settled (git has the same limit).

Examples
--------
>>> memo = Memo("squares", max_entries=2)
>>> memo.get_or_build(3, lambda: 9)
9
>>> memo.get(3), memo.get(4)
(9, None)
>>> _ = memo.put(4, 16), memo.put(5, 25)  # 3 is the least recently used
>>> memo.get(3), len(memo)
(None, 2)
>>> clear_caches()
>>> len(memo)
0
"""

import threading
import time
import weakref
from collections import OrderedDict

SETTLED_NS = 2_000_000_000

_MEMOS: "weakref.WeakSet[Memo]" = weakref.WeakSet()


class Memo:
    """A map of at most ``max_entries``, evicting the least recently used.

    ``get_or_build`` builds under the memo's lock, so two threads asking for
    one missing value build it once (a network is built once, not twice).
    """

    def __init__(self, name, *, max_entries):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1; received {max_entries}")
        self.name = name
        self.max_entries = max_entries
        self._entries = OrderedDict()
        self._lock = threading.RLock()
        _MEMOS.add(self)

    def get(self, key):
        """The value remembered for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key, value):
        """Remember ``value`` for ``key``, forgetting the oldest beyond the bound."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def get_or_build(self, key, build, is_current=None):
        """The value for ``key``, built when missing or not ``is_current(value)``."""
        with self._lock:
            value = self.get(key)
            if value is None or (is_current is not None and not is_current(value)):
                value = self.put(key, build())
            return value

    def values(self):
        """The remembered values, oldest first (a copy)."""
        with self._lock:
            return list(self._entries.values())

    def clear(self):
        """Forget everything (memory is freed at the next collection)."""
        with self._lock:
            self._entries.clear()

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"Memo({self.name!r}, {len(self)}/{self.max_entries} entries)"


def clear_caches():
    """Forget everything tlsk remembers in this process.

    Built networks, compiled OpenVINO models, ImageNet heads, digests and
    content keys of files, open feature-cache readers and parsed manifests.
    Nothing on disk changes: the next use builds or reads again. Useful to
    free memory between experiments, or after changing Keras's global
    settings (``keras.config.set_dtype_policy``) that a built network keeps.
    """
    for memo in list(_MEMOS):
        memo.clear()


def settled(identity, now_ns=None):
    """True if the file of ``identity`` has not changed for :data:`SETTLED_NS`.

    ``identity`` is :func:`tlsk._util.files.file_identity`'s (None: never).
    """
    if identity is None:
        return False
    _, mtime_ns, ctime_ns, *_ = identity
    now_ns = time.time_ns() if now_ns is None else now_ns
    return now_ns - max(mtime_ns, ctime_ns) > SETTLED_NS
