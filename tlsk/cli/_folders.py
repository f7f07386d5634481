"""The image files a command reads: labelled folder-per-class trees, and files or
folders named on the command line."""

from __future__ import annotations

import os

from tlsk.cli import CommandError
from tlsk.cli._output import counted, in_cli_words, note, shown


def split_parts(root):
    """The parts (``train``, ``val``, ``test``) of ``root`` if it is a split, else [].

    A split is a folder that ``tlsk split`` wrote (it holds ``split.json``) or
    one whose ``train/``, ``val/`` or ``test/`` folders (two at least) hold
    class folders: its parts, not the split, are folders of class folders.
    """
    from tlsk.images.folders import SPLIT_MANIFEST, SPLIT_PARTS

    parts = [part for part in SPLIT_PARTS if os.path.isdir(os.path.join(root, part))]
    if os.path.isfile(os.path.join(root, SPLIT_MANIFEST)) and parts:
        return parts

    def holds_folders(part):
        with os.scandir(os.path.join(root, part)) as entries:
            return any(
                entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
                for entry in entries
            )

    parts = [part for part in parts if holds_folders(part)]
    return parts if len(parts) >= 2 else []


def check_not_split(args, root, *, part):
    """A usage error (exit 2) when ``root`` is a split, not a folder of classes.

    ``part`` is the split's folder the command should be given (``"test"``
    for evaluate), or the first one that exists.
    """
    parts = split_parts(root)
    if not parts:
        return
    given = os.path.join(os.fspath(root), part if part in parts else parts[0])
    listed = ", ".join(f"{name}/" for name in parts)
    args.usage_error(
        f"{shown(os.fspath(root))} looks like a split made by tlsk split "
        f"({listed}), not a folder of class folders: "
        f"tlsk {args.command} {shown(given)}"
    )


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
        note(args, f"skipped {counted(len(bad), 'file')} that cannot be decoded:")
        for err in bad:
            note(args, f"  {in_cli_words(err)}")
    if not paths:
        raise CommandError(f"no image that can be decoded in {root!r}")
    return paths, labels, bad


def image_files(paths):
    """The files named by ``paths``, folders expanded recursively.

    Inside folders, hidden files and folders are skipped, links to folders
    are not followed, and so is what tlsk wrote there that is no image (the
    ``split.json`` of a split); a file named explicitly is kept whatever its
    name, and so is a path that does not exist, for the caller to report.
    """
    from tlsk.images.folders import SPLIT_MANIFEST, files_below

    found = []
    for path in map(os.fspath, paths):
        if not os.path.isdir(path):
            found.append(path)
            continue
        found.extend(
            file
            for file in files_below(path)
            if not (
                os.path.basename(file) == SPLIT_MANIFEST
                and split_parts(os.path.dirname(file))
            )
        )
    return found
