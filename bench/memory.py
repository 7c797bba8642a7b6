"""Memory: 32 agents printing continuously for 60 s.

Samples (every 0.5 s, psutil) the orchestrator process's RSS (the ``orchestrate
run`` process alone), all of orchestrate's processes together (the orchestrator,
its fork server and the 32 supervisors: every descendant of ``orchestrate run``
but the agents and the embedded server), summed as RSS (a page shared by
several processes, as a forked supervisor shares its fork server's, counts in
each) and as PSS (each shared page divided among its sharers: what they take
together), and the embedded Redis server's memory (``INFO memory``: ``used_memory``,
``used_memory_peak``, and its RSS). The Redis side is bounded by the stream caps
(``ORCHESTRATE_LOG_STREAM_CAP`` lines per team, ``ORCHESTRATE_EVENT_STREAM_CAP``
events); the script prints that bound next to the measurement.

Each agent prints 100-byte lines at ``--rate`` lines per second (default 100:
3,200 lines/s in all) for ``--seconds``; after that the run is given
``--drain`` seconds to store the rest, then stopped (SIGTERM) if it has not ended.
Target: orchestrate's processes together <= 150 MB RSS.

    .venv/bin/python bench/memory.py            # 32 agents x 60 s
    .venv/bin/python bench/memory.py --quick    # 4 agents x 2 s
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    GIT_ENV,
    ORCHESTRATE,
    Result,
    cleanup,
    git_repo,
    parser,
    plan_yaml,
    report,
)
from logs_bench import FAST_PRINTER, commit_plan

MB = 1024 * 1024


def redis_memory(sock: Path) -> dict[str, int]:
    import redis

    r = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
    try:
        info = r.info("memory")
        return {k: int(info[k]) for k in ("used_memory", "used_memory_peak", "used_memory_rss")}
    finally:
        r.close()


def ours(runner: psutil.Process, agent_marker: str) -> list[psutil.Process]:
    """orchestrate's own processes: the runner and its descendants but agents and valkey."""
    found = [runner]
    for proc in runner.children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        supervisor = "orchestrator.supervisor" in cmd or "orchestrator.forkserver" in cmd
        if not supervisor and (agent_marker in cmd or "valkey" in cmd):
            continue  # an agent (a supervisor's command line names its agent too) or valkey
        found.append(proc)
    return found


def together(procs: list[psutil.Process]) -> tuple[int, int, int]:
    """(RSS summed, PSS summed, processes counted) of ``procs``."""
    rss = pss = n = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        n += 1
    return rss, pss, n


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--agents", type=int, default=None, help="default 32 (quick 4)")
    p.add_argument("--seconds", type=float, default=None, help="default 60 (quick 2)")
    p.add_argument("--rate", type=float, default=100.0, help="lines/s per agent (100)")
    p.add_argument("--drain", type=float, default=120.0, help="seconds allowed after (120)")
    args = p.parse_args()
    agents = args.agents or (4 if args.quick else 32)
    seconds = args.seconds or (2.0 if args.quick else 60.0)
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        repo = git_repo(work / "repo")
        script = work / "printer.py"
        script.write_text(FAST_PRINTER)
        teams = [(f"a{i}", []) for i in range(agents)]
        commit_plan(
            repo,
            plan_yaml(
                teams,
                command=[sys.executable, str(script), str(seconds), str(args.rate)],
                max_parallel=agents,
            ),
        )
        env = {**os.environ, **GIT_ENV}
        start = time.time()
        runner = subprocess.Popen(
            [*ORCHESTRATE, "run", "plan.yaml"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        me = psutil.Process(runner.pid)
        sock = repo / ".orchestrate" / "redis" / "valkey.sock"
        pidfile = repo / ".orchestrate" / "redis" / "valkey.pid"
        peak_rss = 0
        peak_rss_printing = 0
        peak_all_rss = peak_all_pss = peak_count = 0
        redis_peak = {"used_memory": 0, "used_memory_peak": 0, "used_memory_rss": 0}
        stopped = False
        samples = 0
        while runner.poll() is None:
            now = time.time()
            try:
                rss = me.memory_info().rss
            except psutil.Error:
                break
            peak_rss = max(peak_rss, rss)
            if now - start <= seconds + 5:
                peak_rss_printing = max(peak_rss_printing, rss)
            all_rss, all_pss, count = together(ours(me, str(script)))
            if all_rss > peak_all_rss:
                peak_all_rss, peak_count = all_rss, count
            peak_all_pss = max(peak_all_pss, all_pss)
            if sock.exists():
                try:
                    got = redis_memory(sock)
                    redis_peak = {k: max(v, got[k]) for k, v in redis_peak.items()}
                except Exception:
                    pass
            samples += 1
            if not stopped and now - start > seconds + args.drain:
                runner.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(0.5)
        runner.wait(timeout=120)
        if sock.exists():
            got = redis_memory(sock)
            redis_peak = {k: max(v, got[k]) for k, v in redis_peak.items()}
        took = time.time() - start
        server_rss = 0
        try:
            server_rss = psutil.Process(int(pidfile.read_text())).memory_info().rss
        except (OSError, ValueError, psutil.Error):
            pass
        printed = 0
        for f in repo.glob(".orchestrate/runs/*/logs/*.log"):
            with f.open("rb") as fh:
                printed += sum(c.count(b"\n") for c in iter(lambda fh=fh: fh.read(1 << 20), b""))
        cap = int(os.environ.get("ORCHESTRATE_LOG_STREAM_CAP", "10000"))
        bound = agents * cap * 160 / MB  # ~160 B per stream entry of a 100-byte line
        end = "stopped by SIGTERM after the drain time" if stopped else f"ended in {took:.0f} s"
        note = f"{agents} agents x {seconds:g} s at {args.rate:g} lines/s, {printed} lines; {end}"
        report(
            [
                Result(
                    "memory",
                    "orchestrate's processes together, peak RSS sum",
                    peak_all_rss / MB,
                    "MB",
                    "<= 150 MB",
                    peak_all_rss / MB <= 150,
                    f"{peak_count} processes (orchestrator, fork server, supervisors); {note}",
                ),
                Result(
                    "memory",
                    "orchestrate's processes together, peak PSS sum",
                    peak_all_pss / MB,
                    "MB",
                    note="shared pages counted once",
                ),
                Result(
                    "memory",
                    "orchestrator peak RSS",
                    peak_rss / MB,
                    "MB",
                    note=f"the orchestrate run process alone; {samples} samples",
                ),
                Result(
                    "memory", "orchestrator peak RSS while printing", peak_rss_printing / MB, "MB"
                ),
                Result(
                    "memory",
                    "redis used_memory_peak",
                    redis_peak["used_memory_peak"] / MB,
                    "MB",
                    f"~{bound:.0f} MB (caps)",
                    redis_peak["used_memory_peak"] / MB <= bound * 1.5 + 10,
                ),
                Result(
                    "memory",
                    "redis used_memory_rss (max seen)",
                    redis_peak["used_memory_rss"] / MB,
                    "MB",
                ),
                Result("memory", "redis server RSS at end", server_rss / MB, "MB"),
            ],
            args,
        )
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
