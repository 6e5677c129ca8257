"""Chart geometry for server-rendered SVG (templates/report/_charts.html): no JavaScript, no library, works
offline and under `default-src 'self'`. Each mark carries its value, a label and the link to its items."""

from __future__ import annotations

from dataclasses import dataclass, field

COLOURS = {"opened": "#f79009", "repaid": "#12b76a", "balance": "#3056d3", "overdue": "#d92d20", "age": "#7a5af8",
           # the insights' series
           "incidents": "#3056d3", "repeats": "#d92d20", "factors": "#7a5af8", "p50 (minutes)": "#12b76a",
           "p90 (minutes)": "#f79009"}


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    w: float
    h: float
    value: float
    label: str
    href: str
    fill: str


@dataclass
class Chart:
    title: str
    width: int
    height: int
    marks: list[Mark] = field(default_factory=list)
    axis: list[tuple[float, float, str]] = field(default_factory=list)  # (x, y, text) labels
    grid: list[tuple[float, str]] = field(default_factory=list)  # (y, value) horizontal lines
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, name)
    path: str = ""  # a line chart's polyline points
    area: str = ""
    empty: bool = False


def _nice_max(value: float) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if value <= step * 4:
            return step * 4
    return int(value) + 1


def _grid(top: int, plot_top: float, plot_h: float) -> list[tuple[float, str]]:
    return [(plot_top + plot_h - plot_h * k / 4, f"{top * k // 4}") for k in range(5)]


def columns(title: str, groups: list[tuple[str, list[tuple[str, float, str]]]], *, width: int = 640,
            height: int = 220) -> Chart:
    """Grouped columns: groups of (label, [(series, value, href), ...]), e.g. opened vs repaid per week."""
    left, right, top_pad, bottom = 34, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = _nice_max(max([v for _, vals in groups for _, v, _ in vals] + [1]))
    chart = Chart(title, width, height, grid=_grid(top, top_pad, plot_h))
    n = max(len(groups), 1)
    slot = plot_w / n
    per = max(len(groups[0][1]) if groups else 1, 1)
    bar_w = min(slot * 0.8 / per, 28)
    for gi, (label, vals) in enumerate(groups):
        x0 = left + gi * slot + (slot - bar_w * per) / 2
        for si, (series, value, href) in enumerate(vals):
            h = plot_h * value / top
            chart.marks.append(Mark(round(x0 + si * bar_w, 1), round(top_pad + plot_h - h, 1), round(bar_w - 1, 1),
                                    round(h, 1), value, f"{label}: {value:g} {series}", href, COLOURS[series]))
        chart.axis.append((round(left + gi * slot + slot / 2, 1), height - 8, label))
    chart.legend = [(COLOURS[s], s) for s, _, _ in (groups[0][1] if groups else [])]
    chart.empty = not any(v for _, vals in groups for _, v, _ in vals)
    return chart


def line(title: str, points: list[tuple[str, float, str]], *, series: str = "balance", width: int = 640,
         height: int = 220, unit: str = "open") -> Chart:
    """A line with a dot per point (balance over time), each dot linking to its items."""
    left, right, top_pad, bottom = 34, 12, 10, 26
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = _nice_max(max([v for _, v, _ in points] + [1]))
    chart = Chart(title, width, height, grid=_grid(top, top_pad, plot_h), legend=[(COLOURS[series], series)])
    step = plot_w / max(len(points) - 1, 1)
    coords = []
    for i, (label, value, href) in enumerate(points):
        x, y = round(left + i * step, 1), round(top_pad + plot_h - plot_h * value / top, 1)
        coords.append((x, y))
        chart.marks.append(Mark(x, y, 0, 0, value, f"{label}: {value:g} {unit}", href, COLOURS[series]))
        chart.axis.append((x, height - 8, label))
    chart.path = " ".join(f"{x},{y}" for x, y in coords)
    if coords:
        base = top_pad + plot_h
        chart.area = f"{coords[0][0]},{base} {chart.path} {coords[-1][0]},{base}"
    chart.empty = not points
    return chart


def bars(title: str, rows: list[tuple[str, float, str]], *, series: str, width: int = 640) -> Chart:
    """Horizontal bars with the label on the left (aging buckets, overdue by owner)."""
    label_w, right, row_h = 150, 40, 26
    height = max(len(rows), 1) * row_h + 8
    top = max([v for _, v, _ in rows] + [1])
    plot_w = width - label_w - right
    chart = Chart(title, width, height, legend=[])
    for i, (label, value, href) in enumerate(rows):
        w = plot_w * value / top
        chart.marks.append(Mark(label_w, 4 + i * row_h, round(w, 1), row_h - 8, value, label, href, COLOURS[series]))
    chart.empty = not rows
    return chart
