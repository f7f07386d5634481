"""The comparison page: two or more models on the same images, side by side.

:func:`write_comparison_report` writes one report folder (``index.html``,
``thumbs/``) with each model's scores and McNemar's test in words, the
per-class scores side by side in a sortable table, the images on which the
models disagree with each model's answer, and each model's configuration.
The figures come from :func:`tlsk.evaluation.comparison.compare_models`;
every text from the data goes through :func:`tlsk.evaluation.report._page.e`.
Each section renderer returns HTML that starts with its ``<h2 id=...>``.
"""

from __future__ import annotations

import datetime
import json
import os

from tlsk.evaluation.comparison import Comparison, Disagreement, compare_models
from tlsk.evaluation.report._page import (
    check_report_folder,
    e,
    figure,
    gallery,
    page,
    write_report_folder,
)
from tlsk.evaluation.report._thumbnails import write_thumbnail

__all__ = [
    "comparison_models_section",
    "comparison_per_class_section",
    "comparison_scores_section",
    "disagreements_section",
    "render_comparison",
    "write_comparison_report",
]

# A configuration value longer than this is folded under its first characters.
_VALUE_CHARS = 40
_VALUE_STYLE = "text-align: left; max-width: 28em; overflow-wrap: anywhere"


def write_comparison_report(
    out,
    images,
    y,
    probas,
    classes,
    *,
    names=None,
    metadata=None,
    force=False,
    data_folder=None,
    disagreements_shown=60,
    title=None,
    confidence=0.95,
):
    """Write the page comparing several models' predictions of the same images.

    Parameters
    ----------
    out : str or path-like
        The report's folder, created; an existing one is refused unless
        ``force``, and even then unless it is a report tlsk wrote, holding
        nothing else (replaced as a whole once the new one is complete). A
        folder that is, holds or lies inside the images' data is refused.
    images : sequence of str, path-like or arrays
        The images, whose thumbnails the page shows where models disagree.
    y : array-like of shape (n_images,)
        Their true labels; a label a model does not know is its error.
    probas : dict
        Model name -> its probabilities, shape (n_images, its n_classes).
        Two or more models; the page shows them in this order.
    classes : dict
        Model name -> its classes, the columns of its probabilities.
    names : sequence of str, optional
        A name for each image on the page (default: the file paths, or
        ``X[i]`` for arrays).
    metadata : dict, optional
        Model name -> what made it (``tlsk train``'s JSON), shown compactly.
    force : bool, default=False
    data_folder : str or path-like, optional
        The folder the images come from, protected as they are.
    disagreements_shown : int, default=60
        How many of the images the models disagree on get a thumbnail, the
        most informative first (a model right, another confidently wrong).
    title : str, optional
        The page's title (default: "Comparison of" and the models' names).
    confidence : float, default=0.95
        The level of the accuracies' Wilson intervals.

    Returns
    -------
    str
        The path of ``index.html``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> tmp = tempfile.mkdtemp()
    >>> paths = []
    >>> for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
    ...     paths.append(os.path.join(tmp, f"{i}.png"))
    ...     Image.new("RGB", (40, 30), colour).save(paths[-1])
    >>> page = write_comparison_report(
    ...     os.path.join(tmp, "report"),
    ...     paths,
    ...     ["a", "b", "b"],
    ...     {"A": np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]),
    ...      "B": np.array([[0.6, 0.4], [0.1, 0.9], [0.2, 0.8]])},
    ...     {"A": ["a", "b"], "B": ["a", "b"]},
    ... )
    >>> os.listdir(os.path.join(tmp, "report", "thumbs"))
    ['1.jpg']
    >>> with open(page, encoding="utf-8") as file:
    ...     "B is right on 1 image where A is wrong" in file.read()
    True
    """
    if not isinstance(probas, dict) or not isinstance(classes, dict):
        raise ValueError(
            "probas and classes must be dicts (model name -> probabilities, "
            f"classes); received {type(probas).__name__} and "
            f"{type(classes).__name__}"
        )
    if set(probas) != set(classes):
        raise ValueError(
            "probas and classes must name the same models; received "
            f"{sorted(map(str, probas))} and {sorted(map(str, classes))}"
        )
    if disagreements_shown < 0:
        raise ValueError(
            f"disagreements_shown must be 0 or more; received {disagreements_shown}"
        )
    images = list(images)
    inputs = [x for x in images if isinstance(x, str | bytes | os.PathLike)]
    if data_folder is not None:
        inputs.append(data_folder)
    check_report_folder(out, force, inputs)
    if names is None:
        names = [
            os.fsdecode(x) if isinstance(x, str | bytes | os.PathLike) else f"X[{i}]"
            for i, x in enumerate(images)
        ]
    if len(names) != len(images) or len(images) != len(y):
        raise ValueError(
            f"images, y and names must have one length; received {len(images)}, "
            f"{len(y)} and {len(names)}"
        )
    comparison = compare_models(y, probas, classes=classes, confidence=confidence)
    shown = comparison.disagreements[:disagreements_shown]
    written = datetime.datetime.now().isoformat(timespec="seconds")

    def build(folder):
        thumbs = os.path.join(folder, "thumbs")
        thumbnails = {
            d.index: write_thumbnail(images[d.index], thumbs, f"{d.index}.jpg")
            for d in shown
        }
        return render_comparison(
            comparison,
            names,
            thumbnails,
            title=title or "Comparison of " + ", ".join(comparison.names),
            metadata=metadata,
            written=written,
            disagreements_shown=disagreements_shown,
        )

    return write_report_folder(out, force, build, inputs=inputs)


