"""The image files a command reads: labelled folder-per-class trees, and files or
folders named on the command line."""

from __future__ import annotations

import os

from tlsk.cli import CommandError
from tlsk.cli._output import in_cli_words, note


def read_labelled_folder(args, root):
    """``(paths, labels, bad)`` of a folder-per-class tree.

    Files that cannot be decoded are left out and named in a note; ``bad``
    holds their :class:`tlsk.images.decode.ImageError`.
    """
    from tlsk.images.folders import find_bad_images, load_image_folder

    paths, labels = load_image_folder(root, check=False)
    bad = find_bad_images(paths)
    if bad:
        bad_paths = {err.path for err in bad}
        keep = [i for i, path in enumerate(paths) if path not in bad_paths]
        paths, labels = [paths[i] for i in keep], labels[keep]
        note(args, f"skipped {len(bad)} files that cannot be decoded:")
        for err in bad:
            note(args, f"  {in_cli_words(err)}")
    if not paths:
        raise CommandError(f"no image that can be decoded in {root!r}")
    return paths, labels, bad


def image_files(paths):
    """The files named by ``paths``, folders expanded recursively.

    Inside folders, hidden files and folders are skipped and links to folders
    are not followed; a file named explicitly is kept whatever its name, and
    so is a path that does not exist, for the caller to report.
    """
    from tlsk.images.folders import _files_below

    found = []
    for path in map(os.fspath, paths):
        found.extend(_files_below(path) if os.path.isdir(path) else [path])
    return found
