"""Image folders: a folder per class -> (paths, labels), their checks and splits.

:func:`load_image_folder` lists a tree, :func:`find_bad_images` finds the files
that cannot be decoded, :func:`check_image_folder` reports everything wrong with
a tree, and :func:`split_image_folder` writes a stratified train / validation /
test split of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tlsk._util.files import resolved, safe_join, write_atomically
from tlsk._util.output_folders import (
    FOLDER_MARKER,
    check_only_written,
    read_folder_marker,
    write_folder_marker,
)
from tlsk.images.decode import FileInput, ImageError, decode_threads
from tlsk.images.files import open_regular_file

__all__ = [
    "SPLIT_MANIFEST",
    "SPLIT_PARTS",
    "check_image_folder",
    "find_bad_images",
    "load_image_folder",
    "split_image_folder",
]

_ON_ERROR = ("warn", "raise", "ignore")
CHECK_FORMAT = "tlsk-check"
SPLIT_FORMAT = "tlsk-split"
SPLIT_MANIFEST = "split.json"
SPLIT_PARTS = ("train", "val", "test")
# What the marker of a split being written says it is (tlsk._util.files).
_SPLIT_KIND = "split"


def load_image_folder(root, *, on_error="warn", check=True, n_jobs=None):
    """List the images of a folder-per-class tree.

    ``root/<class>/.../<file>``: every sub-folder of ``root`` is a class, and
    every file below it (at any depth) an image of that class. Hidden files
    and folders (``.DS_Store``, ``.git``) are ignored; symbolic links to
    folders are not followed, so link loops cannot trap the walk. The result
    is sorted by class, then path, so it is the same on every machine.

    Parameters
    ----------
    root : str or path
        The folder holding one sub-folder per class.
    on_error : {"warn", "raise", "ignore"}, default="warn"
        What to do with files that cannot be decoded (checked when ``check``):
        skip them with one warning naming each file and reason, raise the
        :class:`~tlsk.images.decode.ImageError` of the first one, or skip silently.
    check : bool, default=True
        Decode every file to find the bad ones (threads; about as long as
        one pass of decoding). ``False`` lists files without opening them.
    n_jobs : int or None, default=None
        Decoding threads; ``None`` means ``min(4, os.cpu_count())``.

    Returns
    -------
    paths : list of str
    labels : ndarray of str
        The class (folder name) of each path.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for label in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, label))
    ...     Image.new("RGB", (8, 8)).save(os.path.join(root, label, "a.png"))
    >>> paths, labels = load_image_folder(root)
    >>> labels.tolist()
    ['cat', 'dog']
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}; received {on_error!r}")
    _, paths, labels, _ = _list_folder(root)
    if check:
        bad = {err.path: err for err in find_bad_images(paths, n_jobs=n_jobs)}
        if bad:
            if on_error == "raise":
                raise next(iter(bad.values()))
            if on_error == "warn":
                warnings.warn(
                    f"skipped {len(bad)} of {len(paths)} files that cannot be "
                    "decoded: " + "; ".join(str(err) for err in bad.values()),
                    UserWarning,
                    stacklevel=2,
                )
            kept = [i for i, path in enumerate(paths) if path not in bad]
            paths = [paths[i] for i in kept]
            labels = [labels[i] for i in kept]
    return paths, np.asarray(labels, dtype=str)


def find_bad_images(paths, *, n_jobs=None):
    """Decode every file; return the :class:`ImageError` of each that fails, in order.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "empty.jpg")
    >>> open(path, "wb").close()
    >>> [err.reason for err in find_bad_images([path])]
    ['file is empty (0 bytes)']
    """

    return [err for _, err in _scan(paths, n_jobs) if err is not None]


