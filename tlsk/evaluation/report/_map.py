"""The map of the images as a page section: an inline SVG, one circle an image.

:func:`map_section` draws coordinates in [0, 1]
(:func:`tlsk.evaluation.embedding_map.embedding_map`) as one ``<circle>`` per
image, filled by its label's colour, a black ring around a mistake
(predicted label not the label) and a coloured ring around a marked image
(a suspect, a near duplicate). :data:`MAP_SCRIPT` shows a tooltip with the
image's thumbnail, file name and labels when a point is hovered or
focused, and a click (or Enter) opens its larger view under ``images/``;
a class hovered or focused in the legend fades the others.
Nothing is fetched: the thumbnails are the report's ``thumbs/``.

Everything a point says is in its short ``data-*`` attributes, escaped by
:func:`tlsk.evaluation.report._page.e`; class names are in the legend's, and
the script builds the tooltip from DOM nodes and ``textContent`` only, so a
name is always text. A point is about 95 bytes plus its file name: 10,000
images named in 25 characters make a section of 1.2 MB that Chromium loads
in 0.14 s (``benchmarks/README.md``).
"""

from __future__ import annotations

import collections
import colorsys
import math

import numpy as np

from tlsk.evaluation.report._page import e

__all__ = ["MAP_SCRIPT", "class_colours", "map_section"]

# Kelly's colours of maximum contrast (Kelly, 1965), without white and black:
# twenty hues that stay apart on white, in his order (the most distinct first).
KELLY = (
    "#f3c300",
    "#875692",
    "#f38400",
    "#a1caf1",
    "#be0032",
    "#c2b280",
    "#848482",
    "#008856",
    "#e68fac",
    "#0067a5",
    "#f99379",
    "#604e97",
    "#f6a600",
    "#b3446c",
    "#dcd300",
    "#882d17",
    "#8db600",
    "#654522",
    "#e25822",
    "#2b3d26",
)

# The ring of each kind of mark, in order of first appearance; then cycled.
MARK_COLOURS = ("#d6007a", "#0050d0", "#008a00", "#7a3cc8")

SIDE = 720  # the map's square, in SVG units (about pixels on a wide page)
MARGIN = 10

DEFAULT_NOTE = (
    "Each point is an image, near the images whose features are near; its "
    "colour is its label. Hover a point, or Tab to the map and step with the "
    "arrow keys, to see its thumbnail, file and labels; a click (or Enter) "
    "opens the image."
)

