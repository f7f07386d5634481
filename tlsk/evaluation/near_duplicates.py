"""Near duplicates: copies of one photograph (resized, recompressed, slightly
cropped or recoloured) among the images, and those that leak across the
parts of a split.

:func:`find_near_duplicates` links every two images whose perceptual hashes
(:mod:`tlsk.images.perceptual_hash`) differ in at most ``max_bits`` bits, or
whose feature vectors (L2-normalised, from the extractor given, cached when
it has a ``cache=``) lie within cosine distance ``max_distance``, or whose
files have the same bytes; a group is a connected component of those links.
A *plain* image, whose hash carries too few bits to tell it from others (a
plain colour, a smooth ramp: :func:`tlsk.images.perceptual_hash.plain`), is
linked by its hash only to another plain image whose quarters' mean colours
agree within 6 levels of 255
(:data:`~tlsk.images.perceptual_hash.LAYOUT_TOLERANCE`): plain red is no
copy of plain blue, nor a ramp of its mirror image. Neighbours are found in blocks of
rows and the groups joined as the links are found (a union-find); of the
links, each image keeps only its closest, so memory and what is written
(the ``pairs`` of a group, at most one per member) grow with the number of
images, never with its square. Given the part of each image (``"train"``,
``"val"``, ``"test"``), the groups with members in two parts are the leaks:
a test image whose copy was trained on inflates every test figure.

The default, ``method="phash"``, is what measured better on the benchmark
of benchmarks/README.md (798 images: tiles of 15 real photographs, scenes
and textures, four copies of each: half size, JPEG quality 20, 10 % cropped,
30 % brighter; shifted tiles and 20 plain colours, ramps and flat halves as
negatives): at ``max_bits=8``, precision 0.977 and recall 0.979 of the
pairs in a group, no simple image linked (at 10 bits, imagededup's default,
recall 0.997 but precision 0.943: a dark night sky and a dark blurred leaf
share their layout of light and dark; without the rule for plain images,
precision 0.876 at 8 bits: 18 of the 20 simple images in 153 pairs). The
threshold was chosen on that benchmark; no other set was held out. The
features there came from VGG16 with random weights (ImageNet weights
cannot be downloaded where it ran), whose vectors of any two images are
nearly parallel, so ``method="features"`` could not be measured: even the
best cosine threshold for those images found 0.26 precision at 0.42
recall. Its default ``max_distance=0.1`` (cosine similarity 0.9) is
imagededup's default for its CNN encoder, not a figure of ours.

Nothing is moved or changed.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(6, 16))
>>> X[4] = X[1] + rng.normal(0, 0.01, 16)          # a near copy of 1
>>> X[5] = X[1]                                     # ... and another
>>> found = find_near_duplicates(
...     X, extractor="precomputed", method="features",
...     parts=["train", "train", "train", "test", "test", "train"])
>>> [group.indices for group in found.groups]
[[1, 4, 5]]
>>> found.groups[0].crosses_parts, len(found.leaks())
(True, 1)
>>> [row["file"] for row in found.csv_rows()]
['X[1]', 'X[4]', 'X[5]']
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

__all__ = [
    "CSV_FIELDS",
    "METHODS",
    "MAX_BITS",
    "MAX_DISTANCE",
    "Group",
    "NearDuplicates",
    "Pair",
    "find_near_duplicates",
]

METHODS = ("phash", "features", "both")
# Measured: see the module's docstring and benchmarks/README.md.
MAX_BITS = 8
# imagededup's default for its CNN encoder; not measurable without ImageNet
# weights (see the module's docstring).
MAX_DISTANCE = 0.1
CSV_FIELDS = (
    "group",
    "file",
    "label",
    "part",
    "leak",
    "closest",
    "bits",
    "distance",
    "same_bytes",
)
# Rows of queries per block: the hash block's peak is about 72 bytes per
# query and image (50 MB for 10,000 images), the features' 8.
_HASH_BLOCK = 64
_FEATURE_BLOCK = 512


class Pair(NamedTuple):
    """Two images found nearly the same (``first < second``, indices of X):
    the closest link of one of them."""

    first: int
    second: int
    bits: int | None  # perceptual hash bits that differ (None: not hashed)
    distance: float | None  # cosine distance of the features (None: none)
    same_bytes: bool  # the same content (SHA-256), an exact duplicate


@dataclasses.dataclass
class Group:
    """Images that are copies of one another, directly or through others.

    ``indices`` are positions in X, ascending; ``files`` their paths (None
    for arrays and features); ``labels`` and ``parts`` theirs when given;
    ``pairs`` each member's closest link (:meth:`closest`), once each and
    sorted: at most one per member, not every link found (a group is joined
    through all of them, so its pairs alone need not connect it).
    """

    indices: list
    files: list
    pairs: list
    labels: list | None = None
    parts: list | None = None

    @property
    def crosses_parts(self):
        """True when members lie in two or more parts of a split: a leak."""
        return self.parts is not None and len(set(self.parts)) > 1

    @property
    def crosses_classes(self):
        """True when members carry two or more labels."""
        return self.labels is not None and len(set(self.labels)) > 1

    def closest(self):
        """``{index: the Pair linking it to its nearest member}``.

        Nearest: the same bytes first, then fewest differing bits, then
        smallest cosine distance, then the smallest index; over every link
        found, not only the pairs kept.
        """
        best = {}
        for pair in self.pairs:
            for index in (pair.first, pair.second):
                if index not in best or _order(pair, index) < _order(
                    best[index], index
                ):
                    best[index] = pair
        return best


def _order(pair, index):
    return (
        not pair.same_bytes,
        np.inf if pair.bits is None else pair.bits,
        np.inf if pair.distance is None else pair.distance,
        pair.second if pair.first == index else pair.first,
    )


@dataclasses.dataclass
class NearDuplicates:
    """What :func:`find_near_duplicates` found.

    ``groups`` in the order of their first member; ``images`` the file of
    each image of X (None for arrays and features); ``method``,
    ``max_bits`` and ``max_distance`` as used.
    """

    groups: list
    n_images: int
    method: str
    max_bits: int | None
    max_distance: float | None
    images: list | None = None

    def leaks(self):
        """The groups whose members lie in two or more parts of a split."""
        return [group for group in self.groups if group.crosses_parts]

    def rows(self, root=None):
        """The groups as JSON-ready dicts; file paths relative to ``root``.

        ``{"group", "files", "labels", "parts", "crosses_parts",
        "crosses_classes", "pairs": [{"a", "b", "bits", "distance",
        "same_bytes"}]}``: ``pairs`` each member's closest link (at most one
        per member, :attr:`Group.pairs`); ``labels`` and ``parts`` are None
        when not given.
        """
        rows = []
        for number, group in enumerate(self.groups, 1):
            name = dict(zip(group.indices, self.names(group, root), strict=True))
            rows.append(
                {
                    "group": number,
                    "files": [name[i] for i in group.indices],
                    "labels": group.labels,
                    "parts": group.parts,
                    "crosses_parts": group.crosses_parts,
                    "crosses_classes": group.crosses_classes,
                    "pairs": [
                        {
                            "a": name[pair.first],
                            "b": name[pair.second],
                            "bits": pair.bits,
                            "distance": _rounded(pair.distance),
                            "same_bytes": pair.same_bytes,
                        }
                        for pair in group.pairs
                    ],
                }
            )
        return rows

    def csv_rows(self, root=None):
        """One dict per member of a group, keys :data:`CSV_FIELDS`.

        ``closest`` is the member nearest to it, with their ``bits``,
        ``distance`` and ``same_bytes``; ``leak`` is 1 for a group that
        crosses parts, else 0; ``label`` and ``part`` are empty when not
        given, as are the measures a method did not compute.
        """
        rows = []
        for number, group in enumerate(self.groups, 1):
            name = dict(zip(group.indices, self.names(group, root), strict=True))
            closest = group.closest()
            for position, index in enumerate(group.indices):
                pair = closest[index]
                other = pair.second if pair.first == index else pair.first
                rows.append(
                    {
                        "group": number,
                        "file": name[index],
                        "label": "" if group.labels is None else group.labels[position],
                        "part": "" if group.parts is None else group.parts[position],
                        "leak": int(group.crosses_parts),
                        "closest": name[other],
                        "bits": "" if pair.bits is None else pair.bits,
                        "distance": ""
                        if pair.distance is None
                        else _rounded(pair.distance),
                        "same_bytes": int(pair.same_bytes),
                    }
                )
        return rows

    @staticmethod
    def names(group, root=None):
        """How the members of ``group`` are named: their files, relative to
        ``root`` when given (with ``/``), or ``X[i]`` for arrays and features."""
        from tlsk.images.folders import relative_path

        return [
            f"X[{index}]"
            if file is None
            else (file if root is None else relative_path(file, root))
            for index, file in zip(group.indices, group.files, strict=True)
        ]


def _rounded(distance):
    return None if distance is None else round(float(distance), 6)


def find_near_duplicates(
    X,
    *,
    method="phash",
    max_bits=MAX_BITS,
    max_distance=MAX_DISTANCE,
    extractor=None,
    labels=None,
    parts=None,
    n_jobs=None,
):
    """Group the images of ``X`` that are copies of one another.

    Parameters
    ----------
    X : list of image paths or arrays, or an array of features
        The images, as :class:`~tlsk.ImageFeatureExtractor` takes them; or,
        with ``extractor="precomputed"``, one feature vector per row.
    method : {"phash", "features", "both"}, default="phash"
        What links two images: their perceptual hashes differ in at most
        ``max_bits`` bits (a plain image's, only to a plain image of nearly
        the same colours, see the module's docstring); their features lie
        within cosine distance ``max_distance``; or either. Files with the
        same bytes are always linked.
    max_bits : int, default=8
        Of the 64 bits of the perceptual hashes (``"phash"``, ``"both"``);
        measured, see the module's docstring.
    max_distance : float, default=0.1
        Cosine distance (1 - cosine similarity) of the L2-normalised
        features, in [0, 1] (``"features"``, ``"both"``).
    extractor : transformer, "precomputed" or None, default=None
        Turns ``X`` into features, for ``"features"`` and ``"both"`` (a
        clone of it is fitted on ``X``). None: ``ImageFeatureExtractor()``,
        VGG16 with ImageNet weights. Give one with ``cache=`` to compute
        each image's features only once across runs.
    labels, parts : array-like of str, optional
        The class and the split part (``"train"``, ``"val"``, ``"test"``) of
        each image, kept with the groups: a group with members in two parts
        is a leak (:meth:`NearDuplicates.leaks`).
    n_jobs : int or None, default=None
        Threads that decode and hash images; None: ``min(4, os.cpu_count())``.

    Returns
    -------
    NearDuplicates

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image, ImageEnhance
    >>> rng = np.random.default_rng(0)
    >>> cells = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    >>> a, b = (Image.fromarray(c).resize((96, 96)) for c in cells)
    >>> copies = [a, b, a.resize((48, 48)), ImageEnhance.Brightness(a).enhance(1.3)]
    >>> found = find_near_duplicates(copies, parts=["train", "train", "test", "val"])
    >>> [group.indices for group in found.groups], found.groups[0].crosses_parts
    ([[0, 2, 3]], True)
    """
    method, max_bits, max_distance = _check_parameters(method, max_bits, max_distance)
    precomputed = isinstance(extractor, str) and extractor == "precomputed"
    if precomputed and method != "features":
        raise ValueError(
            "a perceptual hash needs the images' pixels: with "
            f"extractor='precomputed' use method='features'; received {method!r}"
        )
    n = len(X)
    labels = _per_image("labels", labels, n)
    parts = _per_image("parts", parts, n)
    images = None
    if not precomputed:
        images = [
            os.fspath(x) if isinstance(x, (str, os.PathLike)) else None for x in X
        ]
    keys = hashes = layouts = features = None
    if method in ("phash", "both"):
        keys, hashes, layouts = _hashes(X, n_jobs)
    if method in ("features", "both"):
        features = _features(X, extractor, precomputed)
        if keys is None and not precomputed:
            keys = _keys(X, n_jobs)

    linked = _Linked(n, hashes, features, keys)
    if hashes is not None:
        _hash_links(linked, hashes, layouts, max_bits)
    if features is not None:
        _feature_links(linked, features, max_distance)
    if keys is not None:
        _same_content(linked, keys)
    return NearDuplicates(
        groups=linked.groups(images, labels, parts),
        n_images=n,
        method=method,
        max_bits=max_bits if method != "features" else None,
        max_distance=max_distance if method != "phash" else None,
        images=images,
    )


def _check_parameters(method, max_bits, max_distance):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}")
    if (
        isinstance(max_bits, bool)
        or not isinstance(max_bits, Integral)
        or not 0 <= max_bits <= 64
    ):
        raise ValueError(
            f"max_bits must be an integer from 0 to 64; received {max_bits!r}"
        )
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, Real)
        or not 0 <= max_distance <= 1
    ):
        raise ValueError(
            f"max_distance must be a number in [0, 1]; received {max_distance!r}"
        )
    return method, int(max_bits), float(max_distance)


def _per_image(name, values, n):
    if values is None:
        return None
    values = [str(value) for value in np.asarray(values).tolist()]
    if len(values) != n:
        raise ValueError(f"X has {n} images but {name} has {len(values)} values")
    return values


def _hashes(X, n_jobs):
    """``(content keys, hashes (n, 10), colour layouts (n, 12))``; an
    undecodable image raises."""
    from tlsk.images.decode import decode_threads, decoded, image_inputs
    from tlsk.images.perceptual_hash import colour_layout, perceptual_hashes

    def measured(image):
        return perceptual_hashes(image), colour_layout(image)

    inputs = image_inputs(X)
    keys = [None] * len(inputs)
    hashes = np.zeros((len(inputs), 10), dtype=np.uint64)
    layouts = np.zeros((len(inputs), 12), dtype=np.float32)
    with ThreadPoolExecutor(decode_threads(n_jobs)) as pool:
        for index, result in decoded(inputs, range(len(inputs)), measured, pool=pool):
            if isinstance(result, Exception):
                raise result
            keys[index], (hashes[index], layouts[index]) = result
    return keys, hashes, layouts


def _keys(X, n_jobs):
    from tlsk.images.decode import decode_threads, image_inputs
    from tlsk.images.keys import content_keys

    inputs = image_inputs(X, warn_range=False)
    threads = decode_threads(n_jobs)
    with ThreadPoolExecutor(threads) as pool:
        keys, failures = content_keys(inputs, pool, threads)
    if failures:
        raise next(iter(failures.values()))
    return keys


def _features(X, extractor, precomputed):
    """The L2-normalised features of X (a zero vector stays zero)."""
    if precomputed:
        features = np.array(X, dtype=np.float64)
    else:
        from sklearn.base import clone

        if extractor is None:
            from tlsk.features.extractor import ImageFeatureExtractor

            extractor = ImageFeatureExtractor()
        features = np.asarray(clone(extractor).fit_transform(X), dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(
            "expected one feature vector per row, a 2-D array; received shape "
            f"{features.shape}"
        )
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise ValueError(
            "features must be finite; rows "
            f"{np.flatnonzero(~finite)[:10].tolist()} are not (images that "
            "could not be decoded?)"
        )
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)


def _hash_links(linked, hashes, layouts, max_bits):
    """Link each image to those whose hashes differ in at most ``max_bits``
    bits; a plain image (:func:`~tlsk.images.perceptual_hash.plain`) only to
    another plain one whose colour layout is within ``LAYOUT_TOLERANCE``."""
    from tlsk.images.perceptual_hash import LAYOUT_TOLERANCE, hash_distances, plain

    is_plain = plain(hashes)
    for start in range(0, len(hashes), _HASH_BLOCK):
        close = hash_distances(hashes[start : start + _HASH_BLOCK], hashes)
        rows, others = np.nonzero(close <= max_bits)
        members = rows + start
        keep = members != others
        either = keep & (is_plain[members] | is_plain[others])
        if either.any():
            alike = is_plain[members[either]] & is_plain[others[either]]
            apart = np.abs(layouts[members[either]] - layouts[others[either]])
            keep[either] = alike & (apart.max(axis=1) <= LAYOUT_TOLERANCE)
        linked.add(members[keep], others[keep], bits=close[rows[keep], others[keep]])


def _feature_links(linked, features, max_distance):
    """Link each image to those whose features lie within ``max_distance``."""
    for start in range(0, len(features), _FEATURE_BLOCK):
        distances = 1.0 - features[start : start + _FEATURE_BLOCK] @ features.T
        np.maximum(distances, 0.0, out=distances)
        rows, others = np.nonzero(distances <= max_distance)
        members = rows + start
        keep = members != others
        linked.add(
            members[keep], others[keep], distances=distances[rows[keep], others[keep]]
        )


def _same_content(linked, keys):
    """Link the files with the same bytes to the first of them, both ways."""
    first_of, members, others = {}, [], []
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key in first_of:
            members += [first_of[key], index]
            others += [index, first_of[key]]
        else:
            first_of[key] = index
    linked.add(np.array(members, dtype=np.int64), np.array(others, dtype=np.int64))


class _Linked:
    """The groups, joined as links are found, and each image's closest link.

    Memory grows with the number of images, never with the number of links:
    ``component`` names each image's group (a union-find kept flat: every
    image points at its group's name); ``other`` is the image it is most
    nearly a copy of (``n``: none yet), ``order`` the measures of that link
    (not the same bytes, bits, distance; inf: not measured), as
    :meth:`Group.closest` orders them.
    """

    _CHUNK = 4096  # links whose feature distances are computed at once

    def __init__(self, n, hashes, features, keys):
        self.n = n
        self.hashes, self.features = hashes, features
        self.codes = None
        if keys is not None:
            code_of = {}
            self.codes = np.array(
                [
                    -1 - index if key is None else code_of.setdefault(key, index)
                    for index, key in enumerate(keys)
                ],
                dtype=np.int64,
            )
        self.component = np.arange(n)
        self.other = np.full(n, n, dtype=np.int64)
        self.order = np.full((n, 3), np.inf)

    def add(self, members, others, bits=None, distances=None):
        """Link ``members[k]`` with ``others[k]``; the link is a candidate for
        the closest of ``members[k]`` (give each link both ways for both)."""
        if len(members) == 0:
            return
        self._join(members, others)
        order = np.empty((len(members), 3))
        order[:, 0] = 1.0
        if self.codes is not None:
            order[:, 0] = self.codes[members] != self.codes[others]
        order[:, 1] = np.inf if self.hashes is None else bits
        if self.hashes is not None and bits is None:
            order[:, 1] = _pair_bits(self.hashes, members, others)
        order[:, 2] = np.inf if self.features is None else distances
        if self.features is not None and distances is None:
            order[:, 2] = self._distances(members, others)
        # Each member's best candidate: fewest (not same, bits, distance),
        # then the smallest index, so blocks change nothing.
        ranked = np.lexsort((others, order[:, 2], order[:, 1], order[:, 0], members))
        members, others, order = members[ranked], others[ranked], order[ranked]
        first = np.flatnonzero(np.r_[True, members[1:] != members[:-1]])
        members, others, order = members[first], others[first], order[first]
        better = _before(
            np.column_stack([order, others]),
            np.column_stack([self.order[members], self.other[members]]),
        )
        self.other[members[better]] = others[better]
        self.order[members[better]] = order[better]

    def _join(self, members, others):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        a, b = self.component[members], self.component[others]
        apart = a != b
        if not apart.any():
            return
        graph = coo_matrix(
            (np.ones(int(apart.sum())), (a[apart], b[apart])), shape=(self.n, self.n)
        )
        _, named = connected_components(graph, directed=False)
        self.component = named[self.component]

    def _distances(self, members, others):
        distances = np.empty(len(members))
        for start in range(0, len(members), self._CHUNK):
            chunk = slice(start, start + self._CHUNK)
            products = np.einsum(
                "ij,ij->i",
                self.features[members[chunk]],
                self.features[others[chunk]],
            )
            distances[chunk] = np.maximum(0.0, 1.0 - products)
        return distances

    def groups(self, images, labels, parts):
        """The groups of two or more, in the order of their first member."""
        linked = np.flatnonzero(self.other < self.n)
        members = {}
        for index in linked.tolist():
            members.setdefault(int(self.component[index]), []).append(index)
        groups = []
        for indices in sorted(members.values(), key=lambda group: group[0]):
            pairs = {}
            for index in indices:
                other = int(self.other[index])
                first, second = min(index, other), max(index, other)
                if (first, second) not in pairs:
                    same, bits, distance = self.order[index].tolist()
                    pairs[first, second] = Pair(
                        first=first,
                        second=second,
                        bits=None if self.hashes is None else int(bits),
                        distance=None if self.features is None else float(distance),
                        same_bytes=not same,
                    )
            groups.append(
                Group(
                    indices=indices,
                    files=[None if images is None else images[i] for i in indices],
                    pairs=sorted(pairs.values()),
                    labels=None if labels is None else [labels[i] for i in indices],
                    parts=None if parts is None else [parts[i] for i in indices],
                )
            )
        return groups


def _before(a, b):
    """Row by row: is ``a`` lexicographically before ``b``?"""
    before = np.zeros(len(a), dtype=bool)
    tied = np.ones(len(a), dtype=bool)
    for column in range(a.shape[1]):
        before |= tied & (a[:, column] < b[:, column])
        tied &= a[:, column] == b[:, column]
    return before


def _pair_bits(hashes, members, others):
    """:func:`~tlsk.images.perceptual_hash.hash_distances` of each pair."""
    mine, theirs = hashes[members], hashes[others]
    whole = np.bitwise_count(mine[:, 0] ^ theirs[:, 0])
    crops = np.bitwise_count(mine[:, None, 0] ^ theirs[:, 1:]).min(axis=1)
    own = np.bitwise_count(mine[:, 1:] ^ theirs[:, None, 0]).min(axis=1)
    return np.minimum(whole, np.minimum(crops, own))
