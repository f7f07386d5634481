"""The near-duplicate section of a check report: each group side by side.

Groups that cross the parts of a split (leaks) come first, marked; under
each image, its class and part and how close it is to its nearest member
(hash bits, cosine distance, or the same bytes).
"""

from __future__ import annotations

from tlsk.evaluation.report._page import e, figure

__all__ = ["near_duplicates_section"]


def near_duplicates_section(result, root, thumbs, *, shown=200, controls=None) -> str:
    """The HTML of the section ``<h2 id="near-duplicates">``.

    Parameters
    ----------
    result : tlsk.evaluation.near_duplicates.NearDuplicates
        What :func:`tlsk.find_near_duplicates` found.
    root : str or None
        The folder the file names are shown relative to (None: as given).
    thumbs : object
        ``thumbs.of(path)`` gives the name of the path's thumbnail under
        ``thumbs/``, or None (:class:`tlsk.evaluation.report._check.Thumbnails`).
    shown : int, default=200
        Groups shown at most, leaks first; the others are counted.
    controls : callable, optional
        ``controls(name, label)`` gives the HTML put under each image of a
        file (its name as shown, relative to ``root``, and its class): the
        data report's keep / remove / relabel control.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk.evaluation.near_duplicates import find_near_duplicates
    >>> X = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    >>> found = find_near_duplicates(
    ...     X, extractor="precomputed", method="features",
    ...     parts=["train", "test", "val"])
    >>> class NoThumbnails:
    ...     def of(self, path):
    ...         return None
    >>> html = near_duplicates_section(found, None, NoThumbnails())
    >>> html.startswith('<h2 id="near-duplicates">'), "leak across train, test" in html
    (True, True)
    """
    groups = sorted(
        enumerate(result.groups, 1),
        key=lambda numbered: (not numbered[1].crosses_parts, numbered[0]),
    )
    leaks = len(result.leaks())
    title = f"Near duplicates ({len(groups)})"
    parts = [f'<h2 id="near-duplicates">{e(title)}</h2>', _summary(result, leaks)]
    if not groups:
        return "\n".join(parts + ["<p>none</p>"])
    for number, group in groups[:shown]:
        parts.append(_group(number, group, result, root, thumbs, controls))
    if len(groups) > shown:
        parts.append(f'<p class="note">{len(groups) - shown} more groups not shown</p>')
    return "\n".join(parts)


def _summary(result, leaks):
    how = []
    if result.max_bits is not None:
        how.append(f"perceptual hashes differing in at most {result.max_bits} bits")
    if result.max_distance is not None:
        how.append(f"features within cosine distance {result.max_distance:g}")
    text = (
        f"Images that are copies of one another among {result.n_images} "
        f"({' or '.join(how)}, or the same bytes)"
    )
    if leaks:
        text += (
            f"; {leaks} group{'s' * (leaks != 1)} cross the parts of the split "
            "(leakage: a copy of a test image is trained on), shown first"
        )
    return f'<p class="note">{e(text)}.</p>'


def _group(number, group, result, root, thumbs, controls):
    names = result.names(group, root)
    closest = group.closest()
    heading = f"Group {number}: {len(group.indices)} images"
    marked = ""
    if group.crosses_parts:
        across = ", ".join(dict.fromkeys(group.parts))
        heading += f", leak across {across}"
        marked = ' class="bad"'
    if group.crosses_classes:
        heading += ", in two or more classes"
    figures = []
    for position, (index, file, name) in enumerate(
        zip(group.indices, group.files, names, strict=True)
    ):
        where = [
            values[position]
            for values in (group.labels, group.parts)
            if values is not None
        ]
        caption = e(" · ".join(where)) + "<br>" if where else ""
        caption += e(_closeness(closest[index]))
        thumbnail = None if file is None else thumbs.of(file)
        if controls is not None and file is not None:
            label = group.labels[position] if group.labels is not None else None
            caption += controls(name, label)
        figures.append(figure(thumbnail, name, caption, name=name))
    return "\n".join(
        [
            f'<h3 id="near-duplicates-{number}"{marked}>{e(heading)}</h3>',
            '<div class="grid">',
            *figures,
            "</div>",
        ]
    )


def _closeness(pair):
    if pair.same_bytes:
        return "same bytes as another"
    words = []
    if pair.bits is not None:
        words.append(f"{pair.bits} bits")
    if pair.distance is not None:
        words.append(f"cosine distance {pair.distance:.4f}")
    return "nearest: " + ", ".join(words)