# The tooltip of the map's points: built from DOM nodes and textContent, never
# from HTML, so that a file or class name is always text. One tabbable point a
# map (the arrow keys move between points): Tab does not stop at each image.
MAP_SCRIPT = """
document.querySelectorAll(".tlsk-map").forEach(function (map) {
  var svg = map.querySelector("svg"), box = map.querySelector(".map-box");
  var tip = map.querySelector(".map-tip"), names = {};
  map.querySelectorAll(".map-legend li[data-k]").forEach(function (item) {
    names[item.dataset.k] = item.dataset.name;
  });
  var predicted = svg.hasAttribute("data-predicted");
  var points = Array.prototype.slice.call(svg.querySelectorAll("circle[data-i]"));
  points.forEach(function (point, k) {
    point.setAttribute("tabindex", k ? "-1" : "0");
  });
  function line(text, name) {
    var div = document.createElement("div");
    div.textContent = text;
    if (name) { div.className = name; }
    return div;
  }
  function show(point) {
    var d = point.dataset;
    while (tip.firstChild) { tip.removeChild(tip.firstChild); }
    if (d.s) {
      var img = document.createElement("img");
      img.alt = d.n;
      img.src = "thumbs/" + encodeURIComponent(d.s);
      tip.appendChild(img);
    } else {
      tip.appendChild(line("no thumbnail", "tip-missing"));
    }
    tip.appendChild(line(d.n, "tip-name"));
    tip.appendChild(line("label: " + names[d.t]));
    if (predicted && d.p === undefined) {
      tip.appendChild(line("predicted: the same"));
    } else if (predicted) {
      tip.appendChild(line("predicted: " + names[d.p], "tip-wrong"));
    }
    if (d.m) { tip.appendChild(line(d.m, "tip-mark")); }
    tip.hidden = false;
    var at = point.getBoundingClientRect(), frame = box.getBoundingClientRect();
    var left = at.right - frame.left + 8, top = at.top - frame.top - 8;
    if (left + tip.offsetWidth > box.clientWidth) {
      left = Math.max(0, at.left - frame.left - tip.offsetWidth - 8);
    }
    top = Math.max(0, Math.min(top, box.clientHeight - tip.offsetHeight));
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }
  function hide() { tip.hidden = true; }
  function pointOf(event) {
    var target = event.target;
    return target.dataset && target.dataset.i !== undefined ? target : null;
  }
  svg.addEventListener("mouseover", function (event) {
    var point = pointOf(event);
    if (point) { show(point); }
  });
  svg.addEventListener("mouseout", function (event) {
    if (pointOf(event) && document.activeElement !== event.target) { hide(); }
  });
  svg.addEventListener("focusin", function (event) {
    var point = pointOf(event);
    if (point) { show(point); }
  });
  svg.addEventListener("focusout", hide);
  function open(point) {
    if (point.dataset.s) {
      window.open("images/" + encodeURIComponent(point.dataset.s), "_blank");
    }
  }
  svg.addEventListener("click", function (event) {
    var point = pointOf(event);
    if (point) { open(point); }
  });
  svg.addEventListener("keydown", function (event) {
    var point = pointOf(event);
    if (!point) { return; }
    if (event.key === "Escape") { hide(); return; }
    if (event.key === "Enter") { open(point); return; }
    var step = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[event.key];
    if (!step) { return; }
    event.preventDefault();
    var next = points[(points.indexOf(point) + step + points.length) % points.length];
    point.setAttribute("tabindex", "-1");
    next.setAttribute("tabindex", "0");
    next.focus();
  });
  // A class of the legend, hovered or focused: the other classes fade.
  var rings = Array.prototype.slice.call(svg.querySelectorAll("circle[data-r]"));
  function only(k) {
    points.forEach(function (point) {
      point.classList.toggle("faded", k !== null && point.dataset.t !== k);
    });
    rings.forEach(function (ring) {
      ring.classList.toggle("faded", k !== null && ring.dataset.r !== k);
    });
  }
  map.querySelectorAll(".map-legend li[data-k]").forEach(function (item) {
    item.setAttribute("tabindex", "0");
    item.addEventListener("mouseenter", function () { only(item.dataset.k); });
    item.addEventListener("focus", function () { only(item.dataset.k); });
    item.addEventListener("mouseleave", function () { only(null); });
    item.addEventListener("blur", function () { only(null); });
  });
});
"""

# The map's own rules: in the SVG's style element, which applies to the page.
_STYLE = """
.tlsk-map { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.map-box { position: relative; flex: 0 1 720px; }
.map-box svg { display: block; width: 100%; height: auto; background: #fafafa;
  border: 1px solid #ddd; }
.map-box circle[data-i] { stroke: #fff; stroke-width: 0.6; }
.map-box circle[data-p] { stroke: #000; stroke-width: 1.8; }
.map-box circle[data-i]:hover, .map-box circle[data-i]:focus { stroke: #000;
  stroke-width: 3; outline: none; }
.map-box .rings circle { fill: none; stroke-width: 2; pointer-events: none; }
.map-box circle.faded { opacity: 0.1; }
.map-legend li[data-k] { cursor: default; }
.map-tip { position: absolute; z-index: 2; background: #fff; border: 1px solid #999;
  box-shadow: 0 2px 6px rgba(0, 0, 0, 0.25); padding: 6px; font-size: 12px;
  min-width: 164px; width: max-content; max-width: 320px; pointer-events: none;
  overflow-wrap: anywhere; }
.map-tip img { display: block; max-width: 160px; max-height: 160px; }
.tip-name { font-weight: bold; font-family: ui-monospace, monospace; }
.tip-wrong { color: #b00020; } .tip-mark { color: #d6007a; }
.tip-missing { background: #eee; color: #777; padding: 1em 0; text-align: center; }
.map-box circle[data-s] { cursor: pointer; }
.map-legend { flex: 1 1 180px; list-style: none; margin: 0; padding: 0;
  max-height: 720px; overflow: auto; font-size: 13px; }
.map-legend li { white-space: nowrap; } .map-legend svg { vertical-align: middle; }
"""


def class_colours(n: int) -> list[str]:
    """``n`` fill colours: Kelly's twenty, or for more, hues a golden angle apart.

    Beyond twenty classes no palette keeps every pair far apart; the golden
    angle (about 137.5 degrees) puts each new hue in the widest gap left,
    and four lightnesses in turn separate hues that come close (50 classes:
    no two closer than a CIELAB distance of 7.8; Kelly's twenty: 15).
    """
    if n <= len(KELLY):
        return list(KELLY[:n])
    golden = 360 * (1 - 1 / ((1 + math.sqrt(5)) / 2))
    colours = []
    for k in range(n):
        hue = (k * golden + 15) % 360 / 360
        lightness = (0.35, 0.5, 0.65, 0.45)[k % 4]
        red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.75)
        colours.append(
            f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
        )
    return colours


