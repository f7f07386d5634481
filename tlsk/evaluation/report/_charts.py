"""The report's charts as inline SVG: the reliability diagram and training curves.

Drawn here, in the page, so a report needs no plotting library and fetches
nothing. Every text from the data goes through
:func:`tlsk.evaluation.report._page.e`.
"""

from __future__ import annotations

import math

from tlsk.evaluation.report._page import e

_SVG = 'xmlns="http://www.w3.org/2000/svg" role="img" font-family="sans-serif"'
_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# Lines of the training curves: training solid, validation dashed, by metric.
_TRAIN, _VALID = "#1f6fb2", "#d9480f"


def reliability_diagram(bins) -> str:
    """Accuracy against confidence per bin, ticked, with each bin's count.

    ``bins`` are :class:`~tlsk.evaluation.report._evaluation.CalibrationBin`.
    The bars' heights are the bins' accuracies; the count of images in each
    bin is written under it, so an empty or thin bin is seen as such.
    """
    left, top, plot = 46, 12, 260
    width, height = left + plot + 14, top + plot + 58

    def x(v):
        return left + v * plot

    def y(v):
        return top + (1 - v) * plot

    parts = [
        f'<svg id="reliability" width="{width}" height="{height}" {_SVG}>',
        f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" '
        'stroke="#bbb"/>',
    ]
    for tick in _TICKS:
        parts += [
            f'<line x1="{x(tick):.1f}" y1="{y(0)}" x2="{x(tick):.1f}" '
            f'y2="{y(0) + 4}" stroke="#888"/>',
            f'<text x="{x(tick):.1f}" y="{y(0) + 15}" font-size="10" '
            f'text-anchor="middle">{tick:.1f}</text>',
            f'<line x1="{left - 4}" y1="{y(tick):.1f}" x2="{left}" '
            f'y2="{y(tick):.1f}" stroke="#888"/>',
            f'<text x="{left - 7}" y="{y(tick) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{tick:.1f}</text>',
        ]
    for b in bins:
        middle = x((b.low + b.high) / 2)
        parts.append(
            f'<text class="bin-count" x="{middle:.1f}" y="{y(0) + 29}" '
            f'font-size="9" fill="#555" text-anchor="middle">{b.count}</text>'
        )
        if not b.count:
            continue
        parts.append(
            f'<rect x="{x(b.low):.1f}" y="{y(b.accuracy):.1f}" '
            f'width="{(b.high - b.low) * plot:.1f}" height="{b.accuracy * plot:.1f}" '
            'fill="#6b9bd1" stroke="#fff">'
            f"<title>{b.low:.1f}-{b.high:.1f}: {b.count} images, accuracy "
            f"{b.accuracy:.2f}, confidence {b.confidence:.2f}</title></rect>"
        )
    parts += [
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#999" '
        'stroke-dasharray="4"/>',
        f'<text x="{left - 7}" y="{y(0) + 29}" font-size="9" fill="#555" '
        'text-anchor="end">images</text>',
        f'<text x="{x(0.5)}" y="{height - 6}" text-anchor="middle" '
        'font-size="11">confidence (probability of the predicted class)</text>',
        f'<text x="12" y="{y(0.5)}" font-size="11" transform="rotate(-90 12 '
        f'{y(0.5)})" text-anchor="middle">accuracy</text></svg>',
    ]
    return "".join(parts)


def training_curves(history) -> str:
    """One chart per metric of a Keras model's ``history_``, phases in a row.

    ``history`` is ``{phase: {metric: [one value per epoch]}}`` as
    :class:`tlsk.KerasFineTuneClassifier` records it; ``val_<metric>`` is
    drawn dashed beside ``<metric>``, and a vertical line marks where each
    phase begins. An empty or malformed history gives "".
    """
    if not isinstance(history, dict) or not history:
        return ""
    metrics = []
    for curves in history.values():
        for name in curves if isinstance(curves, dict) else ():
            base = name.removeprefix("val_")
            if base not in metrics and base != "learning_rate":
                metrics.append(base)
    charts = [_curve_chart(history, metric) for metric in metrics]
    charts = [chart for chart in charts if chart]
    if not charts:
        return ""
    legend = (
        f'<p class="note"><span style="color:{_TRAIN}">&#9473; training</span> '
        f'&nbsp; <span style="color:{_VALID}">&#9476; validation</span> &nbsp; '
        "the grey lines mark where each phase begins</p>"
    )
    return legend + '<div class="grid-charts">' + "".join(charts) + "</div>"


def _curve_chart(history, metric) -> str:
    lines = {"train": [], "valid": []}
    starts, offset = [], 0
    for phase, curves in history.items():
        if not isinstance(curves, dict):
            continue
        values = _finite(curves.get(metric, []))
        valid = _finite(curves.get("val_" + metric, []))
        epochs = max(len(values), len(valid))
        if not epochs:
            continue
        starts.append((offset, str(phase)))
        for kind, curve in (("train", values), ("valid", valid)):
            lines[kind] += [
                (offset + i, v) for i, v in enumerate(curve) if v is not None
            ]
        offset += epochs
    points = lines["train"] + lines["valid"]
    if not points:
        return ""
    n_epochs = max(epoch for epoch, _ in points) + 1
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    left, top, plot_w, plot_h = 44, 18, 260, 140

    def x(epoch):
        return left + (epoch / max(n_epochs - 1, 1)) * plot_w

    def y(value):
        return top + (high - value) / (high - low) * plot_h

    parts = [
        f'<svg class="curve" width="{left + plot_w + 12}" height="{top + plot_h + 34}" '
        f'{_SVG}><text x="{left}" y="12" font-size="11" font-weight="bold">'
        f"{e(metric)}</text>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#ccc"/>',
    ]
    for value in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="{left - 5}" y="{y(value) + 3:.1f}" font-size="9" '
            f'text-anchor="end">{_short(value)}</text>'
        )
    for offset, phase in starts:
        parts.append(
            f'<line x1="{x(offset):.1f}" y1="{top}" x2="{x(offset):.1f}" '
            f'y2="{top + plot_h}" stroke="#bbb"/><text x="{x(offset) + 3:.1f}" '
            f'y="{top + plot_h - 4}" font-size="9" fill="#777">{e(phase)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 28}" font-size="10" '
        f'text-anchor="middle">epoch (1 to {n_epochs})</text>'
    )
    for kind, colour, dash in (("train", _TRAIN, ""), ("valid", _VALID, "5 3")):
        if not lines[kind]:
            continue
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in lines[kind])
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="1.6" stroke-dasharray="{dash}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _finite(values):
    """The values as floats, None where one is not a finite number."""
    out = []
    for value in values if isinstance(values, list | tuple) else ():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        out.append(number if math.isfinite(number) else None)
    return out


def _short(value) -> str:
    return f"{value:.3g}"
