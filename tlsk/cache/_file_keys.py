"""A persistent memo of file identities to content keys, kept in the cache.

A warm transform in a new process would otherwise read and hash every file
again to learn its key (SHA-256 of its bytes) before it can look its vector
up. The memo remembers, for each file hashed before, its identity (what
``stat`` says: size, modification and change times in nanoseconds, device,
inode and absolute path; :func:`tlsk._util.files.file_identity`) and its key, so
that a file whose identity is unchanged is not read at all.

Why this is safe: the change time (ctime) is set by the kernel, to the
current time, whenever a file's bytes or metadata change, and nobody can set
it back (``touch -d`` and ``cp -p`` set the modification time, not the change
time); a file replaced by another gets a new ctime too, and usually a new
inode. Three cases could still fool it, and each is closed:

* a file changed twice within the file system's timestamp resolution keeps
  one ctime for two contents: only files whose times were at least 2 seconds
  old when they were hashed are remembered (git's "racily clean" rule);
* file systems without stable inode numbers (FUSE, vfat, CIFS report 0 or
  reuse them): an identity without an inode is never remembered, and the
  path is part of every identity;
* another machine sharing the cache sees other device numbers: its identities
  simply never match (a miss, never a wrong key).

What remains is what git's index accepts too: a clock stepped back by more
than the time since the file was hashed, or someone rewriting inode
timestamps on the raw device. Where that is a concern, set the environment
variable ``TLSK_FILE_KEY_MEMO=0``: every new process then hashes every file.

The memo is one namespace of the cache (its fingerprint says what it holds),
so it shares the cache's crash safety, checksums, merges and O(k log N)
lookups. A content key (32 bytes) is stored as 16 little-endian uint16
numbers in float32, which holds each exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

MEMO_FINGERPRINT = {
    "tlsk": "file-content-keys",
    "version": 1,
    "key": "sha256 of 'size:mtime_ns:ctime_ns:device:inode:absolute path'",
    "value": "sha256 of the file's bytes, as 16 little-endian uint16 in float32",
}
MEMO_DIM = 16


def identity_digest(identity: tuple) -> bytes:
    size, mtime, ctime, device, inode, path = identity
    text = f"{size}:{mtime}:{ctime}:{device}:{inode}:{path}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _encode(keys: Sequence[bytes]) -> np.ndarray:
    words = np.frombuffer(b"".join(keys), dtype="<u2").reshape(len(keys), MEMO_DIM)
    return words.astype(np.float32)


def _decode(values: np.ndarray) -> list[bytes]:
    words = values.astype("<u2")
    return [row.tobytes() for row in words]


class FileKeyMemo:
    """The content keys a cache remembers for file identities.

    Parameters
    ----------
    cache : FeatureCache
    """

    def __init__(self, cache):
        self._cache = cache

    def get(self, identities: Sequence[tuple | None]) -> list[bytes | None]:
        """The remembered key of each identity (None: unknown, or no identity)."""
        known = [i for i, identity in enumerate(identities) if identity is not None]
        out: list[bytes | None] = [None] * len(identities)
        if not known:
            return out
        digests = [identity_digest(identities[i]) for i in known]
        found, values = self._cache.lookup(MEMO_FINGERPRINT, digests, MEMO_DIM)
        hits = np.flatnonzero(found)
        for i, key in zip(hits.tolist(), _decode(values[hits]), strict=True):
            out[known[i]] = key
        return out

    def put(self, identities: Sequence[tuple], keys: Sequence[bytes]) -> None:
        """Remember ``keys[i]`` for ``identities[i]`` (one run, one publish)."""
        if not identities:
            return
        digests = [identity_digest(identity) for identity in identities]
        with self._cache.writer(MEMO_FINGERPRINT, MEMO_DIM) as writer:
            with writer.claim():
                writer.append(digests, _encode(keys))