def check_image_folder(root, *, n_jobs=None):
    """Report what is wrong with a folder-per-class tree, without changing it.

    Every file is decoded (as :func:`find_bad_images` does) and hashed
    (SHA-256 of its bytes, as :meth:`tlsk.images.decode.ImageInput.content_key`), to
    find the files that cannot be decoded and the same image in two classes.
    The tree is listed as by :func:`load_image_folder`.

    Parameters
    ----------
    root : str or path
        The folder holding one sub-folder per class.
    n_jobs : int or None, default=None
        Decoding threads; ``None`` means ``min(4, os.cpu_count())``.

    Returns
    -------
    report : dict
        JSON-ready; paths are relative to ``root``, with ``/`` separators,
        and every list is sorted:

        - ``"format"``: ``"tlsk-check"``; ``"version"``: ``1``.
        - ``"root"``: the absolute path of ``root``.
        - ``"ok"``: ``True`` when there are no bad files, no duplicates and no
          empty classes.
        - ``"classes"``: ``{class: number of images that decode}``.
        - ``"n_images"``, ``"n_bad"``: totals of good and bad files.
        - ``"bad_files"``: ``[{"path", "class", "reason"}]``, one per file that
          cannot be decoded (empty, truncated, not an image, ...).
        - ``"duplicates"``: ``[{"sha256", "classes", "paths"}]``, one per
          content found in two or more classes (identical files in a single
          class are not listed).
        - ``"empty_classes"``: classes with no image that decodes.
        - ``"ignored"``: names in ``root`` that are neither hidden nor class
          folders (loose files, symbolic links, which are never followed).

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for label in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, label))
    ...     Image.new("RGB", (8, 8)).save(os.path.join(root, label, "a.png"))
    >>> open(os.path.join(root, "dog", "b.jpg"), "wb").close()
    >>> report = check_image_folder(root)
    >>> report["ok"], report["classes"]
    (False, {'cat': 1, 'dog': 1})
    >>> report["bad_files"]
    [{'path': 'dog/b.jpg', 'class': 'dog', 'reason': 'file is empty (0 bytes)'}]
    >>> report["duplicates"][0]["paths"]
    ['cat/a.png', 'dog/a.png']
    """
    report, _ = _survey(root, n_jobs)
    return report


