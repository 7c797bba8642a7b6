"""Helpers for the engine tests (no tests here): a scriptable fake agent and plans that use it.

The fake agent is a real process (``sys.executable agent.py``). What it does
per team and attempt comes from a JSON spec file beside it::

    {"times": "/tmp/.../times.jsonl",
     "teams": {"db": {"files": {"src/db.txt": "db"}, "sleep": 0.2,
                      "fail_attempts": 1, "skip_files_attempts": 1, "hang": false}}}

It appends ``{"team", "attempt", "start", "end"}`` to ``times`` (wall clock),
writes its files in the cwd (its worktree), prints a line or two and exits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

AGENT = r"""
import json, os, sys, time
spec = json.load(open(sys.argv[1]))
team, attempt = os.environ["ORCHESTRATE_TEAM"], int(os.environ["ORCHESTRATE_ATTEMPT"])
me = spec["teams"].get(team, {})
start = time.time()
print(f"{team} attempt {attempt} starting in {os.getcwd()}", flush=True)
if me.get("pidfile"):
    open(me["pidfile"], "w").write(str(os.getpid()))
if me.get("hang"):
    time.sleep(3600)
time.sleep(me.get("sleep", 0.0))
if attempt > me.get("skip_files_attempts", 0):
    for rel, text in me.get("files", {}).items():
        os.makedirs(os.path.dirname(rel) or ".", exist_ok=True)
        open(rel, "w").write(text)
code = 1 if attempt <= me.get("fail_attempts", 0) else 0
end = time.time()
with open(spec["times"], "a") as fh:
    fh.write(json.dumps({"team": team, "attempt": attempt, "start": start, "end": end}) + "\n")
said = f"done: {team} wrote {sorted(me.get('files', {}))}" if code == 0 else f"{team} broke"
print(said, flush=True)
sys.exit(code)
"""


def write_agent(folder: Path, teams: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], Path]:
    """Write the fake agent and its spec in ``folder``; (its command, the times file)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "agent.py"
    script.write_text(AGENT)
    times = folder / "times.jsonl"
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"times": str(times), "teams": teams}))
    return [sys.executable, "-u", str(script), str(spec)], times


def read_times(times: Path) -> list[dict[str, Any]]:
    if not times.exists():
        return []
    return [json.loads(line) for line in times.read_text().splitlines() if line.strip()]


def max_overlap(times: Sequence[Mapping[str, Any]]) -> int:
    """The most attempts that ran at the same moment."""
    points = sorted(
        [(t["start"], 1) for t in times] + [(t["end"], -1) for t in times],
        key=lambda p: (p[0], p[1]),
    )
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


SEVEN = [
    ("db", []),
    ("auth", ["db"]),
    ("api", ["db"]),
    ("services", ["db"]),
    ("frontend", ["auth", "api", "services"]),
    ("tests", ["frontend"]),
    ("deploy", ["tests"]),
]
"""A typical coordination plan: a foundation, three teams on it, one on those, tests, deploy."""


def plan_yaml(
    command: Sequence[str],
    teams: Sequence[tuple[str, Sequence[str]]],
    *,
    deliverables: Mapping[str, Sequence[str]] | None = None,
    checks: Mapping[str, Sequence[str]] | None = None,
    **top: Any,
) -> str:
    """A plan whose teams all use the fake agent; team X delivers ``src/X.txt`` by default."""
    doc: dict[str, Any] = {
        "version": 1,
        "name": "demo",
        "max_parallel": 4,
        "defaults": {"agent": "fake", "timeout": "60s", "retries": 2},
        "agents": {"fake": {"kind": "command", "command": list(command)}},
        "teams": [
            {
                "id": tid,
                "task": f"Build the {tid} part.",
                "deliverables": list((deliverables or {}).get(tid, [f"src/{tid}.txt"])),
                "checks": list((checks or {}).get(tid, [])),
                "depends_on": list(deps),
            }
            for tid, deps in teams
        ],
    }
    for key, value in top.items():
        if key == "defaults":
            doc["defaults"].update(value)
        else:
            doc[key] = value
    return yaml.safe_dump(doc, sort_keys=False)


def files_for(teams: Sequence[tuple[str, Sequence[str]]], **extra: Any) -> dict[str, Any]:
    """The spec entry of each team: write its deliverable ``src/<team>.txt``."""
    out: dict[str, Any] = {tid: {"files": {f"src/{tid}.txt": f"{tid}\n"}} for tid, _ in teams}
    for tid, more in extra.items():
        out[tid] = {**out.get(tid, {}), **more}
    return out
