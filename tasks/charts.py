"""Small server-side SVG charts for the admin dashboard: no JavaScript, no CDN, and
the page renders the same in any browser (or in an e-mail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from tasks.models import TaskState

_WIDTH, _HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 12, 36


# A job state's colour in every chart and list.
STATE_COLORS = {
    TaskState.PENDING: "#9e9e9e",
    TaskState.RECEIVED: "#64b5f6",
    TaskState.STARTED: "#1e88e5",
    TaskState.SUCCESS: "#43a047",
    TaskState.FAILURE: "#e53935",
    TaskState.TIMEOUT: "#fb8c00",
    TaskState.REVOKED: "#6d4c41",
}


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    color: str


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def _frame(top: float, labels: Sequence[str], title: str) -> list[str]:
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    parts = [f"<title>{escape(title)}</title>"]
    for index in range(5):
        y = _TOP + plot_height * index / 4
        value = top * (4 - index) / 4
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{value:g}</text>')
    slot = plot_width / max(1, len(labels))
    every = max(1, len(labels) // 12)
    for index, label in enumerate(labels):
        if index % every == 0:
            x = _LEFT + slot * (index + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 16}" text-anchor="middle" font-size="11">'
                f"{escape(label)}</text>"
            )
    return parts


def _svg(parts: list[str], chart_id: str, title: str) -> SafeString:
    body = "".join(parts)
    return format_html(
        '<svg id="{}" class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">{}</svg>',
        chart_id,
        title,
        _WIDTH,
        _HEIGHT,
        _WIDTH,
        _HEIGHT,
        # Safe: built above from numbers and escaped labels only.
        mark_safe(body),
    )


def bar_chart(
    *, chart_id: str, title: str, labels: Sequence[str], values: Sequence[float], colors: Sequence[str]
) -> SafeString:
    top = _nice_ceiling(max(values, default=0))
    parts = _frame(top, labels, title)
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    slot = plot_width / max(1, len(labels))
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = plot_height * value / top
        x = _LEFT + slot * index + slot * 0.15
        y = _TOP + plot_height - height
        parts.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value:g}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{height:.1f}" fill="{escape(colors[index % len(colors)])}">'
            f"<title>{escape(label)}: {value:g}</title></rect>"
        )
    return _svg(parts, chart_id, title)


def line_chart(*, chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series]) -> SafeString:
    top = _nice_ceiling(max((value for line in series for value in line.values), default=0))
    parts = _frame(top, labels, title)
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    slot = plot_width / max(1, len(labels))
    for number, line in enumerate(series):
        points = " ".join(
            f"{_LEFT + slot * (index + 0.5):.1f},{_TOP + plot_height - plot_height * value / top:.1f}"
            for index, value in enumerate(line.values)
        )
        parts.append(
            f'<polyline class="series" data-series="{escape(line.name)}" data-total="{sum(line.values):g}" '
            f'points="{points}" fill="none" stroke="{escape(line.color)}" stroke-width="2"/>'
        )
        legend_x = _LEFT + 10 + number * 120
        parts.append(f'<rect x="{legend_x}" y="{_HEIGHT - 14}" width="10" height="10" fill="{escape(line.color)}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{_HEIGHT - 5}" font-size="11">{escape(line.name)}</text>')
    return _svg(parts, chart_id, title)
