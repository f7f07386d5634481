"""The evaluation report as one static HTML page (no server, no network).

Every text from the data goes through :func:`tlsk.evaluation.report._page.e`.
"""

from __future__ import annotations

from tlsk.evaluation.report._charts import reliability_diagram, training_curves
from tlsk.evaluation.report._config import configuration_table
from tlsk.evaluation.report._evaluation import EvaluationData, ImageRow
from tlsk.evaluation.report._page import e, figure, gallery, page

# Above this many classes the confusion matrix's columns are numbered.
_NUMBERED_COLUMNS = 12
_NUMBERED = ' class="numbered"'
# The summary names this many of the worst classes.
_WORST = 3


def render(
    data: EvaluationData,
    thumbnails: dict[int, str | None],
    *,
    title: str,
    metadata: dict | None,
    written: str,
    top_losses: list[ImageRow],
    per_cell: int,
    history: dict | None = None,
    cams: dict[int, str] | None = None,
    cam_note: str = "",
    sections: dict[str, str] | None = None,
    scripts=(),
) -> str:
    """The page. ``thumbnails``: image index -> file name under ``thumbs/``.

    ``history`` is a Keras model's ``history_`` (its training curves);
    ``cams``, image index -> the file under ``thumbs/`` of where the model
    looked, drawn over the most confident mistakes (``cam_note`` says how);
    ``sections`` holds sections made elsewhere, by name: ``"map"`` (the
    embedding map, after the most confused pairs); ``scripts`` are theirs.
    """
    sections = sections or {}
    curves = training_curves(history)
    parts = [
        _summary(data),
        _per_class(data),
        _confusion(data),
        _top_losses(top_losses, thumbnails, cams or {}, cam_note),
        _most_confused(data),
        sections.get("map", ""),
        _calibration(data),
        f'<h2 id="training">Training curves</h2>{curves}' if curves else "",
        configuration_table(metadata),
        _cells(data, thumbnails, per_cell),
        _images_table(data),
    ]
    return page(title, written, [part for part in parts if part], scripts=scripts)


def _summary(data):
    n = len(data.rows)
    mistakes = sum(not r.correct for r in data.rows)
    lines = [
        f"<p>accuracy <b>{data.accuracy:.3f}</b> on {n} images "
        f'(<a href="#top-losses">{mistakes} mistakes</a>); macro F1 '
        f"{data.averages['macro avg']['f1']:.3f}; expected calibration error "
        f'<a href="#calibration">{data.ece:.3f}</a></p>',
        "<ul>",
    ]
    scored = [
        (scores["f1"], label)
        for label, scores in data.per_class.items()
        if scores["support"] > 0
    ]
    worst = sorted(scored)[:_WORST] if len(scored) > 1 else []
    if worst:
        named = ", ".join(
            f'<a href="#class-{data.labels.index(label)}">{e(label)}</a> (F1 {f1:.2f})'
            for f1, label in worst
        )
        lines.append(f"<li>worst classes: {named}</li>")
    if data.most_confused:
        true, predicted, count = data.most_confused[0]
        t, p = data.labels.index(true), data.labels.index(predicted)
        lines.append(
            f'<li>most confused: <a href="#cell-{t}-{p}">{e(true)} taken for '
            f"{e(predicted)}, {count} {'image' if count == 1 else 'images'}</a></li>"
        )
    else:
        lines.append("<li>no mistakes</li>")
    lines.append("</ul>")
    return f'<div class="summary" id="summary">{"".join(lines)}</div>'


