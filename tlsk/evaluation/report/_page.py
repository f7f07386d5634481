"""What every tlsk report page shares: its style, its one script, escaping, the
image figure, and how a report folder is written (complete, or not at all).

Every text that comes from the data (class names, file names, metadata) goes
through :func:`e`; a page's only script is its own, inline: the sorting of
its tables.
"""

from __future__ import annotations

import html
import os

from tlsk._util.files import resolved
from tlsk._util.output_folders import check_replaceable_folder, folder_writer
from tlsk.images.folders import printable

# What a report folder's marker says it is (tlsk._util.output_folders).
REPORT_KIND = "report"

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 0.2em 0.6em; border: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th[data-sort] { cursor: pointer; background: #f4f4f4; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 170px; font-size: 12px; overflow-wrap: anywhere; }
figure img { display: block; max-width: 160px; max-height: 160px; }
.missing { width: 160px; height: 60px; background: #eee; }
.note { color: #666; } pre { background: #f6f6f6; padding: 1em; overflow: auto; }
"""

# Sorts the table whose header cell was clicked: numbers as numbers.
SORT_SCRIPT = """
document.querySelectorAll("th[data-sort]").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var column = th.cellIndex, numeric = th.dataset.sort === "number";
    var down = th.dataset.order !== "down";
    th.dataset.order = down ? "down" : "up";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return down ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def e(value) -> str:
    """``value`` as HTML text or attribute value.

    Characters a page cannot show are spelled out first
    (:func:`tlsk.images.folders.printable`): a file name's bytes that are not UTF-8
    as ``\\xff``, control characters as ``\\n`` or ``\\x1b``. So every
    name reads on the page, and the page always encodes as UTF-8.
    """
    return html.escape(printable(value), quote=True)


def page(title: str, written: str, sections: list[str]) -> str:
    """A whole page: title, when it was written, the sections, the script."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{e(title)}</h1>",
            f'<p class="note">written {e(written)}</p>',
            *sections,
            f"<script>{SORT_SCRIPT}</script>",
            "</body></html>",
        ]
    )


def figure(thumbnail: str | None, alt: str, caption_html: str) -> str:
    """One thumbnail (a file under ``thumbs/``, or None) with its caption."""
    picture = (
        f'<img src="thumbs/{e(thumbnail)}" alt="{e(alt)}" loading="lazy">'
        if thumbnail
        else '<div class="missing">no thumbnail</div>'
    )
    return f"<figure>{picture}<figcaption>{caption_html}</figcaption></figure>"


def gallery(title, anchor, figures, note, left_out=0) -> str:
    """A titled grid of figures, with how many were left out."""
    parts = [f'<h2 id="{e(anchor)}">{e(title)}</h2>', f'<p class="note">{e(note)}</p>']
    if figures:
        parts += ['<div class="grid">', *figures, "</div>"]
    else:
        parts.append("<p>none</p>")
    if left_out:
        parts.append(f'<p class="note">{left_out} more not shown</p>')
    return "\n".join(parts)


def check_report_folder(out, force, inputs=(), force_flag="force=True") -> None:
    """Raise unless ``out`` may be written as a report folder (see below)."""
    check_replaceable_folder(
        out, REPORT_KIND, force=force, inputs=inputs, force_flag=force_flag
    )


def write_report_folder(out, force, build, inputs=()) -> str:
    """Write a report folder with ``build(folder)``; the path of its index.html.

    ``build`` fills a temporary folder beside ``out`` (``thumbs/`` exists
    already) and returns the page's HTML. The folder takes ``out``'s name only
    once complete, so a failed or interrupted report leaves ``out`` as it was.
    An existing ``out`` is replaced only with ``force``, and only if it is a
    report that tlsk wrote, holding nothing else; never the data the report
    is made from (``inputs``: its folders or files), nor a folder that holds
    them or lies inside them.
    """
    check_report_folder(out, force, inputs)
    out = resolved(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with folder_writer(out, REPORT_KIND, force=force, inputs=inputs) as work:
        os.mkdir(os.path.join(work, "thumbs"))
        html_text = build(work)
        with open(os.path.join(work, "index.html"), "w", encoding="utf-8") as file:
            file.write(html_text)
    return os.path.join(out, "index.html")
