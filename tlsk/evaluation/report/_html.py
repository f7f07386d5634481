"""The evaluation report as one static HTML page (no server, no network).

Every text from the data goes through :func:`tlsk.evaluation.report._page.e`.
"""

from __future__ import annotations

import html
import json

from tlsk.evaluation.report._evaluation import EvaluationData, ImageRow
from tlsk.evaluation.report._page import e, figure, gallery, page


def render(
    data: EvaluationData,
    thumbnails: dict[int, str | None],
    *,
    title: str,
    metadata: dict | None,
    written: str,
    top_losses: list[ImageRow],
    per_cell: int,
) -> str:
    """The page. ``thumbnails``: image index -> file name under ``thumbs/``."""
    sections = [
        _summary(data),
        _per_class(data),
        _confusion(data),
        _gallery_section(
            "Most confident mistakes",
            "top-losses",
            top_losses,
            thumbnails,
            f"the {len(top_losses)} mistakes with the largest loss (-log of the "
            "probability given to the true class), largest first",
        ),
        _most_confused(data),
        _calibration(data),
        _cells(data, thumbnails, per_cell),
        _images_table(data),
        _metadata(metadata),
    ]
    return page(title, written, sections)


def _summary(data):
    n = len(data.rows)
    mistakes = sum(not r.correct for r in data.rows)
    return (
        f'<p id="summary">accuracy <b>{data.accuracy:.3f}</b> on {n} images '
        f"({mistakes} mistakes); expected calibration error {data.ece:.3f}</p>"
    )


def _per_class(data):
    rows = [
        "<h2>Per class</h2><table id='per-class'><tr><th>class</th><th>precision"
        "</th><th>recall</th><th>F1</th><th>support</th></tr>"
    ]
    for name, scores in [*data.per_class.items(), *data.averages.items()]:
        rows.append(
            f"<tr><td>{e(name)}</td><td>{scores['precision']:.3f}</td>"
            f"<td>{scores['recall']:.3f}</td><td>{scores['f1']:.3f}</td>"
            f"<td>{scores['support']}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _confusion(data):
    head = "".join(f"<th>{e(label)}</th>" for label in data.labels)
    rows = [
        "<h2>Confusion matrix</h2>",
        '<p class="note">rows: true class; columns: predicted class; a cell\'s '
        "shade is its share of the row (green: right, red: wrong); a count "
        "links to its images</p>",
        f"<table id='confusion'><tr><th>true \\ predicted</th>{head}</tr>",
    ]
    for t, label in enumerate(data.labels):
        total = int(data.matrix[t].sum())
        cells = []
        for p in range(len(data.labels)):
            count = int(data.matrix[t, p])
            share = count / total if total else 0.0
            kind = "diag" if t == p else "off" if count else ""
            text = f'<a href="#cell-{t}-{p}">{count}</a>' if count else "0"
            cells.append(
                f'<td class="{kind}" style="background: {_shade(t == p, share)}" '
                f'title="{count} of {total} ({share:.0%})">{text}</td>'
            )
        rows.append(f"<tr><th>{e(label)}</th>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _shade(right, share):
    """A cell's background: green (right) or red (wrong), as opaque as its share."""
    colour = "46, 160, 67" if right else "215, 58, 73"
    return f"rgba({colour}, {0.85 * share:.3f})"


def _figure(row: ImageRow, thumbnails) -> str:
    caption = (
        f"{e(row.name)}<br>true {e(row.true)}, "
        f"predicted {e(row.predicted)} ({row.p_predicted:.2f})"
    )
    return figure(thumbnails.get(row.index), row.name, caption)


def _gallery_section(title, anchor, rows, thumbnails, note, left_out=0):
    figures = [_figure(row, thumbnails) for row in rows]
    return gallery(title, anchor, figures, note, left_out)


def _most_confused(data):
    rows = [
        "<h2>Most confused pairs</h2><table id='most-confused'><tr><th>true</th>"
        "<th>predicted</th><th>images</th></tr>"
    ]
    for true, predicted, count in data.most_confused:
        rows.append(
            f"<tr><td>{e(true)}</td><td>{e(predicted)}</td><td>{count}</td></tr>"
        )
    if not data.most_confused:
        rows.append("<tr><td colspan='3'>no mistakes</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _calibration(data):
    """A reliability diagram as inline SVG: accuracy against confidence per bin."""
    size, pad = 240, 30
    plot = size - 2 * pad

    def x(v):
        return pad + v * plot

    def y(v):
        return size - pad - v * plot

    bars = []
    for b in data.calibration:
        if not b.count:
            continue
        width = (b.high - b.low) * plot
        bars.append(
            f'<rect x="{x(b.low):.1f}" y="{y(b.accuracy):.1f}" width="{width:.1f}" '
            f'height="{b.accuracy * plot:.1f}" fill="#6b9bd1" stroke="#fff">'
            f"<title>{b.low:.1f}-{b.high:.1f}: {b.count} images, accuracy "
            f"{b.accuracy:.2f}, confidence {b.confidence:.2f}</title></rect>"
        )
    svg = (
        f'<svg id="reliability" width="{size}" height="{size}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img">'
        + f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" '
        'stroke="#bbb"/>'
        + "".join(bars)
        + f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#999" '
        'stroke-dasharray="4"/>'
        + f'<text x="{size / 2}" y="{size - 5}" text-anchor="middle" '
        'font-size="11">confidence</text>'
        + f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 '
        f'{size / 2})" text-anchor="middle">accuracy</text></svg>'
    )
    return (
        "<h2>Calibration</h2>"
        f'<p class="note">expected calibration error {data.ece:.3f}: the mean '
        "gap between confidence and accuracy, over 10 bins of confidence; the "
        "dashed line is perfect calibration</p>" + svg
    )


def _cells(data, thumbnails, per_cell):
    parts = ["<h2>Images of each cell</h2>"]
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
        "<h2>Every image</h2>",
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


def _metadata(metadata):
    if not metadata:
        return ""
    text = json.dumps(metadata, indent=1, sort_keys=True, default=str)
    escaped = html.escape(text, quote=False)  # text, not an attribute
    return f"<h2>What made the model</h2><pre id='metadata'>{escaped}</pre>"
