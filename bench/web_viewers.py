"""Web dashboard: do 50 viewers slow a run of 8 chatty agents, and how fast does a line reach them?

A plan of 8 independent teams whose agents print a timestamped 100-byte line
every ``1/rate`` seconds for ``seconds`` seconds. Measured:

- the ``orchestrate run`` wall time alone, then with ``orchestrate ui`` serving
  50 viewers that follow the run live over Server-Sent Events (runs
  alternate: alone, watched, alone, watched, ... ``--repeat`` times each);
- the line latency: from the agent's print (the time in the line) to the
  viewer's receipt of the line from the event stream; p50 / p99 / max over
  every line every team-page viewer received.

The viewers are what a browser's EventSource does: 40 follow a team page's
stream (5 per team), 10 the run page's stream (its board is rebuilt on
changes, its last-line cells updated). They are asyncio clients in one
process (httpx), started the moment the run has an id.

    .venv/bin/python bench/web_viewers.py              # 8 agents x 20 s at 20 lines/s, 50 viewers
    .venv/bin/python bench/web_viewers.py --quick      # 8 agents x 2 s, 10 viewers, once
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    GIT_ENV,
    ORCHESTRATE,
    Result,
    cleanup,
    git_repo,
    parser,
    pct,
    plan_yaml,
    report,
)

PRINTER = r"""
import sys, time
seconds, rate = float(sys.argv[1]), float(sys.argv[2])
start = time.time()
i = 0
pad = "x" * 60
while time.time() < start + seconds:
    print(f"L {time.time():17.6f} {i:010d} {pad}"[:99], flush=True)
    i += 1
    time.sleep(max(0.0, start + i / rate - time.time()))
"""
TEAMS = [f"t{i}" for i in range(8)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    import os

    out = {**os.environ, **GIT_ENV}
    out.pop("ORCHESTRATE_REDIS_URL", None)
    return out


async def viewer(
    base: str, path: str, latencies: list[float] | None, stop: asyncio.Event, seen: list[int]
) -> None:
    """One EventSource: follow ``path`` until ``stop``; each line's latency into ``latencies``."""
    import httpx

    async with (
        httpx.AsyncClient(base_url=base, timeout=None) as client,
        client.stream("GET", path) as response,
    ):
        event = ""
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "line":
                now = time.time()
                text = json.loads(line[6:])["t"]
                seen[0] += 1
                if latencies is not None and text.startswith("L "):
                    latencies.append(now - float(text.split()[1]))


async def one_run(repo: Path, base: str | None, viewers: int) -> tuple[float, list[float], int]:
    """Run the plan (watched by ``viewers`` when ``base`` is set): (wall s, latencies, lines)."""
    latencies: list[float] = []
    seen = [0]
    stop = asyncio.Event()
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *ORCHESTRATE, "run", "plan.yaml", cwd=repo, env=env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    tasks: list[asyncio.Task[None]] = []
    out: list[str] = []
    while True:
        raw = await proc.stdout.readline()
        if not raw:
            break
        line = raw.decode(errors="replace")
        out.append(line)
        m = re.match(r"run (\S+): \d+ teams", line)
        if m and base is not None and not tasks:
            run_id = m.group(1)
            for i in range(viewers):
                if i % 5 == 4:  # one in five on the run page
                    path, lat = f"/runs/{run_id}/stream", None
                else:
                    path, lat = f"/runs/{run_id}/teams/{TEAMS[i % len(TEAMS)]}/stream", latencies
                tasks.append(asyncio.create_task(viewer(base, path, lat, stop, seen)))
    code = await proc.wait()
    took = time.perf_counter() - start
    if code != 0:
        sys.exit(f"orchestrate run exited {code}:\n{''.join(out)[-3000:]}")
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return took, latencies, seen[0]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--viewers", type=int, default=None, help="default 50 (quick 10)")
    p.add_argument("--seconds", type=float, default=None, help="agent print time (default 20)")
    p.add_argument("--rate", type=float, default=20.0, help="lines/s per agent (default 20)")
    p.add_argument("--repeat", type=int, default=None, help="runs of each kind (default 3)")
    args = p.parse_args()
    viewers = args.viewers or (10 if args.quick else 50)
    seconds = args.seconds or (2.0 if args.quick else 20.0)
    repeat = args.repeat or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    results: list[Result] = []
    ui: subprocess.Popen[bytes] | None = None
    try:
        repo = git_repo(work / "repo")
        (work / "printer.py").write_text(PRINTER)
        command = [sys.executable, "-u", str(work / "printer.py"), str(seconds), str(args.rate)]
        plan = plan_yaml([(t, []) for t in TEAMS], command=command, isolation="shared")
        (repo / "plan.yaml").write_text(plan)
        subprocess.run(["git", "add", "plan.yaml"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "plan"], cwd=repo, check=True, env=env())
        alone: list[float] = []
        watched: list[float] = []
        latencies: list[float] = []
        lines = 0
        for i in range(repeat):
            took, _, _ = asyncio.run(one_run(repo, None, 0))
            alone.append(took)
            if ui is None:  # the state folder and its server exist after the first run
                port = free_port()
                ui = subprocess.Popen(
                    [*ORCHESTRATE, "ui", "--port", str(port)], cwd=repo, env=env(),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
                assert ui.stdout is not None
                first = ui.stdout.readline().decode()
                if "orchestrate ui:" not in first:
                    sys.exit(f"orchestrate ui did not start: {first}")
                base = f"http://127.0.0.1:{port}"
            took, lat, seen = asyncio.run(one_run(repo, base, viewers))
            watched.append(took)
            latencies += lat
            lines += seen
            print(f"round {i + 1}: alone {alone[-1]:.2f} s, watched {took:.2f} s, "
                  f"{len(lat)} team lines seen", flush=True)  # fmt: skip
        a, w = statistics.median(alone), statistics.median(watched)
        workload = f"{repeat} runs, 8 agents x {seconds:.0f} s at {args.rate:.0f} lines/s"
        p99 = pct(latencies, 99)
        results += [
            Result("web", "run wall alone (median)", a, "s", note=workload),
            Result(
                "web",
                f"run wall with {viewers} viewers (median)",
                w,
                "s",
                target="<=1.1x alone",
                ok=w <= 1.1 * a,
                note=f"{w / a:.2f}x alone",
            ),
            Result(
                "web",
                "line latency p50",
                pct(latencies, 50) * 1000,
                "ms",
                note=f"{len(latencies)} lines at team-page viewers; {lines} line messages in all",
            ),
            Result("web", "line latency p99", p99 * 1000, "ms", target="<1000ms", ok=p99 < 1.0),
            Result("web", "line latency max", max(latencies, default=float("nan")) * 1000, "ms"),
        ]
        report(results, args)
    finally:
        if ui is not None:
            ui.terminate()
            try:
                ui.wait(10)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait()
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
