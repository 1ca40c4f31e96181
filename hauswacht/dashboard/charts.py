"""Server-rendered SVG charts: stacked bars and lines over hourly points.

The SVG goes inline into the page, so no script and no external file is
needed to draw it. Colours come from the CSS classes on each element (the
stylesheet sets them), so the Content-Security-Policy needs no inline style.
Every text is escaped with markupsafe before it enters the markup.

Points with None (no value that hour) leave a gap in a line and no bar.
Each point gets a hover title when there are at most MAX_TITLED_POINTS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 800
HEIGHT = 200
LEFT = 80  # room for the y labels, also at the larger font size of narrow screens
RIGHT = 8
TOP = 10
BOTTOM = 24  # room for the x labels
X_TICKS = 6
MAX_TITLED_POINTS = 400


@dataclass(frozen=True)
class Series:
    """One row of values over the points, drawn with CSS class `css_class`."""

    label: str
    css_class: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    """A rendered chart: the SVG markup and the legend entries (label, CSS class)."""

    svg: Markup
    legend: list[tuple[str, str]]
    empty: bool


def nice_ceiling(value: float) -> float:
    """Return the smallest of 1, 2, 2.5, 5 times a power of ten that is >= `value` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10 * power


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _frame(
    title: str,
    top_value: float,
    labels: Sequence[str],
    format_value: Callable[[float], str],
) -> list[str]:
    plot_height = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_height * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_number(y)}" '
            f'y2="{_number(y)}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{_number(y + 4)}" text-anchor="end">'
            f"{escape(format_value(top_value * fraction))}</text>"
        )
    count = len(labels)
    if count:
        ticks = sorted({round(k * (count - 1) / (X_TICKS - 1)) for k in range(X_TICKS)})
        if count == 1:
            ticks = [0]
        for position, index in enumerate(ticks):
            x = _x_center(index, count)
            # Every other label is hidden on narrow screens, where the text is drawn larger.
            css_class = "axis x-minor" if position % 2 else "axis"
            anchor = "middle"
            if index == 0:
                anchor = "start"
            elif index == count - 1:
                anchor = "end"
            parts.append(
                f'<text class="{css_class}" x="{_number(x)}" y="{HEIGHT - 6}" '
                f'text-anchor="{anchor}">{escape(labels[index])}</text>'
            )
    return parts


def _slot(count: int) -> float:
    return (WIDTH - LEFT - RIGHT) / max(count, 1)


def _x_center(index: int, count: int) -> float:
    return LEFT + _slot(count) * (index + 0.5)


def _y(value: float, top_value: float) -> float:
    plot_height = HEIGHT - TOP - BOTTOM
    return TOP + plot_height * (1 - min(value, top_value) / top_value)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    format_value: Callable[[float], str],
) -> Chart:
    """Render stacked bars: at each point the series' values are stacked bottom to top."""
    count = len(labels)
    totals = [sum(entry.values[index] or 0 for entry in series) for index in range(count)]
    top_value = nice_ceiling(max(totals, default=0))
    parts = _frame(title, top_value, labels, format_value)

    slot = _slot(count)
    bar_width = max(slot * 0.8, 0.6)
    titled = count <= MAX_TITLED_POINTS
    for index in range(count):
        x = LEFT + slot * index + (slot - bar_width) / 2
        base = 0.0
        rects = []
        for entry in series:
            value = entry.values[index] or 0
            if value <= 0:
                continue
            y_top = _y(base + value, top_value)
            y_bottom = _y(base, top_value)
            rects.append(
                f'<rect class="{entry.css_class}" x="{_number(x)}" y="{_number(y_top)}" '
                f'width="{_number(bar_width)}" height="{_number(max(y_bottom - y_top, 0.5))}"/>'
            )
            base += value
        if not rects:
            continue
        if titled:
            text = "; ".join(
                f"{entry.label}: {format_value(entry.values[index] or 0)}" for entry in series
            )
            parts.append(f"<g><title>{escape(labels[index])}: {escape(text)}</title>")
            parts.extend(rects)
            parts.append("</g>")
        else:
            parts.extend(rects)
    parts.append("</svg>")
    return Chart(
        svg=Markup("".join(parts)),
        legend=[(entry.label, entry.css_class) for entry in series],
        empty=not any(totals),
    )


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    format_value: Callable[[float], str],
) -> Chart:
    """Render one polyline per series; a None value breaks the line."""
    count = len(labels)
    values = [value for entry in series for value in entry.values if value is not None]
    top_value = nice_ceiling(max(values, default=0))
    parts = _frame(title, top_value, labels, format_value)

    for entry in series:
        segment: list[str] = []
        segments: list[list[str]] = []
        for index, value in enumerate(entry.values):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{_number(_x_center(index, count))},{_number(_y(value, top_value))}")
        if segment:
            segments.append(segment)
        for points in segments:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle class="{entry.css_class}" cx="{x}" cy="{y}" r="2.5"/>')
            else:
                parts.append(
                    f'<polyline class="{entry.css_class}" fill="none" points="{" ".join(points)}"/>'
                )

    if count <= MAX_TITLED_POINTS:
        slot = _slot(count)
        for index in range(count):
            shown = [
                f"{entry.label}: {format_value(entry.values[index])}"  # type: ignore[arg-type]
                for entry in series
                if entry.values[index] is not None
            ]
            if not shown:
                continue
            parts.append(
                f'<rect class="hover" x="{_number(LEFT + slot * index)}" y="{TOP}" '
                f'width="{_number(slot)}" height="{HEIGHT - TOP - BOTTOM}">'
                f"<title>{escape(labels[index])}: {escape('; '.join(shown))}</title></rect>"
            )
    parts.append("</svg>")
    return Chart(
        svg=Markup("".join(parts)),
        legend=[(entry.label, entry.css_class) for entry in series],
        empty=not values,
    )
