"""What every tlsk report page shares: its style, its one script, escaping, the
image figure, and how a report folder is written (complete, or not at all).

Every text that comes from the data (class names, file names, metadata) goes
through :func:`e`; a page's only script is its own, inline: the sorting of
its tables.
"""

from __future__ import annotations

import html
import os
import re

from tlsk._util.files import resolved
from tlsk._util.output_folders import check_replaceable_folder, folder_writer
from tlsk.images.folders import printable

# What a report folder's marker says it is (tlsk._util.output_folders).
REPORT_KIND = "report"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #222; }
main { margin: 0 auto 4em; max-width: 76em; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin: 0.8em 0 0.2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; scroll-margin-top: 3.2em; }
h3 { margin: 1.2em 0 0.3em; font-size: 1.05em; scroll-margin-top: 3.2em; }
nav { position: sticky; top: 0; z-index: 10; background: #fafafa;
      border-bottom: 1px solid #ddd; padding: 0.45em 1.5em; font-size: 13px;
      display: flex; flex-wrap: wrap; gap: 0.15em 1.1em; }
nav a { color: #0b5cad; text-decoration: none; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 0.2em 0.6em; border: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th[data-sort] { cursor: pointer; background: #f4f4f4; }
th[data-sort]::after { content: " \\2195"; color: #aaa; }
.wide { overflow-x: auto; max-width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, 172px); gap: 10px; }
figure { margin: 0; width: 172px; font-size: 12px; }
figure > a { display: flex; width: 172px; height: 172px; align-items: center;
             justify-content: center; background: #f2f2f2; border-radius: 3px; }
figure img { display: block; width: 164px; height: 164px; object-fit: contain; }
figcaption { margin-top: 0.25em; }
.name { display: block; white-space: nowrap; overflow: hidden;
        text-overflow: ellipsis; font-family: ui-monospace, monospace;
        direction: rtl; text-align: left; }
.missing { display: flex; width: 172px; height: 172px; align-items: center;
           justify-content: center; background: #eee; color: #777; }
.note { color: #666; } pre { background: #f6f6f6; padding: 1em; overflow: auto; }
.summary { background: #f4f8fc; border: 1px solid #d5e3f0; border-radius: 4px;
           padding: 0.6em 1em; }
.summary li { margin: 0.15em 0; }
.bad { color: #b3261e; } .good { color: #1e7b34; }
details > summary { cursor: pointer; color: #0b5cad; }
#confusion th.row { max-width: 16em; white-space: nowrap; overflow: hidden;
                    text-overflow: ellipsis; }
#confusion th.column span { display: inline-block; max-width: 9em;
                            white-space: nowrap; overflow: hidden;
                            text-overflow: ellipsis; vertical-align: bottom; }
#confusion.numbered td { padding: 0.1em 0.2em; font-size: 11px; min-width: 1.5em;
                        text-align: center; }
#confusion.numbered th.column { font-size: 11px; padding: 0.2em; }
#confusion.numbered th.row { max-width: 11em; font-size: 12px; }
#confusion td.zero { color: #bbb; }
#show-maps:checked ~ .grid a.plain, #show-maps:not(:checked) ~ .grid a.cam {
  display: none; }
.grid-charts { display: flex; flex-wrap: wrap; gap: 16px; }
table.config td { text-align: left; font-size: 13px; }
table.config td:first-child { font-family: ui-monospace, monospace; color: #444; }
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


def page(title: str, written: str, sections: list[str], scripts=()) -> str:
    """A whole page: a bar linking every section, the title, the sections.

    The bar lists each ``<h2 id="...">`` of ``sections`` in order. ``scripts``
    are the sections' own scripts, each put inline once, after the sort script.
    """
    links = [
        f'<a href="#{anchor}">{heading}</a>'
        for section in sections
        for anchor, heading in _HEADING.findall(section)
    ]
    inline = [SORT_SCRIPT, *dict.fromkeys(scripts)]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
            f'<nav id="contents">{"".join(links)}</nav>' if links else "",
            "<main>",
            f"<h1>{e(title)}</h1>",
            f'<p class="note">written {e(written)}</p>',
            *sections,
            "</main>",
            *(f"<script>{script}</script>" for script in inline),
            "</body></html>",
        ]
    )


# A section's heading: its anchor and its (escaped) title, for the bar.
_HEADING = re.compile(r'<h2 id="([^"<>]+)">(.*?)</h2>', re.DOTALL)


def figure(
    thumbnail: str | None, alt: str, caption_html: str, name=None, overlay=None
) -> str:
    """One thumbnail (a file under ``thumbs/``, or None) with its caption.

    The thumbnail links to the larger view of the same image under
    ``images/`` (:func:`tlsk.evaluation.report._thumbnails.write_thumbnail`
    writes both). ``name``, a file name, heads the caption on one line that
    never breaks inside it: too long, its start gives way to an ellipsis (the
    file's own name stays), and it shows whole on hover.
    ``overlay``, another thumbnail of the same image (where the model
    looked), is shown instead while the section's ``#show-maps`` box is
    ticked.
    """
    if thumbnail and overlay:
        picture = (
            f'<a class="cam" href="images/{e(overlay)}" target="_blank">'
            f'<img src="thumbs/{e(overlay)}" alt="{e(alt)}" loading="lazy"></a>'
            f'<a class="plain" href="images/{e(thumbnail)}" target="_blank">'
            f'<img src="thumbs/{e(thumbnail)}" alt="{e(alt)}" loading="lazy"></a>'
        )
    elif thumbnail:
        picture = (
            f'<a href="images/{e(thumbnail)}" target="_blank">'
            f'<img src="thumbs/{e(thumbnail)}" alt="{e(alt)}" loading="lazy"></a>'
        )
    else:
        picture = '<div class="missing">no thumbnail</div>'
    # Cut short at its start, so the end of a path (the file's own name)
    # shows; the marks keep the path's characters in their order.
    head = (
        f'<span class="name" title="{e(name)}">&lrm;{e(name)}&lrm;</span>'
        if name
        else ""
    )
    return f"<figure>{picture}<figcaption>{head}{caption_html}</figcaption></figure>"


def gallery(title, anchor, figures, note, left_out=0, level=2) -> str:
    """A titled grid of figures, with how many were left out.

    ``level`` 2 makes it a section of its own (listed in the page's bar);
    3, one of many in a section.
    """
    parts = [
        f'<h{level} id="{e(anchor)}">{e(title)}</h{level}>',
        f'<p class="note">{e(note)}</p>',
    ]
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

    ``build`` fills a temporary folder beside ``out`` (``thumbs/`` and
    ``images/`` exist already) and returns the page's HTML. The folder takes
    ``out``'s name only once complete, so a failed or interrupted report
    leaves ``out`` as it was. An existing ``out`` is replaced only with
    ``force``, and only if it is a report that tlsk wrote, holding nothing
    else; never the data the report is made from (``inputs``: its folders or
    files), nor a folder that holds them or lies inside them.
    """
    check_report_folder(out, force, inputs)
    out = resolved(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with folder_writer(out, REPORT_KIND, force=force, inputs=inputs) as work:
        os.mkdir(os.path.join(work, "thumbs"))
        os.mkdir(os.path.join(work, "images"))
        html_text = build(work)
        with open(os.path.join(work, "index.html"), "w", encoding="utf-8") as file:
            file.write(html_text)
    return os.path.join(out, "index.html")
