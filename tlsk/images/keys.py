"""Content keys: the SHA-256 digest that names an image in the feature cache.

A file's key is ``sha256sum`` of its bytes; an array's covers its dtype and
shape too. Both memos live here: the process's memo of file keys (by file
identity, once the file has settled) and a cache's persistent one
(:class:`tlsk.cache.FileKeyMemo`, passed in as ``memo``), so that a folder
transformed again, in this process or the next, is not read again.
"""

import hashlib
import os

import numpy as np

from tlsk._util.files import file_identity
from tlsk._util.memo import Memo, settled
from tlsk.images import files
from tlsk.images.errors import ImageError
from tlsk.images.files import CHUNK_BYTES, open_regular_file, read_chunk, too_large

__all__ = ["content_keys", "file_key", "array_key", "remember_key", "remembered_key"]

# Contents this large on average are hashed in threads (see _hashed).
_THREADED_HASH_BYTES = 64 * 1024
_SIZE_SAMPLE = 16
_ARRAY_KEY_PREFIX = b"tlsk-array\0"


# Content keys of files, remembered by what stat says of them, so that the
# fifty transforms of one folder in a GridSearchCV hash each file once; only
# files that have settled (tlsk._util.memo.settled).
_KEY_MEMO = Memo("content keys of files", max_entries=1 << 18)  # about 70 MB


def remember_key(identity, key):
    """Remember ``key`` as the content key of the file whose identity is ``identity``.

    For keys known from elsewhere (a cache's persistent memo of keys it
    computed before); ``identity`` is :func:`tlsk._util.files.file_identity`'s.
    """
    if identity is not None:
        _KEY_MEMO.put(identity, key)


def remembered_key(identity):
    """The content key remembered for ``identity``, or None."""
    return _KEY_MEMO.get(identity)


def file_key(label, path):
    """SHA-256 digest of a file's bytes, remembered per (path, inode, size, times)."""
    identity = file_identity(path)
    key = _KEY_MEMO.get(identity)
    if key is not None:
        return key
    with open_regular_file(path, label) as file:
        key, n_bytes = _hash_stream(file, label)
    if settled(identity) and n_bytes == identity[0]:
        remember_key(identity, key)
    return key


def _hash_stream(file, label):
    """``(SHA-256 digest, bytes read)`` of an open file, in chunks: flat memory."""
    digest = hashlib.sha256()
    n_bytes = 0
    while True:
        chunk = read_chunk(file, label, CHUNK_BYTES)
        n_bytes += len(chunk)
        if n_bytes > files.MAX_FILE_BYTES:  # read at each call
            raise too_large(label, f"at least {n_bytes}")
        digest.update(chunk)
        if len(chunk) < CHUNK_BYTES:  # a buffered read is short only at the end
            return digest.digest(), n_bytes


def array_key(array):
    digest = hashlib.sha256(_ARRAY_KEY_PREFIX)
    digest.update(array.dtype.str.encode("ascii"))
    digest.update(repr(tuple(int(n) for n in array.shape)).encode("ascii"))
    digest.update(np.ascontiguousarray(array).data)
    return digest.digest()


def content_keys(inputs, pool, n_threads, memo=None):
    """``(keys, failures)``: the SHA-256 key of each input, None where unreadable.

    ``inputs`` are :class:`~tlsk.images.decode.ImageInput`; ``failures`` maps
    the index of each unreadable input to its
    :class:`~tlsk.images.errors.ImageError`. Large contents are hashed on
    ``pool`` (``n_threads`` threads). ``memo``: a persistent memo of file
    keys (:class:`tlsk.cache.FileKeyMemo`) or None. Files it knows by
    identity are not read; the keys of files hashed now, once settled, are
    added to it. ``TLSK_FILE_KEY_MEMO=0`` in the environment turns it off.
    """
    if memo is None or os.environ.get("TLSK_FILE_KEY_MEMO", "1") == "0":
        return _hashed(inputs, pool, n_threads)
    # One stat per file: its identity serves the memo and content_keys both.
    identities = [getattr(item, "identity", lambda: None)() for item in inputs]
    unknown = [i for i in identities if i is not None and remembered_key(i) is None]
    unknown = list(dict.fromkeys(unknown))
    from_memo = set()
    for identity, key in zip(unknown, memo.get(unknown), strict=True):
        if key is not None:
            remember_key(identity, key)
            from_memo.add(identity)
    known = [
        remembered_key(identity) if identity is not None else item.known_key()
        for item, identity in zip(inputs, identities, strict=True)
    ]
    keys, failures = _hashed(inputs, pool, n_threads, known)
    new = [
        ident
        for ident in unknown
        if ident not in from_memo and remembered_key(ident) is not None
    ]
    if new:
        memo.put(new, [remembered_key(ident) for ident in new])
    return keys, failures


def _hashed(inputs, pool, n_threads, known=None):
    """:func:`content_keys` without a persistent memo.

    ``known``: each input's key if known already (else None), when the caller
    has looked them up (else each input's ``known_key()`` is asked).

    hashlib releases the GIL, so threads help for large contents. For small
    files (typical JPEGs) the per-file Python work dominates, and threads
    fighting over the GIL are slower than one (2,000 files of 16 kB: 23,000
    keys/s in one thread, 14,000 in two), so those are hashed here. A few
    large tasks rather than one per image: per-task overhead would dominate.
    """

    def key_or_error(item):
        try:
            return item.content_key()
        except ImageError as err:
            return err

    # Files hashed before in this process and unchanged since need no thread.
    results = list(known) if known is not None else [i.known_key() for i in inputs]
    unknown = [i for i, key in enumerate(results) if key is None]
    sample = [inputs[i].size_hint() for i in unknown[:_SIZE_SAMPLE]]
    if not sample or sum(sample) < _THREADED_HASH_BYTES * len(sample):
        for i in unknown:
            results[i] = key_or_error(inputs[i])
        unknown = []
    step = max(1, -(-len(unknown) // (4 * n_threads)))
    chunks = [unknown[start : start + step] for start in range(0, len(unknown), step)]
    keyed = pool.map(lambda chunk: [key_or_error(inputs[i]) for i in chunk], chunks)
    for chunk, chunk_results in zip(chunks, keyed, strict=True):
        for index, result in zip(chunk, chunk_results, strict=True):
            results[index] = result
    failures = {i: r for i, r in enumerate(results) if isinstance(r, ImageError)}
    keys = [None if i in failures else r for i, r in enumerate(results)]
    return keys, failures
