"""Resume: a 1000-team run killed with 500 teams done; ``resume`` to the first new agent.

The graph of bench/throughput.py (10 layers of 100, fan-in 3, seed 42), shared
isolation, max_parallel 8; each agent is a shell command that appends
``<team> start <epoch>`` to $TS_FILE. The script follows ``orchestrate run``'s
output and, once 500 teams have succeeded, kills it (SIGKILL by default: a
crash; ``--signal TERM`` for an orderly interrupt). Then it runs ``orchestrate
resume RUN`` and measures from spawning that process to the first agent stamp
written after it (an agent that was still running at the kill and is merely
re-attached writes no new stamp). Also: the whole resume to the run's end.
Target: < 1 s.

    .venv/bin/python bench/resume.py            # 1000 teams, kill at 500
    .venv/bin/python bench/resume.py --quick    # 30 teams, kill at 15
"""

from __future__ import annotations

import os
import signal
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
    layered_graph,
    parser,
    plan_yaml,
    read_stamps,
    report,
)
from logs_bench import commit_plan

STAMP = 'printf \'%s start %s\\n\' {team} "$(date +%s.%N)" >> "$TS_FILE"'


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--layers", type=int, default=None, help="default 10 (quick 3)")
    p.add_argument("--width", type=int, default=None, help="default 100 (quick 10)")
    p.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run resume under pyinstrument, its report to this file (the timing is then skewed)",
    )
    args = p.parse_args()
    layers = args.layers or (3 if args.quick else 10)
    width = args.width or (10 if args.quick else 100)
    teams = layered_graph(layers, width, min(3, width))
    n = len(teams)
    kill_at = n // 2
    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    try:
        repo = git_repo(work / "repo")
        ts = work / "ts.txt"
        commit_plan(repo, plan_yaml(teams, command=STAMP, env={"TS_FILE": str(ts)}))
        env = {**os.environ, **GIT_ENV}
        runner = subprocess.Popen(
            [*ORCHESTRATE, "run", "plan.yaml"],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert runner.stdout is not None
        run_id = None
        done = 0
        for line in runner.stdout:
            if line.startswith("run ") and run_id is None:
                run_id = line.split()[1].rstrip(":")
            if " succeeded  attempt" in line:
                done += 1
                if done >= kill_at:
                    runner.send_signal(getattr(signal, f"SIG{args.signal}"))
                    break
        runner.wait(timeout=120)
        if run_id is None or done < kill_at:
            sys.exit(f"the run ended before {kill_at} teams were done ({done})")
        time.sleep(0.5)  # let the teams cut short settle (their supervisors live on)
        start = time.time()
        t0 = time.perf_counter()
        prefix = ORCHESTRATE
        if args.profile is not None:
            out = str(args.profile.absolute())
            prefix = [sys.executable, "-m", "pyinstrument", "-o", out, "-m", "orchestrator"]
        proc = subprocess.run(
            [*prefix, "resume", run_id],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        whole = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"resume exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
        stamps = read_stamps(ts)
        new = sorted(s["start"] for s in stamps.values() if s.get("start", 0) > start)
        first = new[0] - start if new else float("nan")
        ok = first < 1.0
        note = f"{n} teams, killed (SIG{args.signal}) at {done} done, {len(stamps)} agents ran"
        report(
            [
                Result("resume", "resume to first new agent start", first, "s", "< 1 s", ok, note),
                Result(
                    "resume",
                    "resume to the run's end",
                    whole,
                    "s",
                    note=f"{len(new)} agents started by resume",
                ),
            ],
            args,
        )
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
