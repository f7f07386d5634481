"""What made a model, as a compact table with the raw JSON folded away."""

from __future__ import annotations

import html
import json

from tlsk.evaluation.report._page import e

# A list longer than this, or a value longer than that, is cut short in the
# table (the raw JSON below it holds everything).
_LIST_ITEMS = 8
_VALUE_CHARS = 120


def configuration_table(metadata, *, anchor="metadata", title="What made the model"):
    """The section: one row per setting, nested keys joined with dots.

    Examples
    --------
    >>> page = configuration_table({"method": "bottleneck",
    ...                             "extractor": {"backbone": "vgg16"}})
    >>> "<td>extractor.backbone</td><td>vgg16</td>" in page
    True
    """
    if not metadata:
        return ""
    rows = "".join(
        f"<tr><td>{e(key)}</td><td>{_value_html(value)}</td></tr>"
        for key, value in _flattened(metadata)
    )
    text = json.dumps(metadata, indent=1, sort_keys=True, default=str)
    raw = html.escape(text, quote=False)  # text, not an attribute
    return (
        f'<h2 id="{e(anchor)}">{e(title)}</h2>'
        f'<table class="config" id="{e(anchor)}-table"><tbody>{rows}</tbody></table>'
        f"<details><summary>the raw JSON</summary><pre>{raw}</pre></details>"
    )


def _flattened(value, prefix=""):
    """``(dotted key, leaf value)`` pairs, keys in sorted order."""
    if isinstance(value, dict) and value:
        for key in sorted(value, key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _flattened(value[key], name)
    else:
        yield prefix, value


def _value_html(value) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(_text(item) for item in value[:_LIST_ITEMS])
        if len(value) > _LIST_ITEMS:
            shown += f", ... ({len(value)} in all)"
        text = f"[{shown}]"
    else:
        text = _text(value)
    if len(text) > _VALUE_CHARS:
        return f'<span title="{e(text)}">{e(text[: _VALUE_CHARS - 1])}&hellip;</span>'
    return e(text)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return "null" if value is None else str(value)
