"""The run report: what happened, from the store, as Markdown, JSON and HTML.

::

    paths = await write_reports(store, layout, run_id)     # report.md, .json, .html
    data = await build_report(store, run_id)               # the same facts as a dict

Everything comes from the store (the run, its teams, their attempts and
deliverables, the integration's recorded result) and the plan copy the run
recorded; nothing is re-run. The JSON is :func:`build_report`'s dict as it is
(its ``format`` field versions it); Markdown and HTML are views of it. Every
text goes through secret redaction (:mod:`orchestrator.redact`).

Figures per run: wall time (run created to its last recorded moment), busy
agent time (the sum of every team attempt's duration), parallel efficiency =
busy / (wall x max_parallel), speed-up = sum of team durations (first attempt
start to last attempt end) / wall time.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from orchestrator.paths import StateLayout
from orchestrator.plan.models import format_duration
from orchestrator.state.integration import load_result
from orchestrator.state.runs import recorded_plan
from orchestrator.state.status import TeamStatus
from orchestrator.state.store import AttemptState, Store, TeamState

FORMATS = ("md", "json", "html")
REPORT_FORMAT = 1
"""Version of the JSON layout."""

_CHECK_RE = re.compile(
    r"check `(?P<cmd>[^`]*)` (?P<what>failed \(exit (?P<code>-?\d+)\)|timed out|could not run)"
)


# -- redaction ------------------------------------------------------------------------------


def _redactor(store: Store) -> Callable[[str], str]:
    """Secret values (the environment's keys and tokens, the Redis password) to ``***``."""
    from orchestrator.redact import Redactor

    return Redactor.from_env(extra=store.secrets).redact


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string inside ``value`` (dicts, lists) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v, redact) for v in value]
    return value


# -- facts ------------------------------------------------------------------------------------


