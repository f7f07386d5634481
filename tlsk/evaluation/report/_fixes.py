"""Choices on a check report's suspects, downloaded as the CSV that
``tlsk check DATA --apply fixes.csv`` reads (:mod:`tlsk.images.fixes`).

:func:`fix_controls` gives each suspect (label error, near duplicate, bad
file) three buttons, keep / remove / relabel, and a list of the classes to
relabel it to; :func:`fixes_bar` is a bar fixed at the bottom of the page
with the count of choices and the "download fixes.csv" button;
:data:`FIXES_SCRIPT` wires them. A file shown in several places has one
choice: each of its controls shows it. Nothing leaves the page: the CSV is
built in it (a Blob) and saved by the browser.

Each control carries the SHA-256 of its file's bytes (:func:`file_sha256`),
written in the CSV's ``sha256`` column: ``--apply`` refuses a row whose file
is not the one the page showed (a CSV made for another folder, or a file
changed since). The choices are kept in the tab's ``sessionStorage``, keyed
by the page's URL, so that a reload (or the browser restoring the tab after
a crash) finds them again; they are restored only for files that still have
a control with the same SHA-256 (and a relabel only to a class still
listed). A download keeps them (the tab holds them until it is closed);
storage that is disabled or full only means that nothing is kept.

Names travel in ``data-*`` attributes as the percent-encoded bytes of the
name (UTF-8, or the bytes of a name that is not UTF-8), so that the CSV
holds each name exactly, whatever it holds (commas, quotes, new lines,
``\\xff``); what the page shows goes through :func:`_page.e`.
"""

from __future__ import annotations

import os
import shlex
from urllib.parse import quote

from tlsk.evaluation.report._page import e
from tlsk.images.fixes.csv_format import RowProblem
from tlsk.images.fixes.moves import digest

__all__ = ["FIXES_SCRIPT", "FIXES_STYLE", "file_sha256", "fix_controls", "fixes_bar"]

FIXES_STYLE = """
.tlsk-fix { display: flex; flex-wrap: wrap; gap: 3px; margin-top: 0.3em;
            font-size: 11px; }
.tlsk-fix button { font: inherit; padding: 1px 6px; border: 1px solid #bbb;
                   border-radius: 3px; background: #fff; cursor: pointer; }
.tlsk-fix button[aria-pressed="true"] { color: #fff; border-color: transparent; }
.tlsk-fix button[data-action="keep"][aria-pressed="true"] { background: #1e7b34; }
.tlsk-fix button[data-action="remove"][aria-pressed="true"] { background: #b3261e; }
.tlsk-fix button[data-action="relabel"][aria-pressed="true"] { background: #0b5cad; }
.tlsk-fix select { font: inherit; max-width: 100%; flex: 1 1 100%; }
.tlsk-fix.chosen { outline: 2px solid #0b5cad33; outline-offset: 2px; }
#tlsk-fixes { position: fixed; right: 1em; bottom: 1em; z-index: 20;
              background: #fff; border: 1px solid #bbb; border-radius: 6px;
              box-shadow: 0 2px 8px #0002; padding: 0.5em 0.8em;
              font-size: 13px; max-width: 30em; }
#tlsk-fixes button { font: inherit; margin: 0 0.4em; }
#tlsk-fixes .note { display: block; font-size: 12px; margin-top: 0.2em; }
body { padding-bottom: 5em; }
"""

