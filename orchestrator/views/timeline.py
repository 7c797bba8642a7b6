# ruff: noqa: E501
"""The run's timeline as a self-contained SVG: one row per team, one bar per attempt.

Bars are placed by wall-clock time from the run's start and coloured by how
the attempt ended (:data:`COLOURS`); the integration phase gets the last row,
one bar per suite run or agent it started. No script, no external resource:
the SVG is inlined in the HTML report and opens offline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any

from orchestrator.state.status import IntegrationStatus, TeamStatus

RETRIED = "retried"
"""An attempt a later one replaced (not a status: the report's outcome of that attempt)."""
INTEGRATION = "integration"
"""The integration's bars that passed."""
COLOURS: dict[str, str] = {
    TeamStatus.SUCCEEDED: "#2e9e44",
    TeamStatus.FAILED: "#d64545",
    RETRIED: "#e8a33d",
    TeamStatus.CANCELLED: "#8a8a8a",
    TeamStatus.BLOCKED: "#b0b0b0",
    TeamStatus.RUNNING: "#3b82f6",
    TeamStatus.VERIFYING: "#3b82f6",
    INTEGRATION: "#6b5bd6",
}
"""Bar colour per outcome (integration bars: ``integration`` passed, ``failed`` failed)."""

WIDTH = 960
ROW = 26
BAR = 16
LABEL = 130
TOP = 28
BOTTOM = 24


def _bars(data: Mapping[str, Any]) -> list[tuple[str, list[tuple[float, float, str, str]]]]:
    """Rows: (label, [(start, end, colour key, tooltip)])."""
    rows = []
    for team in data["teams"]:
        bars = []
        for a in team["attempts"]:
            if a["started"] is None:
                continue
            end = a["finished"] or data["finished"]
            tip = f"{team['id']} attempt {a['attempt']} (agent {a['agent_id']}): {a['outcome']}"
            if a.get("reason"):
                tip += f": {a['reason']}"
            bars.append((a["started"], end, a["outcome"], tip))
        rows.append((team["id"], bars))
    i = data.get("integration")
    if i:
        bars = []
        for s in i.get("suite", []):
            if s["purpose"] == "bisect":
                what = "bisect with " + (", ".join(s.get("prefix") or []) or "no team")
            else:
                what = "test suite" + (f", after fix {s['round']}" if s.get("round") else "")
            key = INTEGRATION if s["passed"] else TeamStatus.FAILED
            bars.append(
                (
                    s["started"],
                    s.get("finished") or data["finished"],
                    key,
                    f"{what}: {'passed' if s['passed'] else 'failed'}",
                )
            )
        for a in i.get("agents", []):
            key = INTEGRATION if a["ok"] else TeamStatus.FAILED
            bars.append((a["started"], a["finished"], key, f"{a['role']} agent {a['agent_id']}"))
        if not bars and i.get("started"):
            key = INTEGRATION if i["status"] == IntegrationStatus.SUCCEEDED else TeamStatus.FAILED
            bars.append(
                (
                    i["started"],
                    i.get("finished") or data["finished"],
                    key,
                    f"integration {i['status']}",
                )
            )
        rows.append(("integration", bars))
    return rows


def _tick_step(span: float) -> float:
    """A round step giving at most ~8 ticks."""
    raw = span / 8 if span > 0 else 1
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= raw:
            return step
    return 3600 * math.ceil(raw / 3600)


def _tick_label(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def timeline_svg(data: Mapping[str, Any]) -> str:
    """The SVG document (an ``<svg>`` element with explicit width and height)."""
    rows = _bars(data)
    start = float(data["started"])
    span = max(float(data["finished"]) - start, 0.001)
    plot = WIDTH - LABEL - 20
    height = TOP + ROW * max(len(rows), 1) + BOTTOM

    def x(ts: float) -> float:
        return LABEL + plot * min(max((ts - start) / span, 0.0), 1.0)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of the run">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    step = _tick_step(span)
    t = 0.0
    while t <= span + 1e-9:
        tx = LABEL + plot * t / span
        out.append(
            f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{height - BOTTOM}" stroke="#e3e3e3"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{TOP - 10}" font-size="10" text-anchor="middle" fill="#666">{_tick_label(t)}</text>'
        )
        t += step
    for index, (label, bars) in enumerate(rows):
        y = TOP + index * ROW
        out.append(
            f'<text x="{LABEL - 8}" y="{y + ROW / 2 + 4:.1f}" font-size="12" text-anchor="end" fill="#222">{escape(label)}</text>'
        )
        for b_start, b_end, key, tip in bars:
            x0 = x(b_start)
            w = max(x(b_end) - x0, 3.0)
            colour = COLOURS.get(key, "#3b82f6")
            out.append(
                f'<rect class="bar bar-{escape(key)}" x="{x0:.1f}" y="{y + (ROW - BAR) / 2:.1f}" width="{w:.1f}" '
                f'height="{BAR}" rx="3" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
    legend_y = height - 8
    lx = LABEL
    for key in (
        TeamStatus.SUCCEEDED, RETRIED, TeamStatus.FAILED, TeamStatus.CANCELLED, INTEGRATION
    ):
        out.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS[key]}"/>'
        )
        out.append(f'<text x="{lx + 14}" y="{legend_y}" font-size="10" fill="#444">{key}</text>')
        lx += 100
    out.append("</svg>")
    return "\n".join(out)
