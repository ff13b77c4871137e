"""Small SVG charts drawn in Python: no JavaScript, no CDN, nothing fetched when the report is
opened. Every drawn mark carries its number in data attributes (data-value, and data-low /
data-high for intervals) so that a browser test can check what was drawn against the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626",
           "#4d7c0f")
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    # Full precision in data attributes (the test compares them with the models).
    return repr(float(value))


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    return float((int(value / step) + 1) * step)


def empty(message: str, height: int = 80) -> Markup:
    return Markup(
        f'<svg class="chart empty" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'data-empty="true"><text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" '
        f'class="muted">{escape(message)}</text></svg>'
    )


def line_chart(series: dict[str, list[tuple[str, float]]], xs: Sequence[str],
               label: str, chart_id: str) -> Markup:
    """One polyline per series over categorical x values (weeks); a point per value."""
    if not series or not xs:
        return empty("No sends yet: revenue per send appears after the first delivered send.")
    top = _nice_max(max((v for pts in series.values() for _, v in pts), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / len(xs))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    total_h = HEIGHT + 24 * len(series)
    out = [f'<svg class="chart line" id="{_a(chart_id)}" viewBox="0 0 {WIDTH} {total_h}" '
           f'role="img" aria-label="{_a(label)}">']
    for k in range(5):
        v = top * k / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" '
                   f'y2="{y(v):.1f}"/><text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:,.2f}</text>')
    for i, week in enumerate(xs):
        out.append(f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                   f'text-anchor="middle">{escape(week)}</text>')
    index = {w: i for i, w in enumerate(xs)}
    for n, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[n % len(PALETTE)]
        coords = [(x(index[w]), y(v), w, v) for w, v in sorted(points, key=lambda p: index[p[0]])]
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _ in coords)
        out.append(f'<g class="series" data-series="{_a(name)}">'
                   f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for cx, cy, week, v in coords:
            out.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4" '
                       f'fill="{colour}" data-series="{_a(name)}" data-x="{_a(week)}" '
                       f'data-value="{_num(v)}"><title>{escape(name)} {escape(week)}: '
                       f'{v:,.2f}</title></circle>')
        ly = HEIGHT + 24 * n + 8
        out.append(f'<rect x="{LEFT}" y="{ly}" width="12" height="12" fill="{colour}"/>'
                   f'<text class="legend" x="{LEFT + 18}" y="{ly + 11}">{escape(name)}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_funnel(journey: str, stages: Sequence[tuple[str, float]]) -> Markup:
    """Horizontal bars, one per stage, widths proportional to the first (largest) stage."""
    if not stages:
        return empty(f"{journey}: no decisions yet.")
    row, label_w = 34, 200
    height = TOP + row * len(stages) + 8
    top = max(v for _, v in stages) or 1.0
    plot_w = WIDTH - label_w - 90
    out = [f'<svg class="chart funnel" viewBox="0 0 {WIDTH} {height}" role="img" '
           f'data-journey="{_a(journey)}" aria-label="funnel of {_a(journey)}">']
    for i, (stage, v) in enumerate(stages):
        y = TOP + row * i
        w = plot_w * v / top
        out.append(f'<text class="legend" x="{label_w - 8}" y="{y + 18}" text-anchor="end">'
                   f'{escape(stage)}</text>'
                   f'<rect class="stage" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="22" '
                   f'fill="{PALETTE[0]}" data-journey="{_a(journey)}" data-stage="{_a(stage)}" '
                   f'data-value="{_num(v)}"/>'
                   f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 19}">{v:,.0f}'
                   f'{"" if i == 0 or not stages[0][1] else f" ({v / stages[0][1]:.0%})"}'
                   f'</text>')
    out.append("</svg>")
    return Markup("".join(out))


def intervals(items: Sequence[tuple[str, float | None, float | None, float | None]],
              metric: str, fmt: str) -> Markup:
    """A dot and its 95% interval per item, around a zero line: lift against the holdout."""
    drawn = [(n, v, lo, hi) for n, v, lo, hi in items if v is not None]
    if not drawn:
        return empty("No journey with both a treated and a holdout group yet.")
    row, label_w = 36, 160
    height = TOP + row * len(drawn) + 28
    bound = max(abs(b) for _, v, lo, hi in drawn for b in (v, lo, hi) if b is not None) or 1.0
    bound *= 1.1
    plot_w = WIDTH - label_w - RIGHT - 210  # room on the right for the numbers

    def x(v: float) -> float:
        return label_w + plot_w * (v + bound) / (2 * bound)

    out = [f'<svg class="chart interval" viewBox="0 0 {WIDTH} {height}" role="img" '
           f'data-metric="{_a(metric)}" aria-label="{_a(metric)} with 95% interval">'
           f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{TOP - 6}" '
           f'y2="{height - 24}"/><text class="tick" x="{x(0):.1f}" y="{height - 8}" '
           f'text-anchor="middle">0 (no lift)</text>']
    for i, (name, v, lo, hi) in enumerate(drawn):
        assert v is not None
        y = TOP + row * i + 14
        attrs = (f'data-journey="{_a(name)}" data-metric="{_a(metric)}" data-value="{_num(v)}"'
                 + (f' data-low="{_num(lo)}" data-high="{_num(hi)}"'
                    if lo is not None and hi is not None else ""))
        out.append(f'<g class="lift" {attrs}><text class="legend" x="{label_w - 8}" '
                   f'y="{y + 4}" text-anchor="end">{escape(name)}</text>')
        if lo is not None and hi is not None:
            out.append(f'<line class="whisker" x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y}" '
                       f'y2="{y}" stroke="{PALETTE[1]}" stroke-width="3"/>')
        out.append(f'<circle cx="{x(v):.1f}" cy="{y}" r="6" fill="{PALETTE[1]}"/>'
                   f'<text class="value" x="{WIDTH - RIGHT - 200}" y="{y + 4}">'
                   f'{format(v, fmt)}'
                   + (f" [{format(lo, fmt)}, {format(hi, fmt)}]" if lo is not None
                      and hi is not None else "") + "</text></g>")
    out.append("</svg>")
    return Markup("".join(out))


def stacked_bars(weeks: Sequence[str], parts: dict[str, Sequence[float]], label: str) -> Markup:
    """One bar per week, split into parts (attributed / unattributed revenue)."""
    if not weeks:
        return empty("No orders yet.")
    top = _nice_max(max(sum(vals) for vals in zip(*parts.values(), strict=True)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(weeks)
    out = [f'<svg class="chart stacked" viewBox="0 0 {WIDTH} {HEIGHT + 24}" role="img" '
           f'aria-label="{_a(label)}">']
    for k in range(5):
        v = top * k / 4
        yy = TOP + plot_h * (1 - v / top)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" '
                   f'y2="{yy:.1f}"/><text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" '
                   f'text-anchor="end">{v:,.0f}</text>')
    for i, week in enumerate(weeks):
        base = 0.0
        bx = LEFT + slot * i + slot * 0.2
        for n, (kind, values) in enumerate(parts.items()):
            v = float(values[i])
            h = plot_h * v / top
            yy = TOP + plot_h * (1 - (base + v) / top)
            out.append(f'<rect class="bar" x="{bx:.1f}" y="{yy:.1f}" width="{slot * 0.6:.1f}" '
                       f'height="{h:.1f}" fill="{PALETTE[n * 2 % len(PALETTE)]}" '
                       f'data-x="{_a(week)}" data-kind="{_a(kind)}" data-value="{_num(v)}">'
                       f'<title>{escape(week)} {escape(kind)}: {v:,.2f}</title></rect>')
            base += v
        out.append(f'<text class="tick" x="{bx + slot * 0.3:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                   f'text-anchor="middle">{escape(week)}</text>')
    for n, kind in enumerate(parts):
        lx = LEFT + 160 * n
        out.append(f'<rect x="{lx}" y="{HEIGHT + 4}" width="12" height="12" '
                   f'fill="{PALETTE[n * 2 % len(PALETTE)]}"/><text class="legend" '
                   f'x="{lx + 18}" y="{HEIGHT + 15}">{escape(kind)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
