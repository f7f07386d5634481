"""Image folders: a folder per class -> (paths, labels), and the bad files in them."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tlsk.images import ImageError, read_image

__all__ = ["find_bad_images", "load_image_folder"]

_ON_ERROR = ("warn", "raise", "ignore")


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
        :class:`~tlsk.images.ImageError` of the first one, or skip silently.
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
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"root must be an existing folder; received {root!r}")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    )
    if not classes:
        raise ValueError(
            f"no class folders in {root!r}: expected one sub-folder per class "
            "(root/<class>/<image files>)"
        )
    paths, labels = [], []
    for label in classes:
        for path in _files_below(os.path.join(root, label)):
            paths.append(path)
            labels.append(label)
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

    def check(path):
        try:
            read_image(path)
        except ImageError as err:
            return err
        return None

    with ThreadPoolExecutor(n_jobs or min(4, os.cpu_count() or 1)) as pool:
        return [err for err in pool.map(check, paths) if err is not None]


def _files_below(folder):
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, name)
            for name in sorted(filenames)
            if not name.startswith(".")
        )
    return found
