"""Keys, fingerprints and namespace ids: checking and converting them.

A key is a 32-byte SHA-256 digest. In memory, many keys are a numpy array of
dtype ``S32`` (one fixed-width item per key): numpy sorts and searches those
by their bytes, and, since every key is exactly 32 bytes, two keys compare
equal only if all their bytes do (trailing NUL bytes included).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

KEY_BYTES = 32
KEY_DTYPE = np.dtype(f"S{KEY_BYTES}")
MAX_DIM = 1 << 20


def canonical_json(fingerprint: Mapping) -> str:
    if not isinstance(fingerprint, Mapping):
        raise TypeError(
            "fingerprint must be a JSON-serialisable dict; "
            f"received {type(fingerprint).__name__}"
        )
    try:
        return json.dumps(
            dict(fingerprint), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fingerprint must be JSON-serialisable; {exc}") from None


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def namespace_id(fingerprint: Mapping) -> str:
    """Return the namespace id of a fingerprint.

    Parameters
    ----------
    fingerprint : Mapping
        JSON-serialisable description of everything that changes the vectors.

    Returns
    -------
    str
        SHA-256 hex digest of ``json.dumps(fingerprint, sort_keys=True,
        separators=(",", ":"))``.

    Examples
    --------
    >>> from tlsk.cache import namespace_id
    >>> namespace_id({"pooling": "avg"})[:12]
    'febb366c5b14'
    """
    return sha256_hex(canonical_json(fingerprint))


def check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int; received {dim!r}")
    if not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be between 1 and {MAX_DIM}; received {dim}")
    return int(dim)


def check_keys(keys: Iterable) -> np.ndarray:
    """The keys as an ``S32`` array, in order; ValueError naming a bad one."""
    if isinstance(keys, (str, bytes, bytearray)):
        raise TypeError(
            "keys must be a sequence of 32-byte digests, not a single "
            f"{type(keys).__name__}"
        )
    if isinstance(keys, np.ndarray) and keys.dtype == KEY_DTYPE:
        return keys.ravel()
    keys = list(keys)
    # The common case, checked at C speed: a list of 32-byte bytes objects.
    if set(map(type, keys)) <= {bytes} and set(map(len, keys)) <= {KEY_BYTES}:
        return np.frombuffer(b"".join(keys), dtype=KEY_DTYPE)
    out = []
    for i, key in enumerate(keys):
        original = key
        try:
            key = bytes(memoryview(key)) if not isinstance(key, str) else None
        except TypeError:
            key = None
        if key is None or len(key) != KEY_BYTES:
            raise ValueError(
                f"keys must be {KEY_BYTES}-byte SHA-256 digests (bytes); "
                f"received {original!r} at position {i}"
            )
        out.append(key)
    return np.frombuffer(b"".join(out), dtype=KEY_DTYPE)


def as_rows(keys: np.ndarray) -> np.ndarray:
    """``S32`` keys as the ``(n, 32) uint8`` rows stored on disk."""
    return np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), KEY_BYTES)


def from_rows(rows: np.ndarray) -> np.ndarray:
    """Stored ``(n, 32) uint8`` rows as ``S32`` keys."""
    return np.ascontiguousarray(rows).view(KEY_DTYPE).ravel()


def first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique sorted keys, row of each one's first occurrence)``."""
    unique, first = np.unique(keys, return_index=True)
    return unique, first