def split_image_folder(
    root,
    out,
    *,
    val=0.1,
    test=0.1,
    seed=0,
    link=False,
    force=False,
    n_jobs=None,
    near_duplicates=None,
):
    """Write a stratified train / validation / test split of a folder-per-class tree.

    ``root/<class>/<file>`` becomes ``out/train/<class>/<file>``,
    ``out/val/<class>/<file>`` and ``out/test/<class>/<file>`` (files in nested
    folders keep their sub-path). Files that cannot be decoded are left out;
    the same image in two classes is kept in both. Both are listed in the
    manifest, ``out/split.json``, which is written last: a split without it is
    incomplete.

    Each class is split on its own, so every part holds every class: a class
    of ``n`` distinct images gives ``round(n * val)`` of them to validation
    and ``round(n * test)`` to test, but at least one to each part whose
    fraction is not 0 and at least one to train. Identical files (the same
    content) of a class always go to the same part, so no test image is also
    a training image. A class too small for that (fewer than 3 distinct
    images for a three-way split) is an error naming it: a class absent
    from validation or test would make their scores silently wrong. The
    order within a class comes from ``seed`` and the class name, so a split is
    the same on every machine, and adding a class does not reshuffle the
    others. Near duplicates (``near_duplicates``: copies resized,
    recompressed or cropped, which have other bytes) travel together the same
    way; the members of a group in two classes are kept in both, each class's
    members together.

    Nothing is written outside ``out``: every path is checked with
    :func:`tlsk._util.files.safe_join`, files are created exclusively (an
    existing name, even a dangling symbolic link, is never written through),
    and symbolic links in ``root`` are read, never recreated (class folders
    that are links are not classes; see :func:`load_image_folder`).

    Parameters
    ----------
    root : str or path
        The folder holding one sub-folder per class.
    out : str or path
        The folder to write; created if missing. Must not lie inside ``root``
        nor contain it.
    val, test : float, default=0.1
        Fractions of each class for validation and test, each in [0, 1), with
        ``val + test < 1``. 0 leaves the part empty.
    seed : int, default=0
        Non-negative; the same seed gives the same split.
    link : bool, default=False
        Hard-link the files instead of copying them, or, where a hard link is
        impossible (another file system, no permission), make a symbolic link
        to the file's absolute real path. A hard link *is* the original file:
        editing one edits the other.
    force : bool, default=False
        If ``out`` is not empty, replace its ``train/``, ``val/``, ``test/``
        and ``split.json`` (links among them are removed, never followed).
        Anything else in ``out`` is kept. Without it, a non-empty ``out``
        raises :class:`FileExistsError`.
    n_jobs : int or None, default=None
        Decoding threads; ``None`` means ``min(4, os.cpu_count())``.
    near_duplicates : iterable of iterables of paths, optional
        Groups of files of ``root`` (paths as listed by
        :func:`load_image_folder`, or relative to ``root``) whose members of
        one class go to the same part: the ``files`` of the groups of
        :func:`tlsk.find_near_duplicates`. A path that is not a file of
        ``root`` is an error naming it.

    Returns
    -------
    manifest : dict
        What ``split.json`` holds; paths are relative (to ``out`` for
        ``"path"``, to ``root`` for ``"source"``), with ``/`` separators:

        - ``"format"``: ``"tlsk-split"``; ``"version"``: ``1``;
          ``"tlsk_version"``.
        - ``"root"``: the absolute path of ``root``; ``"val"``, ``"test"``,
          ``"seed"``, ``"link"``: the arguments.
        - ``"classes"``: the class names.
        - ``"counts"``: ``{part: {class: number of files}}``.
        - ``"parts"``: ``{part: [{"path", "source", "class", "sha256"}]}``,
          sorted by path, for the parts ``"train"``, ``"val"`` and ``"test"``.
        - ``"written_as"``: ``{"copy": n, "hardlink": n, "symlink": n}``.
        - ``"skipped"``, ``"duplicates"``: as ``"bad_files"`` and
          ``"duplicates"`` of :func:`check_image_folder`.
        - ``"near_duplicates"``: the groups given (each a sorted list of
          paths relative to ``root``, files that decode only), or None.

    Raises
    ------
    ValueError
        For bad fractions or seed, ``out`` inside ``root`` (or ``root`` inside
        ``out``), a class too small to split, or a tree with no class folders.
    FileExistsError
        If ``out`` is not empty and ``force`` is false.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> root, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> for label in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, label))
    ...     for i in range(10):
    ...         colour = (i, 99, 0) if label == "cat" else (i, 0, 99)
    ...         path = os.path.join(root, label, f"{i}.png")
    ...         Image.new("RGB", (8, 8), colour).save(path)
    >>> manifest = split_image_folder(root, out, val=0.2, test=0.2, seed=0)
    >>> manifest["counts"]["train"], manifest["counts"]["test"]
    ({'cat': 6, 'dog': 6}, {'cat': 2, 'dog': 2})
    >>> sorted(os.listdir(out))
    ['split.json', 'test', 'train', 'val']
    """
    val = _check_fraction("val", val)
    test = _check_fraction("test", test)
    if val + test >= 1:
        raise ValueError(
            "val + test must be less than 1 to leave images for training; "
            f"received val={val!r}, test={test!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; received {seed!r}")
    # ``out`` as the kernel resolves it: what is checked is what is written.
    root, out = os.fsdecode(os.fspath(root)), resolved(out)
    _check_out(root, out, force)

    report, good = _survey(root, n_jobs)
    # Identical files, and near duplicates when given, travel together: a
    # copy in train and another in test would leak the test image into
    # training.
    together, used = _together(root, good, near_duplicates)
    by_class = defaultdict(dict)
    for item in good:
        by_class[item["class"]].setdefault(together(item), []).append(item)
    sizes, too_small = {}, []
    for label in report["classes"]:
        sizes[label] = _part_sizes(len(by_class[label]), val, test)
        if sizes[label] is None:
            too_small.append(f"{label!r} ({len(by_class[label])})")
    if too_small:
        needed = 1 + (val > 0) + (test > 0)
        raise ValueError(
            f"classes too small to split with val={val!r}, test={test!r}: each "
            f"needs at least {needed} distinct images that decode; received "
            + ", ".join(too_small)
            + ". Add images, remove the class, or set val or test to 0"
        )

    parts = {part: [] for part in SPLIT_PARTS}
    for label, groups in sorted(by_class.items()):
        groups = list(groups.values())
        rng = np.random.default_rng([int(seed), _name_seed(label)])
        order = rng.permutation(len(groups))
        n_train, n_val, _ = sizes[label]
        for rank, index in enumerate(order):
            part = (
                "train"
                if rank < n_train
                else "val"
                if rank < n_train + n_val
                else "test"
            )
            parts[part].extend(groups[index])

    os.makedirs(out, exist_ok=True)
    # Marks the parts as tlsk's until split.json lists them.
    write_folder_marker(out, _SPLIT_KIND, files=SPLIT_PARTS)
    _clear_out(out)
    manifest = _write_split(out, parts, link)
    from tlsk._version import __version__

    manifest.update(
        {
            "format": SPLIT_FORMAT,
            "version": 1,
            "tlsk_version": __version__,
            "root": report["root"],
            "val": val,
            "test": test,
            "seed": int(seed),
            "link": bool(link),
            "classes": list(report["classes"]),
            "skipped": report["bad_files"],
            "duplicates": report["duplicates"],
            "near_duplicates": used,
        }
    )

    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomically(
        os.path.join(out, SPLIT_MANIFEST), lambda file: file.write(text.encode())
    )
    os.unlink(os.path.join(out, FOLDER_MARKER))  # split.json says it all now
    return manifest


