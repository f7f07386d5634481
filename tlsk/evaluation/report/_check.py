"""The data report of a folder-per-class tree: what ``tlsk check --report`` writes.

One static page (``OUT/index.html``, thumbnails in ``OUT/thumbs/``): images
per class, the suspected label errors (when given) as a gallery and a
sortable table, a sample of each class, the files that cannot be decoded and
why, and the same image in two classes side by side.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from tlsk.evaluation.report._embedding import MAP_POINTS, image_map
from tlsk.evaluation.report._fixes import (
    FIXES_SCRIPT,
    file_sha256,
    fix_controls,
    fixes_bar,
)
from tlsk.evaluation.report._map import MAP_SCRIPT
from tlsk.evaluation.report._near_duplicates import near_duplicates_section
from tlsk.evaluation.report._page import e, figure, gallery, page, write_report_folder
from tlsk.evaluation.report._thumbnails import write_thumbnail
from tlsk.images.folders import relative_path


def check_report(
    root,
    out,
    *,
    check=None,
    label_errors=None,
    near_duplicates=None,
    features=None,
    map_points=MAP_POINTS,
    per_class=24,
    suspects_shown=200,
    force=False,
    seed=0,
    fixes=True,
):
    """Write the data report of folder ``root`` to ``out``; the path of index.html.

    Parameters
    ----------
    root : str or path-like
        A folder with one sub-folder per class.
    out : str or path-like
        The report's folder; an existing one is refused unless ``force``.
    check : dict, optional
        :func:`tlsk.check_image_folder`'s report of ``root`` (computed when
        not given).
    label_errors : tlsk.evaluation.label_errors.LabelErrors, optional
        Found on the images of ``root`` (by file path): shown as a gallery,
        most doubtful first (at most ``suspects_shown``), and as a table.
    near_duplicates : tlsk.evaluation.near_duplicates.NearDuplicates, optional
        Found on the images of ``root``: each group side by side, the groups
        that cross the parts of a split first.
    features : tuple (paths, vectors), optional
        The features of images of ``root`` (the extractor's that found the
        label errors or near duplicates): a map of the images by them, the
        suspects and near duplicates marked. At most ``map_points`` images
        are mapped, a sample that keeps each class's share.
    per_class : int, default=24
        Thumbnails shown per class: a sample drawn with ``seed``.
    fixes : bool, default=True
        Give each suspect (bad file, duplicate, near duplicate, label error)
        a keep / remove / relabel control, and the page a button that
        downloads the choices as the CSV ``tlsk check DIR --apply`` reads
        (:mod:`tlsk.images.fixes`).

    Examples
    --------
    >>> import os, tempfile
    >>> from tlsk.images.sample_data import write_photo_folder
    >>> root = tempfile.mkdtemp()
    >>> _ = write_photo_folder(os.path.join(root, "data"), per_class=3, size=32)
    >>> page = check_report(os.path.join(root, "data"), os.path.join(root, "out"))
    >>> len(os.listdir(os.path.join(root, "out", "thumbs")))
    18
    """
    from tlsk.images.folders import check_image_folder, load_image_folder

    given_root, root = os.fspath(root), os.path.abspath(os.fspath(root))
    if check is None:
        check = check_image_folder(root)
    bad = {item["path"] for item in check["bad_files"]}
    split = check.get("split")
    paths, labels = [], []
    for part in split or [None]:
        found, found_labels = load_image_folder(
            root if part is None else os.path.join(root, part), check=False
        )
        paths += found
        labels += found_labels.tolist()
    names = [relative_path(path, root) for path in paths]
    good = [i for i, name in enumerate(names) if name not in bad]
    rng = np.random.default_rng(seed)
    samples = {}
    for label in check["classes"]:
        members = [i for i in good if labels[i] == label]
        chosen = rng.choice(len(members), min(per_class, len(members)), replace=False)
        samples[label] = [members[j] for j in sorted(chosen.tolist())]
    suspects = [] if label_errors is None else label_errors.suspects()
    marks = _marks(paths, suspects, near_duplicates)

    def build(folder):
        thumbs = Thumbnails(os.path.join(folder, "thumbs"))
        fix = _Fixes(list(check["classes"]), split, root) if fixes else None
        sections = [
            _summary(check, suspects, label_errors is not None, near_duplicates),
            _bad_files(check, fix),
            _duplicates(check, root, thumbs, fix),
        ]
        if near_duplicates is not None:
            sections.append(
                near_duplicates_section(
                    near_duplicates,
                    root,
                    thumbs,
                    controls=None if fix is None else fix.near_duplicate,
                )
            )
        if label_errors is not None:
            sections.append(
                _suspects(suspects, suspects_shown, root, thumbs, label_errors, fix)
            )
        if features is not None:
            sections.append(
                _map(features, map_points, paths, labels, names, marks, thumbs, seed)
            )
        sections.append(_classes(check))
        for label, chosen in samples.items():
            figures = [
                figure(thumbs.of(paths[i]), names[i], "", name=names[i]) for i in chosen
            ]
            sections.append(
                gallery(
                    f"{label}",
                    f"class-{list(check['classes']).index(label)}",
                    figures,
                    f"{len(chosen)} of {check['classes'][label]} images, "
                    f"drawn at random (seed {seed})",
                    level=3,
                )
            )
        if fix is not None and fix.used:
            sections.append(fixes_bar(data=given_root))
        return page(
            f"Data report: {os.path.basename(root)}",
            datetime.datetime.now().isoformat(timespec="seconds"),
            sections,
            scripts=[
                *([FIXES_SCRIPT] if fix is not None and fix.used else []),
                *([MAP_SCRIPT] if features is not None else []),
            ],
        )

    return write_report_folder(out, force, build, inputs=[root])


def _marks(paths, suspects, near_duplicates):
    """Image index -> what it is suspected of, for the map."""
    index = {os.path.abspath(path): i for i, path in enumerate(paths)}
    marks = {}
    for group in near_duplicates.groups if near_duplicates is not None else []:
        for file in group.files:
            if file is not None and os.path.abspath(file) in index:
                marks[index[os.path.abspath(file)]] = "near duplicate"
    for suspect in suspects:
        if suspect.image and os.path.abspath(suspect.image) in index:
            marks[index[os.path.abspath(suspect.image)]] = "label error"
    return marks


def _map(features, map_points, paths, labels, names, marks, thumbs, seed):
    """The map of the images whose features are given."""
    from tlsk.evaluation.embedding_map import map_sample

    if not map_points:
        return ""
    files, vectors = features
    vectors = np.asarray(vectors)
    if len(files) != len(vectors):
        raise ValueError(
            f"features must give one vector per path; received {len(files)} paths "
            f"and {len(vectors)} vectors"
        )
    row = {os.path.abspath(os.fspath(file)): k for k, file in enumerate(files)}
    have = [i for i, path in enumerate(paths) if os.path.abspath(path) in row]
    if len(have) < 2:
        return ""
    chosen = map_sample(
        len(have),
        max_points=map_points,
        labels=[labels[i] for i in have],
        random_state=seed,
    )
    on_map = np.array([have[k] for k in chosen.tolist()], dtype=np.int64)
    return image_map(
        vectors[[row[os.path.abspath(paths[i])] for i in on_map]],
        on_map,
        n_images=len(have),
        kind="the features the suspects were found with",
        names=names,
        labels=labels,
        marks=marks,
        thumbnails={int(i): thumbs.of(paths[i]) for i in on_map},
    )


class _Fixes:
    """The fix controls of one page, counting whether any was given."""

    def __init__(self, classes, split, root):
        self.classes = classes
        self.split = split
        self.root = root
        self.used = False
        self.sha256 = {}  # file: its SHA-256, or None when it cannot be read

    def __call__(self, file, given, reason, suggested=None):
        """The control of ``file`` (relative to the data, ``/``), of class ``given``.

        A symbolic link gets none: --apply moves only files of the folder
        itself, never through a link. Nor does a file that cannot be read:
        the control carries the SHA-256 of the file's bytes (each file read
        once), which --apply checks.
        """
        path = os.path.join(self.root, *file.split("/"))
        if os.path.islink(path):
            return '<span class="note">a symbolic link: fix it by hand</span>'
        if file not in self.sha256:
            self.sha256[file] = file_sha256(path)
        if self.sha256[file] is None:
            return '<span class="note">cannot be read: fix it by hand</span>'
        self.used = True
        if given is None:
            # <class>/<name>, or <part>/<class>/<name> in a split
            given = file.split("/")[1 if self.split else 0]
        return fix_controls(
            file,
            given,
            self.classes,
            suggested=suggested,
            reason=reason,
            sha256=self.sha256[file],
        )

    def near_duplicate(self, file, label):
        return self(file, label, "near duplicate")


class Thumbnails:
    """Thumbnails named by first use: an image shown twice is made once."""

    def __init__(self, folder):
        self.folder = folder
        self.names = {}

    def of(self, path):
        key = os.path.abspath(path)
        if key not in self.names:
            name = f"{len(self.names)}.jpg"
            self.names[key] = write_thumbnail(key, self.folder, name)
        return self.names[key]


def _summary(check, suspects, looked_for_suspects, near_duplicates):
    """What is wrong first, each count linking to its section."""
    n_duplicates = len(check["duplicates"])
    items = [
        f'<li class="{"bad" if check["n_bad"] else "good"}">'
        f'<a href="#bad-files">{_count(check["n_bad"], "file")}</a> cannot be '
        "decoded</li>",
        f'<li class="{"bad" if n_duplicates else "good"}">'
        f'<a href="#duplicates">{_count(n_duplicates, "image")}</a> in two or '
        "more classes</li>",
    ]
    if near_duplicates is not None:
        groups, leaks = len(near_duplicates.groups), len(near_duplicates.leaks())
        items.append(
            f'<li class="{"bad" if groups else "good"}">'
            f'<a href="#near-duplicates">{_count(groups, "group")}</a> of near '
            "duplicates"
            + (
                f', <span class="bad">{_count(leaks, "group")} across the parts '
                "of the split (leakage)</span>"
                if leaks
                else ""
            )
            + "</li>"
        )
    if looked_for_suspects:
        items.append(
            f'<li class="{"bad" if suspects else "good"}">'
            f'<a href="#label-errors">{_count(len(suspects), "label")}</a> '
            "probably wrong</li>"
        )
    if check["empty_classes"]:
        names = ", ".join(e(label) for label in check["empty_classes"])
        items.append(f'<li class="bad">classes with no image: {names}</li>')
    parts = ""
    if check.get("split"):
        counts = ", ".join(
            f"{e(part)} {check['parts'][part]['n_images']}" for part in check["split"]
        )
        parts = f" in the parts of a split ({counts})"
    return (
        f'<div class="summary" id="summary"><p>{_count(check["n_images"], "image")} '
        f'in <a href="#classes">{_count(len(check["classes"]), "class")}</a>'
        f"{parts}</p><ul>{''.join(items)}</ul></div>"
    )


def _classes(check):
    rows = [
        '<h2 id="classes">Samples of each class</h2>',
        "<table id='classes-table'><tr><th>class</th><th>images</th></tr>",
    ]
    for i, (label, count) in enumerate(check["classes"].items()):
        rows.append(
            f'<tr><td><a href="#class-{i}">{e(label)}</a></td><td>{count}</td></tr>'
        )
    rows.append("</table>")
    if check["ignored"]:
        names = ", ".join(e(name) for name in check["ignored"])
        rows.append(f'<p class="note">ignored (not class folders): {names}</p>')
    return "\n".join(rows)


def _count(n, noun):
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n} {noun if n == 1 else plural}"


def _suspects(suspects, shown, root, thumbs, label_errors, fix):
    figures = []
    for s in suspects[:shown]:
        name = relative_path(s.image, root) if s.image else f"X[{s.index}]"
        caption = f"labelled {e(s.given)}<br>likely {e(s.likely)} ({s.p_likely:.2f})"
        if fix is not None and s.image:
            caption += fix(name, s.given, "label error", suggested=s.likely)
        thumbnail = thumbs.of(s.image) if s.image else None
        figures.append(figure(thumbnail, name, caption, name=name))
    note = (
        f"{_count(len(suspects), 'image')} whose label is probably wrong (confident "
        f"learning on {label_errors.folds}-fold out-of-fold probabilities), most "
        "doubtful first"
    )
    parts = [
        gallery(
            "Suspected label errors",
            "label-errors",
            figures,
            note,
            left_out=max(0, len(suspects) - shown),
        )
    ]
    if suspects:
        parts.append(
            "<table id='suspects'><thead><tr><th data-sort='text'>file</th>"
            "<th data-sort='text'>label</th><th data-sort='text'>likely</th>"
            "<th data-sort='number'>p(label)</th><th data-sort='number'>p(likely)"
            "</th></tr></thead><tbody>"
        )
        for s in suspects:
            name = relative_path(s.image, root) if s.image else f"X[{s.index}]"
            parts.append(
                f'<tr><td data-value="{e(name)}">{e(name)}</td>'
                f'<td data-value="{e(s.given)}">{e(s.given)}</td>'
                f'<td data-value="{e(s.likely)}">{e(s.likely)}</td>'
                f'<td data-value="{s.p_given:.6f}">{s.p_given:.3f}</td>'
                f'<td data-value="{s.p_likely:.6f}">{s.p_likely:.3f}</td></tr>'
            )
        parts.append("</tbody></table>")
    return "\n".join(parts)


def _bad_files(check, fix):
    rows = [f'<h2 id="bad-files">Files that cannot be decoded ({check["n_bad"]})</h2>']
    if not check["bad_files"]:
        return rows[0] + "<p>none</p>"
    head = "<th>fix</th>" if fix is not None else ""
    rows.append(f"<table id='bad'><tr><th>file</th><th>why</th>{head}</tr>")
    for bad in check["bad_files"]:
        control = (
            f"<td>{fix(bad['path'], bad['class'], 'bad file')}</td>"
            if fix is not None
            else ""
        )
        rows.append(
            f"<tr><td>{e(bad['path'])}</td><td>{e(bad['reason'])}</td>{control}</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _duplicates(check, root, thumbs, fix):
    parts = [
        f'<h2 id="duplicates">The same image in two or more classes '
        f"({len(check['duplicates'])})</h2>"
    ]
    if not check["duplicates"]:
        return parts[0] + "<p>none</p>"
    for duplicate in check["duplicates"]:
        figures = [
            figure(
                thumbs.of(os.path.join(root, path)),
                path,
                "" if fix is None else fix(path, None, "duplicate"),
                name=path,
            )
            for path in duplicate["paths"]
        ]
        parts += ['<div class="grid">', *figures, "</div>"]
    return "\n".join(parts)