def render_comparison(
    comparison: Comparison,
    image_names,
    thumbnails: dict[int, str | None],
    *,
    title: str,
    metadata: dict | None,
    written: str,
    disagreements_shown: int,
) -> str:
    """The page. ``thumbnails``: image index -> file name under ``thumbs/``."""
    sections = [
        comparison_scores_section(comparison, metadata),
        comparison_per_class_section(comparison),
        disagreements_section(
            comparison, image_names, thumbnails, shown=disagreements_shown
        ),
        comparison_models_section(comparison.names, metadata),
    ]
    return page(title, written, [s for s in sections if s])


def comparison_scores_section(comparison: Comparison, metadata=None) -> str:
    """Each model's accuracy with its interval, then McNemar's test of each pair."""
    metadata = metadata or {}
    head = (
        "<tr><th>model</th><th>method</th><th>accuracy</th>"
        f"<th>{100 * comparison.level:g}% interval</th><th>right</th>"
        "<th>macro F1</th><th>true classes it does not know</th></tr>"
    )
    rows = [
        '<h2 id="scores">Scores</h2>',
        f'<p class="note">{comparison.n_images} images; the interval is '
        "Wilson's score interval of the accuracy</p>",
        f'<table id="model-scores">{head}',
    ]
    for name in comparison.names:
        scores = comparison.models[name]
        low, high = scores.interval
        unknown = [
            label
            for label in comparison.labels
            if label not in scores.classes and scores.per_class[label]["support"]
        ]
        method = (metadata.get(name) or {}).get("method", "")
        rows.append(
            f"<tr><td>{e(name)}</td><td>{e(method)}</td>"
            f"<td><b>{scores.accuracy:.3f}</b></td>"
            f"<td>{low:.3f} – {high:.3f}</td>"
            f"<td>{scores.n_correct} of {comparison.n_images}</td>"
            f"<td>{scores.macro_f1:.3f}</td>"
            f"<td>{e(', '.join(unknown)) if unknown else 'none'}</td></tr>"
        )
    rows.append("</table>")
    rows.append(
        '<h3 id="mcnemar">McNemar\'s test</h3><p class="note">on the images '
        "exactly one of two models gets right: if the two were equally good, "
        "each would fall on either side as often (McNemar 1947; Dietterich "
        "1998). Exact binomial test below 25 such images, chi-squared with "
        "continuity correction from 25 on; each pair on its own, p not "
        "corrected for several pairs.</p>"
    )
    rows.append(
        '<table id="pairs"><tr><th>pair</th><th>both right</th><th>only the '
        "first</th><th>only the second</th><th>both wrong</th><th>p</th>"
        "<th>test</th></tr>"
    )
    sentences = []
    for pair in comparison.pairs:
        first = comparison.models[pair.first].correct
        second = comparison.models[pair.second].correct
        both, neither = int((first & second).sum()), int((~first & ~second).sum())
        rows.append(
            f"<tr><td>{e(pair.first)} vs {e(pair.second)}</td><td>{both}</td>"
            f"<td>{pair.b}</td><td>{pair.c}</td><td>{neither}</td>"
            f"<td>{pair.p_value:.4g}</td><td>{e(pair.method)}</td></tr>"
        )
        sentences.append(f'<p class="mcnemar">{e(pair.sentence())}</p>')
    rows.append("</table>")
    return "\n".join(rows + sentences)