def _together(root, good, near_duplicates):
    """``(key of an item's travelling group, the groups used or None)``.

    Items of one class with the same key go to the same part: the same
    content, or members of one group of ``near_duplicates`` (joined through
    any member they share, as connected components).
    """
    if near_duplicates is None:
        return (lambda item: item["sha256"]), None
    by_source = {item["source"]: item for item in good}
    parent = {}

    def find(key):
        while key in parent:
            key = parent[key]
        return key

    used = []
    for group in near_duplicates:
        members = []
        for path in group:
            source = _source_in(root, path, by_source)
            if source is None:
                raise ValueError(
                    f"near_duplicates names {path!r}, which is not a file of {root!r}"
                )
            if source in by_source:  # else a file that does not decode: skipped
                members.append(by_source[source])
        if len(members) < 2:
            continue
        used.append(sorted(item["source"] for item in members))
        # Joined within each class: a group in two classes is kept in both.
        by_class = defaultdict(list)
        for item in members:
            by_class[item["class"]].append(item)
        for items in by_class.values():
            first = find((items[0]["class"], items[0]["sha256"]))
            for item in items[1:]:
                other = find((item["class"], item["sha256"]))
                if other != first:
                    parent[other] = first
    used.sort()
    return (lambda item: find((item["class"], item["sha256"]))), used


def _source_in(root, path, by_source):
    """``path`` relative to ``root`` (as given, or already relative to it), or
    None if it names no file of ``root``."""
    path = os.fsdecode(os.fspath(path))
    candidates = [relative_path(path, root)]
    if not os.path.isabs(path):
        candidates.append(os.path.normpath(path).replace(os.sep, "/"))
    for source in candidates:
        if source in by_source:
            return source
    for source in candidates:
        inside = source != ".." and not source.startswith("../")
        if inside and os.path.isfile(os.path.join(root, *source.split("/"))):
            return source
    return None


def _list_folder(root):
    """``(classes, paths, labels, ignored)`` of a folder-per-class tree.

    ``ignored``: names in ``root`` that are neither hidden nor class folders
    (files, symbolic links), which a user may have expected to be read.
    """
    # str throughout: bytes paths (names that are not UTF-8) become str with
    # surrogate escapes, which open() and os.scandir() take back unchanged.
    root = os.fsdecode(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"root must be an existing folder; received {root!r}")
    classes, ignored = [], []
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if entry.name.startswith("."):
            continue
        # Not followed: a class folder linking elsewhere could loop or leak.
        if entry.is_dir(follow_symlinks=False):
            classes.append(entry.name)
        else:
            ignored.append(entry.name)
    if not classes:
        raise ValueError(
            f"no class folders in {root!r}: expected one sub-folder per class "
            "(root/<class>/<image files>)"
        )
    paths, labels = [], []
    for label in classes:
        for path in files_below(os.path.join(root, label)):
            paths.append(path)
            labels.append(label)
    return classes, paths, labels, ignored