# Collects the choices; writes the CSV of tlsk.images.fixes (header, every
# cell quoted, a ' before a cell a spreadsheet would run) as bytes.
FIXES_SCRIPT = """
(function () {
  var bar = document.getElementById("tlsk-fixes");
  var controls = Array.prototype.slice.call(document.querySelectorAll(".tlsk-fix"));
  if (!bar) { return; }
  var count = bar.querySelector(".fixes-count");
  var button = bar.querySelector(".fixes-download");
  var choices = new Map(), byFile = new Map(), order = [], shas = new Map();
  controls.forEach(function (control) {
    var file = control.dataset.file;
    if (!byFile.has(file)) {
      byFile.set(file, []);
      order.push(file);
      shas.set(file, control.dataset.sha256 || "");
    }
    byFile.get(file).push(control);
  });

  function tally() {
    var n = { keep: 0, remove: 0, relabel: 0 };
    choices.forEach(function (c) { n[c.action] += 1; });
    var total = choices.size;
    count.textContent = total === 0 ? "no choice yet" :
      total + (total === 1 ? " choice: " : " choices: ") + n.relabel +
      " relabel, " + n.remove + " remove, " + n.keep + " keep";
    button.disabled = total === 0;
  }

  function show(file) {
    var choice = choices.get(file);
    byFile.get(file).forEach(function (control) {
      control.classList.toggle("chosen", Boolean(choice));
      control.querySelectorAll("button").forEach(function (b) {
        var on = Boolean(choice) && choice.action === b.dataset.action;
        b.setAttribute("aria-pressed", on ? "true" : "false");
      });
      var select = control.querySelector("select");
      if (select && choice && choice.action === "relabel") {
        select.value = choice.label;
      }
    });
    tally();
    keep();
  }

  function choose(control, action) {
    var file = control.dataset.file, current = choices.get(file);
    var select = control.querySelector("select");
    var label = action === "relabel" && select ? select.value : "";
    if (action === "relabel" && !label) { if (select) { select.focus(); } return; }
    if (current && current.action === action && current.label === label) {
      choices.delete(file);
    } else {
      choices.set(file, { action: action, label: label,
                          reason: control.dataset.reason || "" });
    }
    show(file);
  }

  controls.forEach(function (control) {
    control.querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () { choose(control, b.dataset.action); });
    });
    var select = control.querySelector("select");
    if (select) {
      // The list names the class "relabel" moves to: a relabel already chosen
      // follows it; choosing is the button's (so that picking a class and then
      // pressing "relabel" chooses it, never undoes it).
      select.addEventListener("change", function () {
        var file = control.dataset.file, current = choices.get(file);
        if (!current || current.action !== "relabel") { return; }
        if (select.value) {
          current.label = select.value;
        } else {
          choices.delete(file);
        }
        show(file);
      });
    }
  });

  function decoded(percent) {
    var bytes = [];
    for (var i = 0; i < percent.length; i++) {
      if (percent[i] === "%") {
        bytes.push(parseInt(percent.substr(i + 1, 2), 16));
        i += 2;
      } else {
        bytes.push(percent.charCodeAt(i));
      }
    }
    return new Uint8Array(bytes);
  }
  var encoder = new TextEncoder(), reader = new TextDecoder("utf-8");
  var RUNS = "=+-@'\\t\\r\\n\\uff1d\\uff0b\\uff0d\\uff20";
  function cell(bytes) {
    var first = reader.decode(bytes.slice(0, 4)).charAt(0);
    var out = [0x22];
    if (first && (RUNS.indexOf(first) >= 0 || /\\s/.test(first))) { out.push(0x27); }
    bytes.forEach(function (b) { out.push(b); if (b === 0x22) { out.push(0x22); } });
    out.push(0x22);
    return out;
  }
  function csvBytes() {
    var out = Array.from(encoder.encode("file,action,label,reason,sha256\\n"));
    order.forEach(function (file) {
      var choice = choices.get(file);
      if (!choice) { return; }
      var cells = [decoded(file), encoder.encode(choice.action),
                   choice.label ? decoded(choice.label) : new Uint8Array(0),
                   encoder.encode(choice.reason), encoder.encode(shas.get(file))];
      cells.forEach(function (bytes, i) {
        if (i) { out.push(0x2c); }
        Array.prototype.push.apply(out, cell(bytes));
      });
      out.push(0x0a);
    });
    return new Uint8Array(out);
  }
  window.tlskFixesCsv = csvBytes;

  button.addEventListener("click", function () {
    var blob = new Blob([csvBytes()], { type: "text/csv" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "fixes.csv";
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 30000);
    saved = csvBytes().join(",");
    keep();
  });

  // The choices in the tab's sessionStorage, under the page's URL; any
  // failure of the storage (disabled, full, damaged) keeps nothing.
  var KEY = "tlsk-fixes " + location.href.split("#")[0], ready = false;
  function storage() {
    try { return window.sessionStorage || null; } catch (err) { return null; }
  }
  function keep() {
    var store = storage();
    if (!ready || !store) { return; }
    try {
      if (choices.size === 0) { store.removeItem(KEY); return; }
      var kept = [];
      choices.forEach(function (c, file) {
        kept.push([file, c.action, c.label, c.reason, shas.get(file)]);
      });
      store.setItem(KEY, JSON.stringify({
        choices: kept, downloaded: csvBytes().join(",") === saved }));
    } catch (err) { /* nothing kept */ }
  }
  function restore() {
    var store = storage(), kept = null;
    try { kept = store && JSON.parse(store.getItem(KEY) || "null"); } catch (err) {
      return false;
    }
    if (!kept || !Array.isArray(kept.choices)) { return false; }
    kept.choices.forEach(function (c) {
      if (!Array.isArray(c) || !byFile.has(c[0]) || shas.get(c[0]) !== c[4] ||
          ["keep", "remove", "relabel"].indexOf(c[1]) < 0) { return; }
      var label = c[1] === "relabel" ? String(c[2]) : "";
      if (c[1] === "relabel" && !byFile.get(c[0]).some(function (control) {
        var select = control.querySelector("select");
        return select && Array.prototype.some.call(select.options, function (o) {
          return o.value && o.value === label;
        });
      })) { return; }
      choices.set(c[0], { action: c[1], label: label, reason: String(c[3] || "") });
      show(c[0]);
    });
    return kept.downloaded === true;
  }

  // Leaving the page with choices not yet downloaded asks first.
  var saved = csvBytes().join(",");
  if (restore()) { saved = csvBytes().join(","); }
  ready = true;
  window.addEventListener("beforeunload", function (event) {
    if (csvBytes().join(",") !== saved) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  tally();
})();
"""


