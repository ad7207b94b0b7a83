"""Self-contained HTML pages (inline CSS, base64-embedded PNGs, no scripts, no network)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#111;max-width:1800px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.4em .8em;margin:.6em 0}
.err{background:#fde8e8;border-left:4px solid #c33;padding:.4em .8em;margin:.6em 0}
figure{margin:.6em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444}
"""


def esc(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """Numbers with ``digits`` significant decimals; NaN/None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def png_data_uri(png: bytes) -> str:
    """``data:`` URI embedding a PNG."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table(frame: pd.DataFrame, numeric_digits: int = 3) -> str:
    """A plain HTML table of ``frame`` (index dropped), numbers right-aligned."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for v in rec:
            v = v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v  # numpy scalar → Python
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f"<td class=\"num\">{esc(fmt(v, numeric_digits))}</td>" if num else f"<td>{esc(fmt(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: bytes | None, caption: str, src: str | None = None) -> str:
    """A figure with an embedded PNG (or a relative ``src`` link when given)."""
    target = src if src is not None else png_data_uri(png or b"")
    return f"<figure><img src=\"{esc(target)}\" alt=\"{esc(caption)}\"><figcaption>{esc(caption)}</figcaption></figure>"


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document."""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>{''.join(body)}</body></html>"
    )