def _scan(paths, n_jobs):
    """Decode every file: ``[(sha256 hex, None) or (None, ImageError)]``, in order."""

    def load(path):
        try:
            key, _ = FileInput(path).load()
        except ImageError as err:
            return None, err
        return key.hex(), None

    with ThreadPoolExecutor(decode_threads(n_jobs)) as pool:
        return list(pool.map(load, paths))


def files_below(folder):
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, name)
            for name in sorted(filenames)
            if not name.startswith(".")
        )
    return found


def printable(text):
    r"""``text`` with each character a page or terminal cannot show spelled out.

    A byte of a file name that is not UTF-8 (which ``os.fsdecode`` turns into a
    surrogate escape, U+DC80 to U+DCFF) becomes ``\xNN``, the byte; any other
    character that is not printable becomes the escape ``repr`` gives it
    (``\n``, ``\x1b``, ``\u200b``). Printable text, accents and all, is
    returned as it is. The result always encodes as UTF-8.

    >>> print(printable(os.fsdecode(b"caf\xe9 \xff.jpg")))
    caf\xe9 \xff.jpg
    >>> print(printable("new\nline \x1b[2J caf\u00e9"))
    new\nline \x1b[2J café
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_spelled(char) for char in text)


def _spelled(char):
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]


def relative_path(path, root):
    """``path`` as the check report names it: relative to ``root``, with ``/``."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(
        os.sep, "/"
    )


def _survey(root, n_jobs):
    """``(check report, good files)``; each good file a dict of path, class, key."""
    classes, paths, labels, ignored = _list_folder(root)
    root = os.path.abspath(os.fsdecode(os.fspath(root)))
    counts = dict.fromkeys(classes, 0)
    good, bad = [], []
    by_key = defaultdict(list)
    for path, label, (key, err) in zip(
        paths, labels, _scan(paths, n_jobs), strict=True
    ):
        relative = relative_path(path, root)
        if err is not None:
            bad.append({"path": relative, "class": label, "reason": err.reason})
            continue
        counts[label] += 1
        good.append({"path": path, "source": relative, "class": label, "sha256": key})
        by_key[key].append((label, relative))
    duplicates = []
    for key, members in by_key.items():
        in_classes = sorted({label for label, _ in members})
        if len(in_classes) > 1:
            duplicates.append(
                {
                    "sha256": key,
                    "classes": in_classes,
                    "paths": sorted(relative for _, relative in members),
                }
            )
    duplicates.sort(key=lambda duplicate: duplicate["paths"])
    empty = [label for label, count in counts.items() if count == 0]
    report = {
        "format": CHECK_FORMAT,
        "version": 1,
        "root": root,
        "ok": not (bad or duplicates or empty),
        "classes": counts,
        "n_images": len(good),
        "n_bad": len(bad),
        "bad_files": bad,
        "duplicates": duplicates,
        "empty_classes": empty,
        "ignored": ignored,
    }
    return report, good


def _check_fraction(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not 0 <= value < 1
    ):
        raise ValueError(f"{name} must be a fraction in [0, 1); received {value!r}")
    return float(value)


def _check_out(root, out, force):
    root_real, out_real = os.path.realpath(root), os.path.realpath(out)
    if os.path.commonpath([root_real, out_real]) in (root_real, out_real):
        raise ValueError(
            "out must be outside root, and root outside out; received "
            f"root={root!r}, out={out!r}"
        )
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"out must be a folder; {out!r} is a file")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise FileExistsError(
            f"out folder {out!r} is not empty; choose a new or empty folder, or "
            "pass force=True to replace its train/, val/, test/ and split.json"
        )
    if force and os.path.isdir(out):
        _check_split_is_tlsks(out)