def map_section(
    coords,
    *,
    names,
    labels,
    predicted=None,
    indices=None,
    marks=None,
    thumbnails=None,
    classes=None,
    title="Map of the images",
    note=DEFAULT_NOTE,
    anchor="map",
) -> str:
    """The map as HTML: a heading, a note, the SVG of the points and a legend.

    Parameters
    ----------
    coords : array-like of shape (n_mapped, 2)
        Each mapped image's place, in [0, 1] (``embedding_map``'s); the
        second coordinate grows upwards.
    names : sequence of str
        The file name (or any name) of every image, by image index.
    labels : sequence
        The label of every image, by image index; a point's colour.
    predicted : sequence, optional
        The predicted label of every image; a point whose prediction is not
        its label gets a black ring.
    indices : array-like of shape (n_mapped,), optional
        The image index of each row of ``coords`` (``embedding_map``'s
        ``mapped``); default: ``coords`` has a row for every image, in order.
    marks : dict of int to str, optional
        Image index -> what it is (``"suspect"``, ``"near duplicate"``): a
        ring of that kind's colour, its text in the tooltip and the legend.
        Marks of images not on the map are left out.
    thumbnails : dict of int to (str or None), optional
        Image index -> its thumbnail's file name under ``thumbs/``.
    classes : sequence, optional
        The classes in legend (and colour) order, such as a model's
        ``classes_``; labels not in it follow, sorted. Default: the sorted
        labels and predictions.
    title, note : str
        The heading and the line under it (text, escaped). The note says
        what the vectors are and how they were laid out (``image_vectors``'s
        ``kind``, ``embedding_map``'s ``how``), and whether a sample is shown.
    anchor : str, default="map"
        The heading's id.

    Returns
    -------
    str
        HTML that starts with ``<h2 id="map">``; the page must include
        :data:`MAP_SCRIPT` for the tooltips.

    Examples
    --------
    >>> html = map_section(
    ...     [[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]],
    ...     names=["a.jpg", "b.jpg", "<b>.jpg"],
    ...     labels=["cat", "dog", "dog"],
    ...     predicted=["cat", "cat", "dog"],
    ...     marks={2: "suspect"},
    ...     thumbnails={0: "0.jpg"},
    ... )
    >>> html.startswith('<h2 id="map">'), html.count("<circle data-i="), "<b>" in html
    (True, 3, False)
    """
    names, labels = list(names), list(labels)
    n = len(names)
    coords, indices = _check_points(coords, indices, n)
    if len(labels) != n:
        raise ValueError(
            f"labels must have one label per name ({n}); received {len(labels)}"
        )
    if predicted is not None:
        predicted = list(predicted)
        if len(predicted) != n:
            raise ValueError(
                f"predicted must have one label per name ({n}); received "
                f"{len(predicted)}"
            )
    mapped = indices.tolist()
    marks = {int(i): str(m) for i, m in (marks or {}).items() if m}
    marks = {i: marks[i] for i in mapped if i in marks}  # only what is drawn
    thumbnails = thumbnails or {}
    order = _class_order(labels, predicted, classes)
    code = {label: k for k, label in enumerate(order)}
    colours = class_colours(len(order))
    kinds = collections.Counter(marks.values())
    ring = {kind: MARK_COLOURS[k % len(MARK_COLOURS)] for k, kind in enumerate(kinds)}
    radius = _radius(len(mapped))

    wrong = np.zeros(len(mapped), dtype=bool)
    if predicted is not None:
        wrong = np.array([labels[i] != predicted[i] for i in mapped], dtype=bool)
    marked = np.array([i in marks for i in mapped], dtype=bool)
    points, rings = [], []
    # Drawn last, on top: the mistakes, then the marked images.
    for row in np.lexsort((indices, wrong, marked)).tolist():
        i = mapped[row]
        x, y = _place(coords[row])
        point = f'<circle data-i="{i}" cx="{x}" cy="{y}" r="{radius:g}" '
        point += f'data-t="{code[labels[i]]}" data-n="{e(names[i])}"'
        if wrong[row]:
            point += f' data-p="{code[predicted[i]]}"'
        if thumbnails.get(i):
            point += f' data-s="{e(thumbnails[i])}"'
        if i in marks:
            point += f' data-m="{e(marks[i])}"'
            rings.append(
                f'<circle cx="{x}" cy="{y}" r="{radius + 3.5:g}" '
                f'stroke="{ring[marks[i]]}" data-r="{code[labels[i]]}"/>'
            )
        points.append(point + "/>")
    fills = "".join(
        f'.map-box [data-t="{k}"]{{fill:{colour}}}' for k, colour in enumerate(colours)
    )
    counts = np.bincount([code[labels[i]] for i in mapped], minlength=len(order))
    legend = _legend(
        order,
        colours,
        counts,
        mistakes=int(wrong.sum()) if predicted is not None else None,
        rings={kind: (ring[kind], count) for kind, count in kinds.items()},
    )
    svg = (
        f'<svg viewBox="0 0 {SIDE} {SIDE}" role="img" '
        f'aria-label="{e(title)}: {len(mapped):,} images"'
        + (" data-predicted" if predicted is not None else "")
        + f"><style>{_STYLE}{fills}</style>"
        + '<g class="points">'
        + "".join(points)
        + '</g><g class="rings">'
        + "".join(rings)
        + "</g></svg>"
    )
    parts = [
        f'<h2 id="{e(anchor)}">{e(title)}</h2>',
        f'<p class="note">{e(note)}</p>',
        '<div class="tlsk-map"><div class="map-box">',
        svg,
        '<div class="map-tip" role="tooltip" hidden></div></div>',
        legend,
        "</div>",
    ]
    return "\n".join(parts)


