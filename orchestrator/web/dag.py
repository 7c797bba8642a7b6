"""The team DAG as an inline SVG: one column per wave, edges by dependency, the critical
path marked.

Nodes carry ``id="node-<team>"`` and a ``st-<status>`` class, so the page's
script recolours them as events arrive without redrawing. No script or
external resource inside the SVG.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from html import escape

from orchestrator.plan import graph
from orchestrator.plan.models import Plan
from orchestrator.state.status import TeamStatus

NODE_W = 150
NODE_H = 34
COL_GAP = 70
ROW_GAP = 16
PAD = 12


def _label(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dag_svg(plan: Plan, status: Mapping[str, str]) -> str:
    """The plan's DAG; ``status`` colours each node (team id -> team status)."""
    columns = graph.waves(plan)
    path, _ = graph.critical_path(plan)
    on_path = set(path)
    path_edges = set(itertools.pairwise(path))
    pos: dict[str, tuple[float, float]] = {}
    for c, column in enumerate(columns):
        for r, tid in enumerate(column):
            pos[tid] = (PAD + c * (NODE_W + COL_GAP), PAD + r * (NODE_H + ROW_GAP))
    rows = max((len(c) for c in columns), default=1)
    width = PAD * 2 + max(1, len(columns)) * (NODE_W + COL_GAP) - COL_GAP
    height = PAD * 2 + rows * (NODE_H + ROW_GAP) - ROW_GAP
    out = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="team dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
        "</marker></defs>",
    ]
    for team in plan.teams:
        x2, y2 = pos[team.id]
        for up in team.depends_on:
            x1, y1 = pos[up]
            sx, sy = x1 + NODE_W, y1 + NODE_H / 2
            ex, ey = x2, y2 + NODE_H / 2
            mid = (sx + ex) / 2
            cls = "edge crit" if (up, team.id) in path_edges else "edge"
            out.append(
                f'<path class="{cls}" d="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} '
                f'{ex:.0f},{ey:.0f}" marker-end="url(#arrow)"/>'
            )
    for team in plan.teams:
        x, y = pos[team.id]
        st = status.get(team.id, TeamStatus.PENDING)
        crit = " crit" if team.id in on_path else ""
        tid = escape(team.id)
        title = escape(f"{team.id}: {team.title}" if team.name else team.id)
        out.append(
            f'<a href="teams/{tid}"><g id="node-{tid}" class="node st-{escape(st)}{crit}" '
            f'data-team="{tid}"><title>{title}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 4:.0f}">'
            f"{escape(_label(team.id))}</text></g></a>"
        )
    out.append("</svg>")
    return "".join(out)