def _check_split_is_tlsks(out):
    """Refuse to replace ``out``'s parts unless a tlsk split wrote all they hold.

    What a split wrote is listed in its ``split.json``; a split killed before
    writing it left the folder's marker (kind ``"split"``) instead. A file in
    a part that neither names, or a ``split.json`` that is not tlsk's, may be
    someone's work: it is never removed, force or not.
    """
    manifest_path = os.path.join(out, SPLIT_MANIFEST)
    written = set()
    if os.path.lexists(manifest_path):
        written = _split_files(manifest_path)
        if written is None:
            raise FileExistsError(
                f"refusing to replace {manifest_path!r}: it is not a split.json "
                "that tlsk wrote; choose another out folder"
            )
    else:
        marker = read_folder_marker(out)
        if marker is not None and marker.get("kind") == _SPLIT_KIND:
            return  # a split that was killed before its manifest
    present = []
    for part in SPLIT_PARTS:
        folder = os.path.join(out, part)
        if os.path.islink(folder) or not os.path.lexists(folder):
            continue  # a link is removed itself, never followed
        if not os.path.isdir(folder):
            present.append(part)
            continue
        # Files and links (a link to a folder is listed among ``dirs``, not
        # entered); a folder that holds nothing has nothing to lose.
        for here, dirs, files in os.walk(folder):
            relative = os.path.relpath(here, out).replace(os.sep, "/")
            links = [name for name in dirs if os.path.islink(os.path.join(here, name))]
            present += [f"{relative}/{name}" for name in files + links]
    check_only_written(f"the parts of {out!r}", present, written)


def _split_files(manifest_path):
    """What the split.json at ``manifest_path`` says the split wrote: its files
    and their folders; None if the file is not a split.json of tlsk's."""
    try:
        with open_regular_file(manifest_path) as file:
            manifest = json.load(file)
    except (ImageError, ValueError, RecursionError):
        return None
    parts = manifest.get("parts") if isinstance(manifest, dict) else None
    if manifest.get("format") != SPLIT_FORMAT or not isinstance(parts, dict):
        return None
    written = set()
    for entries in parts.values():
        if not isinstance(entries, list):
            return None
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str):
                return None
            while path:  # the file and each folder above it
                written.add(path)
                path = path.rpartition("/")[0]
    return written


def _clear_out(out):
    os.makedirs(out, exist_ok=True)
    for name in (*SPLIT_PARTS, SPLIT_MANIFEST):
        path = os.path.join(out, name)
        # A link is removed itself: rmtree would refuse, and following it
        # would delete files outside ``out``.
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)


def _part_sizes(n, val, test):
    """``(n_train, n_val, n_test)`` for a class of ``n``, or None if too small."""

    def share(fraction):
        return 0 if fraction == 0 else max(1, math.floor(n * fraction + 0.5))

    n_val, n_test = share(val), share(test)
    while n - n_val - n_test < 1 and max(n_val, n_test) > 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    if n - n_val - n_test < 1:
        return None
    return n - n_val - n_test, n_val, n_test


def _name_seed(name):
    # Python's hash() of a str changes between processes; SHA-256 does not.
    data = name.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _write_split(out, parts, link):

    written_as = dict.fromkeys(("copy", "hardlink", "symlink"), 0)
    listing, counts = {}, {}
    for part, items in parts.items():
        items = sorted(items, key=lambda item: item["source"])
        listing[part], counts[part] = [], {}
        for item in items:
            # Each component separately: safe_join refuses "/", "..", absolute.
            target = safe_join(out, part, *item["source"].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            written_as[_place(item["path"], target, link)] += 1
            counts[part][item["class"]] = counts[part].get(item["class"], 0) + 1
            listing[part].append(
                {
                    "path": f"{part}/{item['source']}",
                    "source": item["source"],
                    "class": item["class"],
                    "sha256": item["sha256"],
                }
            )
    return {"parts": listing, "counts": counts, "written_as": written_as}


def _place(source, target, link):
    """Copy or link ``source`` to the new name ``target``; return how."""
    if link:
        try:
            os.link(source, target)
            return "hardlink"
        except OSError:
            os.symlink(os.path.realpath(source), target)
            return "symlink"
    # "x": fails if ``target`` exists, even as a dangling link, rather than
    # writing through it. The source through tlsk's one opener of image
    # files: had it become a FIFO since it was decoded, it would not block.
    with open_regular_file(source) as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst)
    return "copy"
