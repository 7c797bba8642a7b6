"""Helpers shared by the benchmark scripts (not part of the orchestrate package).

Every script:

- takes ``--quick`` (a small size that runs in seconds, for the smoke test) and
  ``--results FILE`` (the Markdown table to update; default ``bench/results.md``
  for full runs, none for ``--quick`` runs);
- prints one ``RESULT`` line per number: ``RESULT <bench> <metric> <value> <unit>
  target=<...> <ok|MISSED|-> load=<1-min load average>``;
- updates its rows of the results table (one row per bench + metric, replaced on
  each full run) with the date, the load average and the verdict.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_RESULTS = BENCH_DIR / "results.md"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
ORCHESTRATE = [sys.executable, "-m", "orchestrator"]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` and ``--results``."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small size that runs in seconds")
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="Markdown results table to update (default: bench/results.md, none with --quick)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (debugging)")
    return p


def results_file(args: argparse.Namespace) -> Path | None:
    if args.results is not None:
        return Path(args.results)
    return None if args.quick else DEFAULT_RESULTS


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages, ``"1.20/0.90/0.70"``."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram": ram,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load": loadavg(),
    }


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank on sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


@dataclass
class Result:
    bench: str
    metric: str
    value: float
    unit: str
    target: str = "-"
    ok: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("ok" if self.ok else "MISSED")

    def fmt_value(self) -> str:
        v = self.value
        if v != v:  # NaN
            return "n/a"
        if abs(v) >= 100 or v == int(v):
            return f"{v:.0f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"


def report(results: Iterable[Result], args: argparse.Namespace) -> None:
    """Print the RESULT lines and update the results table (full runs)."""
    load = loadavg()
    rows = list(results)
    for r in rows:
        line = (
            f"RESULT {r.bench} {r.metric} {r.fmt_value()} {r.unit} "
            f"target={r.target.replace(' ', '')} {r.verdict} load={load}"
        )
        if r.note:
            line += f"  # {r.note}"
        print(line, flush=True)
    path = results_file(args)
    if path is not None:
        update_table(path, rows, load)
        print(f"results table updated: {path}")


_HEADER = (
    "| bench | metric | value | unit | target | verdict | load (1/5/15 min) | date | note |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def update_table(path: Path, rows: Sequence[Result], load: str) -> None:
    """Replace (or add) one row per bench + metric in the Markdown table at ``path``."""
    existing: dict[tuple[str, str], str] = {}
    order: list[tuple[str, str]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 9 and cells[0] not in ("bench", "---"):
                key = (cells[0], cells[1])
                existing[key] = line
                order.append(key)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    for r in rows:
        key = (r.bench, r.metric)
        note = r.note.replace("|", "/")
        existing[key] = (
            f"| {r.bench} | {r.metric} | {r.fmt_value()} | {r.unit} | {r.target} | "
            f"{r.verdict} | {load} | {stamp} | {note} |"
        )
        if key not in order:
            order.append(key)
    order.sort(key=lambda k: k[0])  # stable: groups by bench, keeps metric order
    body = "\n".join(existing[k] for k in order)
    m = machine()
    head = (
        "# Benchmark results\n\n"
        "Written by the scripts in bench/ (full runs only; see bench/README.md).\n"
        f"Last machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']} RAM, Python {m['python']}.\n\n"
    )
    path.write_text(head + _HEADER + body + "\n")


# -- repositories and plans ------------------------------------------------------------


def git_repo(path: Path, *, files: Mapping[str, str] | None = None) -> Path:
    """A fresh git repository at ``path`` with one commit on ``main``."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    for name, text in (files or {"README": "bench\n"}).items():
        (path / name).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=path, check=True, env=env)
    return path


def plan_yaml(
    teams: Sequence[tuple[str, Sequence[str]]],
    *,
    command: str | Sequence[str],
    isolation: str = "shared",
    max_parallel: int = 8,
    env: Mapping[str, str] | None = None,
    name: str = "bench",
    timeout: str = "10m",
) -> str:
    """A plan whose every team runs ``command`` (kind ``command``), no retries.

    Written as JSON-style flow values, which YAML reads as they are.
    """
    cmd = json.dumps(command if isinstance(command, str) else list(command))
    lines = [
        "version: 1",
        f"name: {name}",
        f"isolation: {isolation}",
        f"max_parallel: {max_parallel}",
        "defaults:",
        "  agent: bench",
        "  retries: 0",
        f"  timeout: {timeout}",
        "agents:",
        "  bench:",
        "    kind: command",
        f"    command: {cmd}",
    ]
    if env:
        lines.append(f"env: {json.dumps(dict(env))}")
    lines.append("teams:")
    for tid, deps in teams:
        lines.append(f"  - {{id: {tid}, task: bench, depends_on: {json.dumps(list(deps))}}}")
    return "\n".join(lines) + "\n"


def layered_graph(
    layers: int, width: int, fan_in: int, seed: int = 42
) -> list[tuple[str, list[str]]]:
    """``layers`` x ``width`` teams; each depends on ``fan_in`` random teams of the layer before."""
    import random

    rng = random.Random(seed)
    teams: list[tuple[str, list[str]]] = []
    for layer in range(layers):
        for i in range(width):
            deps: list[str] = []
            if layer:
                deps = [f"l{layer - 1}_{j}" for j in sorted(rng.sample(range(width), fan_in))]
            teams.append((f"l{layer}_{i}", deps))
    return teams


def run_orchestrate(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600,
    check: bool = True,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``orchestrate ARGS`` in ``cwd``; (wall seconds, the process)."""
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(
        [*ORCHESTRATE, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.perf_counter() - start
    if check and proc.returncode != 0:
        tail = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
        sys.exit(f"orchestrate {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return took, proc


def stop_server(repo: Path) -> None:
    """Stop the embedded valkey-server a run left behind in ``repo/.orchestrate``."""
    pidfile = repo / ".orchestrate" / "redis" / "valkey.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except OSError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.02)


def cleanup(path: Path, args: argparse.Namespace) -> None:
    """Stop the server under ``path`` and delete it (unless ``--keep``)."""
    for pidfile in path.glob("**/.orchestrate/redis/valkey.pid"):
        stop_server(pidfile.parents[2])
    if args.keep:
        print(f"kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


_TS = re.compile(r"^(\S+) (\S+) (\d+\.\d+)$")


def read_stamps(path: Path) -> dict[str, dict[str, float]]:
    """Lines ``<team> <what> <epoch>`` -> {team: {what: epoch}} (the first of each)."""
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        m = _TS.match(line.strip())
        if m:
            out.setdefault(m[1], {}).setdefault(m[2], float(m[3]))
    return out


def event_times(repo: Path, run_id: str) -> dict[str, dict[str, float]]:
    """{team: {state: epoch}}: when each team first entered each state (the run's events)."""
    import anyio

    from orchestrator.paths import StateLayout
    from orchestrator.settings import Settings
    from orchestrator.state.store import open_store

    async def go() -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        async with open_store(Settings(), StateLayout(repo / ".orchestrate")) as store:
            after = "0-0"
            while True:
                events = await store.read_events(run_id, after=after)
                if not events:
                    return out
                for ev in events:
                    if ev.team:
                        out.setdefault(ev.team, {}).setdefault(ev.to, ev.ts)
                    after = ev.id

    try:
        return anyio.run(go)
    except Exception as exc:  # a side measurement: never lose the main numbers
        print(f"(could not read the run's events: {exc!r})", file=sys.stderr)
        return {}


def newest_run(repo: Path) -> str:
    runs = sorted((repo / ".orchestrate" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1].name