def _bytes_attribute(name) -> str:
    """A name as the percent-encoded bytes the script writes into the CSV."""
    return quote(str(name).encode("utf-8", "surrogateescape"), safe="")


def file_sha256(path):
    """The SHA-256 (hex) of the regular file at ``path``, read once and never
    through a symbolic link; None when it cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> with open(path, "wb") as file:
    ...     _ = file.write(b"abc")
    >>> file_sha256(path)[:16], file_sha256(path + ".none")
    ('ba7816bf8f01cfea', None)
    """
    # The digest --apply checks it against: one reading rule for both.
    try:
        return digest(path)[1]
    except (OSError, RowProblem):
        return None


def fix_controls(
    file, given_label, classes, *, suggested=None, reason="", sha256=None
) -> str:
    """The keep / remove / relabel control of one suspect, as HTML.

    Parameters
    ----------
    file : str
        The suspect's path relative to the data folder, with ``/`` (as
        ``tlsk check --json`` prints it; ``<part>/<class>/<name>`` in a split).
    given_label : str
        Its class now; left out of the classes it may be relabelled to.
    classes : iterable of str
        Every class of the data folder.
    suggested : str, optional
        The class the suspect probably belongs to (a label error's likely
        label): chosen in the list, so "relabel" takes it at one click.
        Nothing is chosen until the user clicks.
    reason : str, default=""
        Why it is a suspect (``"label error"``, ``"near duplicate"``,
        ``"bad file"``): the CSV's ``reason`` column.
    sha256 : str, optional
        The SHA-256 of the file's bytes (:func:`file_sha256`): the CSV's
        ``sha256`` column, which ``--apply`` checks. None writes an empty cell
        (nothing checked).

    Returns
    -------
    html : str
        A ``<div class="tlsk-fix">`` to put in the suspect's caption or row;
        :func:`fixes_bar` and :data:`FIXES_SCRIPT` must be on the page too.

    Examples
    --------
    >>> html = fix_controls("cat/a b.jpg", "cat", ["cat", "dog"], suggested="dog")
    >>> 'data-file="cat%2Fa%20b.jpg"' in html, '<option value="dog" selected>' in html
    (True, True)
    """
    options = [] if suggested is not None else ['<option value="">to class…</option>']
    for label in classes:
        if label == given_label:
            continue
        chosen = " selected" if label == suggested else ""
        options.append(
            f'<option value="{e(_bytes_attribute(label))}"{chosen}>{e(label)}</option>'
        )
    checksum = f' data-sha256="{e(sha256)}"' if sha256 else ""
    buttons = "".join(
        f'<button type="button" data-action="{action}" aria-pressed="false">'
        f"{action}</button>"
        for action in ("keep", "remove", "relabel")
    )
    return (
        f'<div class="tlsk-fix" data-file="{e(_bytes_attribute(file))}" '
        f'data-reason="{e(reason)}"{checksum} role="group" '
        f'aria-label="fix {e(file)}">'
        f'{buttons}<select aria-label="relabel to">{"".join(options)}</select></div>'
    )


def fixes_bar(*, data=None) -> str:
    """The bar of the choices: their count and the "download fixes.csv" button.

    Fixed at the bottom right of the page; ``data``, the data folder as the
    user names it, completes the command it shows (``tlsk check DATA --apply
    fixes.csv``). Holds its own style (:data:`FIXES_STYLE`).

    Examples
    --------
    >>> "download fixes.csv" in fixes_bar(data="data/pets")
    True
    """
    folder = e(shlex.quote(os.fspath(data))) if data is not None else "DATA"
    return (
        f"<style>{FIXES_STYLE}</style>"
        '<div id="tlsk-fixes" role="region" aria-label="fixes">'
        '<span class="fixes-count" aria-live="polite">no choice yet</span>'
        '<button type="button" class="fixes-download" disabled>'
        "download fixes.csv</button>"
        f'<span class="note">then: tlsk check {folder} --apply fixes.csv '
        "(--undo puts everything back)</span></div>"
    )
