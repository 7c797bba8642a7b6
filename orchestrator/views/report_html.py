# ruff: noqa: E501
"""The run report as one self-contained HTML page: inline CSS, the timeline as inline SVG.

No script, font or stylesheet from the network: the page opens the same
offline, from a file, years later. Rendered with Jinja2 (autoescaped); the
facts come from :func:`orchestrator.views.report.build_report`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.plan.models import format_duration
from orchestrator.views.timeline import COLOURS, timeline_svg

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Run {{ d.run_id }}: {{ d.status }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 24px auto; max-width: 1000px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 8px 0; width: 100%; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f3f3; padding: 1px 3px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
{% for key, colour in colours.items() %}.s-{{ key }} { background: {{ colour }}; }
{% endfor %}
.s-pending, .s-skipped { background: #999; }
.reason { color: #8a1f1f; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 8px; margin: 12px 0; }
.figure { background: #f6f6f6; border-radius: 6px; padding: 8px 10px; }
.figure b { display: block; font-size: 18px; }
ul.check { list-style: none; padding-left: 4px; } ul.check li::before { content: "\\2610  "; }
ul.check li.done::before { content: "\\2611  "; color: #2e9e44; }
.timeline-box { overflow-x: auto; border: 1px solid #e5e5e5; border-radius: 6px; }
</style>
</head>
<body>
<h1>Run <code>{{ d.run_id }}</code> <span class="status s-{{ d.status }}">{{ d.status }}</span></h1>
{% if d.reason %}<p class="reason">{{ d.reason }}</p>{% endif %}
<p>Plan <code>{{ d.plan or "-" }}</code>, base <code>{{ d.base_ref or "-" }}</code>
({{ (d.base_commit or "")[:10] }}), {{ d.isolation or "worktree" }} isolation, started {{ stamp(d.started) }}.</p>
<div class="figures">
  <div class="figure"><b>{{ dur(t.wall_time) }}</b>wall time</div>
  <div class="figure"><b>{{ dur(t.busy_agent_time) }}</b>busy agent time</div>
  <div class="figure"><b>{{ pct(t.parallel_efficiency) }}</b>parallel efficiency (max {{ t.max_parallel }})</div>
  <div class="figure"><b>{{ times(t.speedup) }}</b>speed-up over one team at a time</div>
  <div class="figure"><b>{{ t.teams }}</b>teams, {{ t.attempts }} attempts</div>
  <div class="figure"><b>{{ t.tokens }}</b>tokens, ${{ "%.4f"|format(t.cost_usd) }}</div>
</div>
<h2>Timeline</h2>
<div class="timeline-box" id="timeline">{{ svg|safe }}</div>
<h2>Teams</h2>
<table>
<tr><th>team</th><th>status</th><th>attempts</th><th>duration</th><th>tokens</th><th>cost</th></tr>
{% for team in d.teams %}<tr><td><a href="#team-{{ team.id }}">{{ team.id }}</a></td>
<td><span class="status s-{{ team.status }}">{{ team.status }}</span></td><td>{{ team.attempts|length }}</td>
<td>{{ dur(team.duration) }}</td><td>{{ team.tokens }}</td><td>${{ "%.4f"|format(team.cost_usd) }}</td></tr>
{% endfor %}</table>
{% for team in d.teams %}
<h3 id="team-{{ team.id }}">{{ heading(team) }} <span class="status s-{{ team.status }}">{{ team.status }}</span></h3>
{% if team.reason %}<p class="reason">{{ team.reason }}</p>{% endif %}
{% if team.attempts %}<table>
<tr><th>#</th><th>agent</th><th>duration</th><th>exit</th><th>outcome</th><th>reason</th><th>tokens</th><th>cost</th></tr>
{% for a in team.attempts %}<tr><td>{{ a.attempt }}</td><td><code>{{ a.agent_id or "-" }}</code></td><td>{{ dur(a.duration) }}</td>
<td>{{ "-" if a.exit_code is none else a.exit_code }}</td><td><span class="status s-{{ a.outcome }}">{{ a.outcome }}</span></td>
<td>{{ a.reason or "" }}</td><td>{{ a.tokens }}</td><td>${{ "%.4f"|format(a.cost_usd) }}</td></tr>
{% endfor %}</table>{% endif %}
{% if team.deliverables %}<p>Deliverables:</p><ul class="check">
{% for dl in team.deliverables %}<li class="{{ 'done' if dl.done }}"><code>{{ dl.deliverable }}</code>{% if dl.files != [dl.deliverable] %}:
{% if dl.files %}{% for f in dl.files %}<code>{{ f }}</code>{{ ", " if not loop.last }}{% endfor %}{% else %}not found{% endif %}{% endif %}</li>
{% endfor %}</ul>{% endif %}
{% if team.checks %}<p>Checks:</p><ul class="check">
{% for c in team.checks %}<li class="{{ 'done' if c.passed }}"><code>{{ c.command }}</code>: {{ c.result or ("passed" if c.passed else "failed") }}</li>
{% endfor %}</ul>{% endif %}
{% endfor %}
<h2>Integration</h2>
<ul>{% for line in integration %}<li>{{ line }}</li>{% endfor %}</ul>
<p><small>Generated {{ stamp(d.generated) }} by orchestrate.</small></p>
</body>
</html>
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def render_html(data: Mapping[str, Any]) -> str:
    """The whole HTML page."""
    import time

    import jinja2

    from orchestrator.views.report import heading, integration_lines

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    lines = [line.replace("**", "").replace("`", "") for line in integration_lines(data)]
    return template.render(
        d=data,
        t=data["totals"],
        svg=timeline_svg(data),
        colours=COLOURS,
        integration=lines,
        heading=heading,
        dur=_dur,
        pct=_pct,
        times=_times,
        stamp=lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-",
    )