def _per_class(data):
    rows = [
        "<h2 id=\"per-class\">Per class</h2><table id='per-class-table'><tr><th>class"
        "</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    ]
    for i, (name, scores) in enumerate(
        [*data.per_class.items(), *data.averages.items()]
    ):
        anchor = f' id="class-{i}"' if i < len(data.labels) else ""
        rows.append(
            f"<tr{anchor}><td>{e(name)}</td><td>{scores['precision']:.3f}</td>"
            f"<td>{scores['recall']:.3f}</td><td>{scores['f1']:.3f}</td>"
            f"<td>{scores['support']}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _confusion(data):
    # Many classes: each column is headed by its class's number, which its
    # row shows beside the name (every name whole on hover).
    numbered = len(data.labels) > _NUMBERED_COLUMNS
    head = "".join(
        f'<th class="column" title="{e(label)}"><span>'
        f"{k + 1 if numbered else e(label)}</span></th>"
        for k, label in enumerate(data.labels)
    )
    note = (
        "rows: true class; columns: predicted class"
        + (", numbered as the rows" if numbered else "")
        + "; each cell holds its count, shaded by its share of the row (green: "
        "right, red: wrong); a count links to its images"
    )
    rows = [
        '<h2 id="confusion-matrix">Confusion matrix</h2>',
        f'<p class="note">{note}</p>',
        '<div class="wide">',
        f"<table id='confusion'{_NUMBERED if numbered else ''}>"
        f"<tr><th>true \\ predicted</th>{head}</tr>",
    ]
    for t, label in enumerate(data.labels):
        total = int(data.matrix[t].sum())
        cells = []
        for p in range(len(data.labels)):
            count = int(data.matrix[t, p])
            share = count / total if total else 0.0
            kind = "zero" if not count else "diag" if t == p else "off"
            text = f'<a href="#cell-{t}-{p}">{count}</a>' if count else "0"
            cells.append(
                f'<td class="{kind}" style="background: {_shade(t == p, share)}" '
                f'title="{count} of {total} ({share:.0%})">{text}</td>'
            )
        number = f"{t + 1}. " if numbered else ""
        rows.append(
            f'<tr><th class="row" title="{e(label)}">{number}{e(label)}</th>'
            f"{''.join(cells)}</tr>"
        )
    rows.append("</table></div>")
    return "\n".join(rows)


def _shade(right, share):
    """A cell's background: green (right) or red (wrong), as opaque as its share."""
    colour = "46, 160, 67" if right else "215, 58, 73"
    return f"rgba({colour}, {0.85 * share:.3f})"


def _figure(row: ImageRow, thumbnails) -> str:
    caption = (
        f"true {e(row.true)}<br>predicted {e(row.predicted)} ({row.p_predicted:.2f})"
    )
    return figure(thumbnails.get(row.index), row.name, caption, name=row.name)


def _gallery_section(title, anchor, rows, thumbnails, note, left_out=0, level=2):
    figures = [_figure(row, thumbnails) for row in rows]
    return gallery(title, anchor, figures, note, left_out, level=level)


def _top_losses(rows, thumbnails, cams, cam_note):
    note = (
        f"the {len(rows)} mistakes with the largest loss (-log of the "
        "probability given to the true class), largest first"
    )
    if not cams:
        section = _gallery_section(
            "Most confident mistakes", "top-losses", rows, thumbnails, note
        )
        return section + (f'<p class="note">{e(cam_note)}</p>' if cam_note else "")
    figures = []
    for row in rows:
        caption = (
            f"true {e(row.true)}<br>predicted {e(row.predicted)} "
            f"({row.p_predicted:.2f})"
        )
        figures.append(
            figure(
                thumbnails.get(row.index),
                row.name,
                caption,
                name=row.name,
                overlay=cams.get(row.index),
            )
        )
    return "\n".join(
        [
            '<h2 id="top-losses">Most confident mistakes</h2>',
            f'<p class="note">{e(note)}</p>',
            '<input type="checkbox" id="show-maps" checked> '
            f'<label for="show-maps">{e(cam_note)}</label>',
            '<div class="grid">',
            *figures,
            "</div>",
        ]
    )


def _most_confused(data):
    rows = [
        '<h2 id="most-confused-pairs">Most confused pairs</h2>'
        "<table id='most-confused'><tr><th>true</th><th>predicted</th>"
        "<th>images</th></tr>"
    ]
    for true, predicted, count in data.most_confused:
        t, p = data.labels.index(true), data.labels.index(predicted)
        rows.append(
            f"<tr><td>{e(true)}</td><td>{e(predicted)}</td>"
            f'<td><a href="#cell-{t}-{p}">{count}</a></td></tr>'
        )
    if not data.most_confused:
        rows.append("<tr><td colspan='3'>no mistakes</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _calibration(data):
    return (
        '<h2 id="calibration">Calibration</h2>'
        f'<p class="note">expected calibration error {data.ece:.3f}: the mean '
        f"gap between confidence and accuracy, over {len(data.calibration)} bins "
        "of confidence; the dashed line is perfect calibration, and the number "
        "under each bin is how many images it holds</p>"
        + reliability_diagram(data.calibration)
    )


def _cells(data, thumbnails, per_cell):
    parts = ['<h2 id="cells">Images of each cell</h2>']
    for t, true in enumerate(data.labels):
        for p, predicted in enumerate(data.labels):
            rows = data.cell(t, p)
            if not rows:
                continue
            shown = sorted(rows, key=lambda r: (-r.loss, r.index))[:per_cell]
            parts.append(
                _gallery_section(
                    f"true {true}, predicted {predicted}",
                    f"cell-{t}-{p}",
                    shown,
                    thumbnails,
                    f"{len(rows)} images, the least confident in the true class first",
                    left_out=len(rows) - len(shown),
                    level=3,
                )
            )
    return "\n".join(parts)


def _images_table(data):
    head = (
        '<tr><th data-sort="text">file</th><th data-sort="text">true</th>'
        '<th data-sort="text">predicted</th><th data-sort="number">p</th>'
        '<th data-sort="number">loss</th></tr>'
    )
    rows = [
        '<h2 id="every-image">Every image</h2>',
        '<p class="note">click a column header to sort</p>',
        f"<table id='images'><thead>{head}</thead><tbody>",
    ]
    for r in data.rows:
        rows.append(
            f'<tr><td data-value="{e(r.name)}">{e(r.name)}</td>'
            f'<td data-value="{e(r.true)}">{e(r.true)}</td>'
            f'<td data-value="{e(r.predicted)}">{e(r.predicted)}</td>'
            f'<td data-value="{r.p_predicted:.6f}">{r.p_predicted:.3f}</td>'
            f'<td data-value="{r.loss:.6f}">{r.loss:.3f}</td></tr>'
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)
