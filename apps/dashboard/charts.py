"""Inline SVG bar charts, drawn on the server: succeeded (below) and failed (stacked above) jobs
per bucket. No chart library: a few hundred ``<rect>`` elements, each with a ``<title>`` that a
browser shows on hover, and the same markup whether the page is loaded or refreshed."""

from __future__ import annotations

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from apps.dashboard.selectors import Series

WIDTH = 240
HEIGHT = 40


def bar_chart(series: Series | None, *, label: str, time_format: str = "%H:%M") -> SafeString:
    if series is None or not series.starts:
        series_count = 0
        peak = 0
    else:
        series_count = len(series.starts)
        peak = max(s + f for s, f in zip(series.succeeded, series.failed, strict=True))
    parts = [
        f'<svg class="cv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{escape(label)}" preserveAspectRatio="none">',
        f'<rect class="cv-chart-bg" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>',
    ]
    if series is not None and peak:
        width = WIDTH / series_count
        for i, start in enumerate(series.starts):
            ok, bad = series.succeeded[i], series.failed[i]
            if not ok and not bad:
                continue
            x = round(i * width, 2)
            w = round(max(width - 0.5, 0.5), 2)
            ok_h = round(HEIGHT * ok / peak, 2)
            bad_h = round(HEIGHT * bad / peak, 2)
            when = timezone.localtime(start).strftime(f"{time_format} %Z")
            tip = escape(f"{when}: {ok} succeeded, {bad} failed")
            parts.append(f"<g><title>{tip}</title>")
            if ok:
                y = round(HEIGHT - ok_h, 2)
                parts.append(f'<rect class="cv-ok" x="{x}" y="{y}" width="{w}" height="{ok_h}"/>')
            if bad:
                y = round(HEIGHT - ok_h - bad_h, 2)
                parts.append(
                    f'<rect class="cv-failed" x="{x}" y="{y}" width="{w}" height="{bad_h}"/>'
                )
            parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