def _duration(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def _outcome(attempt: AttemptState, team: TeamState) -> str:
    """How one attempt ended: succeeded, failed, cancelled, running; retried: a later one ran."""
    if attempt.attempt < team.attempt:
        return "retried"
    if team.status.final:
        return team.status
    return attempt.status or team.status


def _check_result(check: Mapping[str, Any]) -> str:
    if check.get("passed"):
        return "passed"
    if check.get("timed_out"):
        return "timed out"
    if check.get("exit_code") is None:
        return "could not run"
    return f"failed (exit {check['exit_code']})"


def _recorded_checks(attempt: AttemptState | None) -> list[dict[str, Any]] | None:
    """The checks' results the engine recorded on ``attempt`` (its field ``checks``, JSON
    ``[{command, passed, exit_code, duration, timed_out}]``); None when it recorded none
    (the agent failed first, or a run from before the field existed)."""
    raw = attempt.fields.get("checks") if attempt is not None else None
    if not raw:
        return None
    try:
        stored = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(stored, list):
        return None
    return [
        {
            "command": str(c.get("command", "")),
            "result": _check_result(c),
            "passed": bool(c.get("passed")),
            "exit_code": c.get("exit_code"),
            "duration": c.get("duration"),
            "timed_out": bool(c.get("timed_out")),
            "source": "recorded",
        }
        for c in stored
        if isinstance(c, dict)
    ]


def _checks(
    commands: Sequence[str], attempt: AttemptState | None, team: TeamState
) -> list[dict[str, Any]]:
    """Each check of the team and its result on the last attempt.

    As the engine recorded them on that attempt; for a run from before it did
    (or an attempt whose checks did not run), inferred: a team that succeeded
    passed every check; a failed check is named in the attempt's reason.
    """
    recorded = _recorded_checks(attempt)
    if recorded is not None:
        return recorded
    failed: dict[str, str] = {}
    reason = (attempt.reason if attempt else None) or team.reason or ""
    for m in _CHECK_RE.finditer(reason):
        failed[m.group("cmd")] = m.group("what")
    out = []
    for cmd in commands:
        if team.status is TeamStatus.SUCCEEDED:
            result = "passed"
        elif cmd in failed:
            result = failed[cmd]
        elif failed:
            result = "passed"  # every check runs; the failing ones are named
        else:
            result = "not run"
        out.append(
            {"command": cmd, "result": result, "passed": result == "passed", "source": "inferred"}
        )
    return out


def _deliverables(patterns: Sequence[str], found: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """The checklist: each deliverable as planned, done or not, with the files found for it."""
    if not patterns:
        return [
            {"deliverable": p, "done": d is not None, "files": [p] if d else []}
            for p, d in found.items()
        ]
    out = []
    for raw in patterns:
        pattern = raw.strip().lstrip("/")
        files = sorted(
            p
            for p, d in found.items()
            if d is not None and (p == pattern or fnmatch.fnmatchcase(p, pattern))
        )
        out.append({"deliverable": raw, "done": bool(files), "files": files})
    return out


def _attempt_dict(a: AttemptState, team: TeamState) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "agent_id": a.agent_id,
        "host": a.fields.get("host") or None,  # the node that ran it (ray executor)
        "started": a.started,
        "finished": a.finished,
        "duration": _duration(a.started, a.finished),
        "exit_code": a.exit_code,
        "outcome": _outcome(a, team),
        "reason": a.reason or None,
        "input_tokens": a.usage.input_tokens,
        "output_tokens": a.usage.output_tokens,
        "tokens": a.usage.tokens,
        "cost_usd": round(a.usage.cost_usd, 6),
        "checks": _recorded_checks(a),
    }


_DECIDED = re.compile(r"^(?P<decision>approved|rejected) by (?P<by>\S+)(?:: (?P<text>.*))?$", re.S)


async def _reviews(store: Store, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every approval-gate decision of the run, per team, oldest first (from its events)."""
    found: dict[str, list[dict[str, Any]]] = {}
    after = "0-0"
    while True:
        events = await store.read_events(run_id, after=after, count=5000)
        if not events:
            return found
        after = events[-1].id
        for event in events:
            m = _DECIDED.match(event.reason or "") if event.type == "gate" else None
            if m is None or event.team is None:
                continue
            found.setdefault(event.team, []).append(
                {
                    "attempt": event.attempt,
                    "decision": m["decision"],
                    "by": m["by"],
                    "at": event.ts,
                    "text": m["text"],
                }
            )


async def build_report(store: Store, run_id: str) -> dict[str, Any]:
    """The report's facts as a JSON-able dict (secrets redacted). UsageError: unknown run."""
    run = await store.get_run(run_id)
    reviews = await _reviews(store, run_id)
    plan = recorded_plan(run)
    teams = await store.get_teams(run_id)
    integration = await load_result(store, run_id)
    team_rows: list[dict[str, Any]] = []
    busy = 0.0
    team_time = 0.0
    moments = [m for m in (run.created, run.updated) if m is not None]
    every_attempt = await store.attempts_of(run_id, {t: s.attempt for t, s in teams.items()})
    for tid, state in teams.items():
        attempts = every_attempt[tid]
        rows = [_attempt_dict(a, state) for a in attempts]
        durations = [r["duration"] for r in rows if r["duration"] is not None]
        busy += sum(durations)
        starts = [a.started for a in attempts if a.started is not None]
        ends = [a.finished for a in attempts if a.finished is not None]
        moments += starts + ends
        span = _duration(min(starts), max(ends)) if starts and ends else None
        team_time += span or 0.0
        spec = plan.team(tid) if plan is not None and tid in {t.id for t in plan.teams} else None
        from orchestrator.verify import command_text

        commands = [command_text(c) for c in spec.checks] if spec else []
        team_rows.append(
            {
                "id": tid,
                "name": spec.title if spec else tid,
                "status": state.status,
                "reason": state.reason if state.status is not TeamStatus.SUCCEEDED else None,
                "branch": state.branch,
                "commit": state.fields.get("commit") or None,
                "host": state.fields.get("host") or None,
                "depends_on": list(spec.depends_on) if spec else [],
                "attempts": rows,
                "duration": span,
                "deliverables": _deliverables(
                    spec.deliverables if spec else (), state.deliverables
                ),
                "checks": _checks(commands, attempts[-1] if attempts else None, state),
                "tokens": state.usage.tokens,
                "cost_usd": round(state.usage.cost_usd, 6),
                "reviews": reviews.get(tid, []),
            }
        )
    if integration is not None:
        moments += [m for m in (integration.started, integration.finished) if m is not None]
    finished = float(run.meta["finished"]) if run.meta.get("finished") else None
    start = run.created or (min(moments) if moments else time.time())
    end = max([*moments, *([finished] if finished else [])], default=start)
    wall = max(0.0, end - start)
    max_parallel = plan.max_parallel if plan is not None else 1
    counts: dict[str, int] = {}
    for row in team_rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    data: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "run_id": run_id,
        "plan": plan.name if plan is not None else run.meta.get("plan_name"),
        "status": run.status,
        "reason": run.meta.get("reason") or None,
        "base_ref": run.meta.get("base_ref"),
        "base_commit": run.meta.get("base_commit"),
        "isolation": run.meta.get("isolation") or (plan.isolation if plan else None),
        "started": start,
        "finished": end,
        "generated": time.time(),
        "teams": team_rows,
        "integration": integration.model_dump(mode="json") if integration is not None else None,
        "totals": {
            "teams": len(team_rows),
            "by_status": counts,
            "attempts": sum(len(r["attempts"]) for r in team_rows),
            "input_tokens": run.usage.input_tokens,
            "output_tokens": run.usage.output_tokens,
            "tokens": run.usage.tokens,
            "cost_usd": round(run.usage.cost_usd, 6),
            "wall_time": wall,
            "busy_agent_time": busy,
            "max_parallel": max_parallel,
            "parallel_efficiency": (busy / (wall * max_parallel)) if wall > 0 else None,
            "sum_team_durations": team_time,
            "speedup": (team_time / wall) if wall > 0 else None,
        },
    }
    result: dict[str, Any] = redact_tree(data, _redactor(store))
    return result


# -- Markdown ---------------------------------------------------------------------------------


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def _stamp(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _cell(text: object) -> str:
    return str("-" if text is None or text == "" else text).replace("|", "\\|").replace("\n", " ")


def heading(team: Mapping[str, Any]) -> str:
    """``db: Database``, or the id alone when the team has no name of its own."""
    name = team.get("name")
    return team["id"] if not name or name == team["id"] else f"{team['id']}: {name}"


def integration_lines(data: Mapping[str, Any]) -> list[str]:
    """The integration section's facts as plain sentences (Markdown and HTML share them)."""
    i = data.get("integration")
    if not i:
        return ["Integration did not run."]
    out = [f"Status: **{i['status']}**" + (f": {i['reason']}" if i.get("reason") else "")]
    out.append(f"Branch: `{i['branch']}`" + (f" at `{i['head'][:10]}`" if i.get("head") else ""))
    if i.get("isolation") == "shared":
        out.append(
            "Shared isolation: the run branch is the integration branch; nothing was merged."
        )
    elif i.get("order"):
        out.append(
            "Merge order: "
            + " → ".join(i["order"])
            + f" (merged: {', '.join(i['merged']) or 'none'})"
        )
    if i.get("left_out"):
        out.append("Left out (did not succeed): " + ", ".join(i["left_out"]))
    for c in i.get("conflicts", []):
        sides = "; ".join(
            f"{f} between {', '.join(c['others'].get(f) or []) or 'an earlier merge'}"
            f" and {c['team']}"
            for f in c["files"]
        )
        out.append(f"Conflict merging {c['team']}: {sides}: {c['resolution'] or 'unresolved'}")
    for s in i.get("suite", []):
        what = (
            "bisect with " + (", ".join(s["prefix"]) or "no team")
            if s["purpose"] == "bisect"
            else "test suite" + (f", after fix {s['round']}" if s.get("round") else "")
        )
        verdict = (
            "passed"
            if s["passed"]
            else f"failed ({s.get('reason') or 'exit ' + str(s.get('exit_code'))})"
        )
        took = _dur(_duration(s.get("started"), s.get("finished")))
        out.append(f"{what}: {verdict} in {took}")
    if i.get("test_passed") is None and not i.get("suite"):
        out.append("Test suite: none run.")
    for a in i.get("agents", []):
        out.append(
            f"{a['role']} agent {a['agent']} (id {a['agent_id']}): {'ok' if a['ok'] else 'failed'}"
            + (f": {a['reason']}" if a.get("reason") else "")
        )
    if i.get("bisection"):
        out.append(f"Bisection: {i['bisection']['verdict']}")
    return out


def _row(*cells: object) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown(data: Mapping[str, Any]) -> str:
    """The report as Markdown."""
    t = data["totals"]
    lines = [f"# Run {data['run_id']}: {data['status']}", ""]
    if data.get("reason"):
        lines += [f"> {data['reason']}", ""]
    lines += [
        f"- Plan: `{data.get('plan') or '-'}`, base `{data.get('base_ref') or '-'}`"
        f" ({(data.get('base_commit') or '')[:10] or '-'})",
        f"- Started {_stamp(data['started'])}, wall time {_dur(t['wall_time'])}",
        f"- Teams: {t['teams']} ("
        + ", ".join(f"{v} {k}" for k, v in sorted(t["by_status"].items()))
        + f"), attempts: {t['attempts']}",
        f"- Tokens: {t['tokens']} (in {t['input_tokens']}, out {t['output_tokens']}),"
        f" cost ${t['cost_usd']:.4f}",
        f"- Busy agent time {_dur(t['busy_agent_time'])}; parallel efficiency "
        + (f"{t['parallel_efficiency']:.0%}" if t["parallel_efficiency"] is not None else "-")
        + f" (max_parallel {t['max_parallel']}); speed-up over one team at a time "
        + (f"{t['speedup']:.2f}x" if t["speedup"] is not None else "-"),
        "",
        "## Teams",
        "",
        "| team | status | attempts | duration | tokens | cost |",
        "|---|---|---|---|---|---|",
    ]
    for team in data["teams"]:
        lines.append(
            _row(
                team["id"],
                team["status"],
                len(team["attempts"]),
                _dur(team["duration"]),
                team["tokens"],
                f"${team['cost_usd']:.4f}",
            )
        )
    for team in data["teams"]:
        lines += ["", f"### {heading(team)} ({team['status']})", ""]
        if team.get("reason"):
            lines += [f"Reason: {team['reason']}", ""]
        if team["attempts"]:
            lines += [
                "| attempt | agent | duration | exit | outcome | reason | tokens | cost |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for a in team["attempts"]:
                lines.append(
                    _row(
                        a["attempt"],
                        f"{a['agent_id']} on {a['host']}" if a.get("host") else a["agent_id"],
                        _dur(a["duration"]),
                        a["exit_code"],
                        a["outcome"],
                        a["reason"],
                        a["tokens"],
                        f"${a['cost_usd']:.4f}",
                    )
                )
            lines.append("")
        if team["deliverables"]:
            lines.append("Deliverables:")
            for d in team["deliverables"]:
                found = ", ".join(f"`{f}`" for f in d["files"]) or "not found"
                tail = "" if d["files"] == [d["deliverable"]] else f": {found}"
                lines.append(f"- [{'x' if d['done'] else ' '}] `{d['deliverable']}`{tail}")
            lines.append("")
        if team.get("reviews"):
            lines.append("Reviews:")
            for r in team["reviews"]:
                said = f": {r['text']}" if r.get("text") else ""
                lines.append(
                    f"- attempt {r['attempt']} {r['decision']} by {r['by']}"
                    f" at {_stamp(r['at'])}{said}"
                )
            lines.append("")
        if team["checks"]:
            lines.append("Checks:")
            for c in team["checks"]:
                lines.append(
                    f"- [{'x' if c['passed'] else ' '}] `{c['command']}`: "
                    + str(c.get("result") or ("passed" if c["passed"] else "failed"))
                )
            lines.append("")
    lines += ["## Integration", ""]
    lines += [f"- {line}" for line in integration_lines(data)]
    lines += ["", f"_Generated {_stamp(data['generated'])} by orchestrate._", ""]
    return "\n".join(lines)


# -- files ------------------------------------------------------------------------------------


def render(data: Mapping[str, Any], fmt: str) -> str:
    """The report in ``fmt`` (md, json, html)."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        from orchestrator.views.report_html import render_html

        return render_html(data)
    raise ValueError(f"unknown report format {fmt!r}")


async def write_reports(
    store: Store, layout: StateLayout, run_id: str, formats: Sequence[str] = FORMATS
) -> dict[str, Path]:
    """Write ``runs/<run>/report.<fmt>`` for each format (write + rename); fmt -> path."""
    data = await build_report(store, run_id)
    out: dict[str, Path] = {}
    for fmt in formats:
        path = layout.report_file(run_id, fmt)
        text = render(data, fmt)
        await anyio.to_thread.run_sync(_write, path, text)
        out[fmt] = path
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
