"""A Bloom filter per run: which runs cannot hold a key, without reading them.

A lookup of k keys in a namespace of many runs would otherwise read, in every
large run, the block of keys where each key would be: k blocks a run, most of
them for keys that run does not hold (runs never share a key). As in LevelDB
and RocksDB, each run stores a Bloom filter of its keys, ``BITS_PER_KEY`` bits
a key with ``HASHES`` probes, which answers "certainly not here" for all but
about 1% of absent keys (0.8% in theory). A key that is there always passes:
the filter only saves reads, it never decides what is found.

Keys are SHA-256 digests, so their bytes already are uniform hashes: the
probes are ``h1 + i * h2`` (Kirsch and Mitzenmacher, 2006) of two of their
64-bit words. Keys that are not digests only make the filter pass more often.

>>> import hashlib
>>> import numpy as np
>>> def digests(prefix):
...     return np.array(
...         [hashlib.sha256(prefix + bytes([i])).digest() for i in range(100)]
...     )
>>> bits = build(digests(b"a"))
>>> len(bits), bool(may_hold(bits, digests(b"a")).all())
(125, True)
>>> int(may_hold(bits, digests(b"b")).sum()) <= 5
True
"""

from __future__ import annotations

import numpy as np

BITS_PER_KEY = 10
HASHES = 7


def size_bytes(n_keys: int) -> int:
    """Bytes of the filter of ``n_keys`` keys (at least 8)."""
    return max(8, -(-n_keys * BITS_PER_KEY // 8))


def _probes(keys: np.ndarray, n_bits: int) -> np.ndarray:
    """``(len(keys), HASHES)`` bit positions of each key (S32 array)."""
    words = np.frombuffer(keys.tobytes(), dtype="<u8").reshape(len(keys), 4)
    step = words[:, 1] | np.uint64(1)
    rounds = np.arange(HASHES, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 wraps around, as a hash should
        return (words[:, :1] + rounds * step[:, None]) % np.uint64(n_bits)


def build(keys: np.ndarray) -> np.ndarray:
    """The filter of ``keys`` (S32 array) as packed bits, uint8."""
    n_bytes = size_bytes(len(keys))
    bits = np.zeros(8 * n_bytes, dtype=bool)
    if len(keys):
        bits[_probes(keys, 8 * n_bytes).ravel()] = True
    return np.packbits(bits)


def may_hold(bloom: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each key (S32 array), False if the filter's run cannot hold it."""
    if not len(keys):
        return np.zeros(0, dtype=bool)
    positions = _probes(keys, 8 * len(bloom))
    shift = (7 - (positions & np.uint64(7))).astype(np.uint8)  # packbits: MSB first
    return ((bloom[positions >> np.uint64(3)] >> shift) & 1).all(axis=1)