def comparison_per_class_section(comparison: Comparison) -> str:
    """Precision, recall and F1 of every model for every class: a sortable table."""
    two = len(comparison.names) == 2
    # Two header rows: the models' names over their columns, then one sortable
    # cell per column (the sort script finds a column by its cell's index).
    models = ['<th colspan="2"></th>']
    head = ['<th data-sort="text">class</th>', '<th data-sort="number">images</th>']
    for name in comparison.names:
        models.append(f'<th colspan="3" style="text-align: center">{e(name)}</th>')
        head += [f'<th data-sort="number">{s}</th>' for s in ("precision", "recall")]
        head.append('<th data-sort="number">F1</th>')
    if two:
        a, b = comparison.names
        models.append(f'<th style="text-align: center">{e(b)} − {e(a)}</th>')
        head.append('<th data-sort="number">F1 difference</th>')
    rows = [
        '<h2 id="per-class">Per class, side by side</h2>',
        '<p class="note">click a column header to sort; "not a class" marks a '
        "class the model cannot answer (its images are its errors)</p>",
        "<div class='wide'>"
        f"<table id='comparison-per-class'><thead><tr>{''.join(models)}</tr>"
        f"<tr>{''.join(head)}</tr></thead>"
        "<tbody>",
    ]
    for label in comparison.labels:
        support = comparison.models[comparison.names[0]].per_class[label]["support"]
        cells = [
            f'<td data-value="{e(label)}">{e(label)}</td>',
            f'<td data-value="{support}">{support}</td>',
        ]
        for name in comparison.names:
            scores = comparison.models[name]
            for key in ("precision", "recall", "f1"):
                if label in scores.classes:
                    value = scores.per_class[label][key]
                    cells.append(f'<td data-value="{value:.6f}">{value:.3f}</td>')
                else:
                    cells.append('<td data-value="-1" class="note">not a class</td>')
        if two:
            first, second = (comparison.models[name] for name in comparison.names)
            gain = second.per_class[label]["f1"] - first.per_class[label]["f1"]
            kind = "good" if gain > 0 else "bad" if gain < 0 else ""
            cells.append(f'<td data-value="{gain:.6f}" class="{kind}">{gain:+.3f}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    rows.append("</tbody></table></div>")
    return "\n".join(rows)


def disagreements_section(
    comparison: Comparison, image_names, thumbnails, *, shown: int
) -> str:
    """The images the models answer differently, with each model's answer."""
    found = comparison.disagreements
    figures = [
        _disagreement_figure(d, image_names[d.index], thumbnails, comparison.names)
        for d in found[:shown]
    ]
    counts = []
    for pair in comparison.pairs:
        counts.append(
            f"only {pair.first} right: {pair.b}, only {pair.second} right: {pair.c}"
        )
    note = (
        f"{len(found)} of {comparison.n_images} images get different answers ("
        + "; ".join(counts)
        + "). First the images where a model is right and another confidently "
        "wrong (by the wrong answer's probability), then those all get wrong."
    )
    return gallery(
        "Where they disagree",
        "disagreements",
        figures,
        note,
        left_out=max(0, len(found) - shown),
    )


def _disagreement_figure(d: Disagreement, name, thumbnails, models) -> str:
    lines = [f"true <b>{e(d.true)}</b>"]
    for model in models:
        right = model in d.right
        p = d.confidence[model]
        probability = "" if p is None else f" ({p:.2f})"
        mark = "✓" if right else "✗"
        lines.append(
            f'<span class="{"good" if right else "bad"}">{mark} '
            f"{e(model)}: {e(d.predicted[model])}{probability}</span>"
        )
    return figure(thumbnails.get(d.index), name, "<br>".join(lines), name=name)


def comparison_models_section(model_names, metadata) -> str:
    """What made each model: one row per setting, one column per model.

    Rows whose values differ come first, in bold; a long value (a list of
    classes, the classifier's parameters) is folded under its beginning.
    Empty when no model has metadata.
    """
    metadata = {name: (metadata or {}).get(name) or {} for name in model_names}
    keys = sorted({key for value in metadata.values() for key in value})
    if not keys:
        return ""

    def text(value):
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True, default=str)

    table = []
    for key in keys:
        values = [text(metadata[name].get(key)) for name in model_names]
        table.append((len(set(values)) == 1, key, values))
    table.sort(key=lambda row: (row[0], row[1]))  # differing settings first
    head = "".join(
        f'<th style="text-align: left">{e(name)}</th>' for name in model_names
    )
    rows = [
        '<h2 id="models">The models</h2>',
        '<p class="note">the settings that differ come first, in bold</p>',
        f"<div class='wide'><table id='model-settings'><tr><th>setting</th>{head}</tr>",
    ]
    for same, key, values in table:
        label = e(key) if same else f"<b>{e(key)}</b>"
        cells = "".join(
            f'<td style="{_VALUE_STYLE}">{_folded(value)}</td>' for value in values
        )
        rows.append(f"<tr><td>{label}</td>{cells}</tr>")
    rows.append("</table></div>")
    return "\n".join(rows)


def _folded(value: str) -> str:
    if len(value) <= _VALUE_CHARS:
        return e(value)
    return (
        f"<details><summary>{e(value[:_VALUE_CHARS])}…</summary>"
        f"<div>{e(value)}</div></details>"
    )
