"""A self-contained HTML page: the interactive SVG flamegraph inline, then a sortable table of the
top functions by self and total weight. No external URLs; open it in any browser.
"""

from __future__ import annotations

from html import escape

from profilers.stacks import Frame, StackModel
from profilers.writers import svg

#: Rows in the table: the union of the top ``TOP`` frames by self weight and by total weight.
TOP = 100


def top_functions(model: StackModel, limit: int = TOP) -> list[tuple[Frame, float, float]]:
    """``(frame, self weight, total weight)`` rows, heaviest self weight first.

    The rows are the union of the ``limit`` heaviest frames by self weight and by total weight
    (from :meth:`StackModel.self_weights` / :meth:`StackModel.total_weights`).
    """
    own = model.self_weights()
    total = model.total_weights()
    by_self = sorted(own, key=lambda f: (-own[f], f.label))[:limit]
    by_total = sorted(total, key=lambda f: (-total[f], f.label))[:limit]
    chosen = dict.fromkeys(by_self + by_total)
    rows = [(f, own.get(f, 0.0), total[f]) for f in chosen]
    rows.sort(key=lambda r: (-r[1], -r[2], r[0].label))
    return rows


def render(model: StackModel, title: str | None = None, *, limit: int = TOP) -> str:
    """The HTML page for ``model``."""
    title = title or model.name
    grand = sum(w for w in model.stacks.values() if w > 0)
    unit = model.unit
    rows = []
    for frame, own, total in top_functions(model, limit):
        location = frame.file + (f":{frame.line}" if frame.line else "")
        rows.append(
            "<tr>"
            f'<td class="fn">{escape(frame.function)}</td>'
            f'<td class="loc" title="{escape(location)}">{escape(location)}</td>'
            f'<td data-v="{own!r}">{escape(svg.format_weight(own, unit))}</td>'
            f'<td data-v="{own!r}">{_percent(own, grand)}</td>'
            f'<td data-v="{total!r}">{escape(svg.format_weight(total, unit))}</td>'
            f'<td data-v="{total!r}">{_percent(total, grand)}</td>'
            "</tr>"
        )
    if rows:
        table = (
            '<table class="sortable"><thead><tr>'
            '<th data-type="text">Function</th><th data-type="text">Location</th>'
            '<th class="sorted-desc">Self</th><th>Self %</th><th>Total</th><th>Total %</th>'
            "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        )
    else:
        table = '<p class="empty">no samples</p>'
    flamegraph = svg.render(model, title, xml_declaration=False)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{_CSS}</style>\n"
        "</head><body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f'<div class="flamegraph">\n{flamegraph}</div>\n'
        f"<h2>Top functions</h2>\n"
        f'<p class="note">Self: weight of stacks ending in the function. Total: weight of stacks '
        f"it is on (counted once per stack). Click a column to sort.</p>\n"
        f"{table}\n"
        f"<script>{_SORT_JS}</script>\n"
        "</body></html>\n"
    )


def _percent(value: float, total: float) -> str:
    return f"{value / total * 100:.2f}%" if total > 0 else "–"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}"
    ".flamegraph{overflow-x:auto}"
    ".note{color:#555;font-size:.9em}"
    "table{border-collapse:collapse;font-size:.9em}"
    "th,td{padding:.25em .7em;border-bottom:1px solid #e4e4e4;text-align:right}"
    "td.fn,td.loc,th[data-type=text]{text-align:left}"
    "td.fn{font-family:ui-monospace,monospace}"
    "td.loc{color:#666;max-width:40em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
    "th{cursor:pointer;user-select:none;background:#f4f1ec;position:sticky;top:0}"
    "th.sorted-desc::after{content:' \\25BE'}th.sorted-asc::after{content:' \\25B4'}"
    "tbody tr:hover{background:#fbf6e9}"
)

_SORT_JS = """
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var text = th.getAttribute("data-type") === "text";
        var desc = text ? th.classList.contains("sorted-asc") : !th.classList.contains("sorted-desc");
        Array.prototype.forEach.call(heads, function (h) {
          h.classList.remove("sorted-asc", "sorted-desc");
        });
        th.classList.add(desc ? "sorted-desc" : "sorted-asc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var r = text ? x.textContent.localeCompare(y.textContent)
            : parseFloat(x.getAttribute("data-v")) - parseFloat(y.getAttribute("data-v"));
          return desc ? -r : r;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""
