"""Inline SVG bar charts, drawn on the server: succeeded (below) and failed (stacked above) jobs
per bucket. No chart library: a few hundred ``<rect>`` elements, each bar with a ``<title>`` that
a browser shows on hover (the bucket's start with its time zone), and the same markup whether
the page is loaded or refreshed. Built with plain string formatting: 14 charts of up to 96 bars
cost a few milliseconds."""

from __future__ import annotations

from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from apps.dashboard.selectors import Series

WIDTH = 240
HEIGHT = 40
# An empty chart says so rather than showing a blank box.
EMPTY = (
    f'<text class="cv-chart-empty" x="{WIDTH // 2}" y="{HEIGHT // 2 + 4}" text-anchor="middle">'
    "no job finished</text>"
)


def bar_chart(series: Series | None, *, label: str, time_format: str = "%H:%M") -> SafeString:
    head = (
        f'<svg class="cv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{escape(label)}" preserveAspectRatio="none">'
        f'<rect class="cv-chart-bg" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>'
    )
    pairs = list(zip(series.succeeded, series.failed, strict=True)) if series else []
    peak = max((ok + bad for ok, bad in pairs), default=0)
    if series is None or not peak:
        return mark_safe(head + EMPTY + "</svg>")  # noqa: S308 - escaped above
    zone = timezone.get_current_timezone()
    width = WIDTH / len(pairs)
    bar = round(max(width - 0.5, 0.5), 2)
    scale = HEIGHT / peak
    parts = [head]
    for i, (ok, bad) in enumerate(pairs):
        if not ok and not bad:
            continue
        x = round(i * width, 2)
        ok_h, bad_h = round(ok * scale, 2), round(bad * scale, 2)
        when = series.starts[i].astimezone(zone).strftime(f"{time_format} %Z")
        parts.append(f"<g><title>{escape(when)}: {ok} succeeded, {bad} failed</title>")
        if ok:
            parts.append(
                f'<rect class="cv-ok" x="{x}" y="{round(HEIGHT - ok_h, 2)}" width="{bar}"'
                f' height="{ok_h}"/>'
            )
        if bad:
            parts.append(
                f'<rect class="cv-failed" x="{x}" y="{round(HEIGHT - ok_h - bad_h, 2)}"'
                f' width="{bar}" height="{bad_h}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