def _check_points(coords, indices, n):
    """``coords`` as floats (n_mapped, 2) in [0, 1] and ``indices`` as ints."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(
            f"coords must have shape (n_mapped, 2); received {coords.shape}"
        )
    if not (np.isfinite(coords).all() and (coords >= 0).all() and (coords <= 1).all()):
        raise ValueError(
            "coords must lie in [0, 1], as embedding_map gives them; received "
            f"values from {np.nanmin(coords)} to {np.nanmax(coords)}"
        )
    if indices is None:
        if len(coords) != n:
            raise ValueError(
                f"coords has {len(coords)} rows for {n} names; pass indices= "
                "(embedding_map's mapped) to say which image each row is"
            )
        return coords, np.arange(n)
    indices = np.asarray(indices)
    if indices.shape != (len(coords),) or (
        len(indices) and indices.dtype.kind not in "iu"
    ):
        raise ValueError(
            f"indices must be {len(coords)} integers, one per row of coords; "
            f"received shape {indices.shape} of {indices.dtype}"
        )
    indices = indices.astype(np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(
            f"indices must lie in [0, {n}) (one per name); received values from "
            f"{indices.min()} to {indices.max()}"
        )
    if len(np.unique(indices)) != len(indices):
        raise ValueError("indices must not repeat an image")
    return coords, indices


def _class_order(labels, predicted, classes):
    """The legend's classes: ``classes`` first, then other labels, sorted."""
    seen = set(labels) | set(predicted or ())
    order = list(dict.fromkeys(classes)) if classes is not None else []
    rest = seen - set(order)
    return order + sorted(rest, key=lambda label: (str(label), repr(label)))


def _radius(n):
    """A point's radius, in SVG units: smaller as the map fills up."""
    if n <= 300:
        return 5.0
    if n <= 2000:
        return 4.0
    return 3.0 if n <= 6000 else 2.5


def _place(point):
    """SVG coordinates of a point in [0, 1]^2 (y up), one decimal."""
    span = SIDE - 2 * MARGIN
    x = MARGIN + point[0] * span
    y = MARGIN + (1 - point[1]) * span
    return f"{x:.1f}", f"{y:.1f}"


def _swatch(fill, stroke="#fff", width=0.6):
    return (
        '<svg width="14" height="14" aria-hidden="true"><circle cx="7" cy="7" r="5" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"/></svg>'
    )


def _legend(order, colours, counts, *, mistakes, rings):
    """The classes with their colour and count, then the rings."""
    items = []
    for k, (label, colour) in enumerate(zip(order, colours, strict=True)):
        items.append(
            f'<li data-k="{k}" data-name="{e(label)}">{_swatch(colour)} {e(label)} '
            f'<span class="note">{counts[k]:,}</span></li>'
        )
    if mistakes is not None:
        items.append(
            f"<li>{_swatch('#ccc', '#000', 1.8)} mistake (predicted label not the "
            f'label) <span class="note">{mistakes:,}</span></li>'
        )
    for kind, (colour, count) in rings.items():
        items.append(
            f"<li>{_swatch('none', colour, 2)} {e(kind)} "
            f'<span class="note">{count:,}</span></li>'
        )
    return '<ul class="map-legend">' + "".join(items) + "</ul>"
