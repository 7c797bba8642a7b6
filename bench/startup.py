"""Start-up: `orchestrate --help` and `validate` of a generated 100-team plan.

Targets: --help under 300 ms, validate of 100 teams under 500 ms (wall clock,
median of several runs, a fresh process each time). Also the bare interpreter
start (``python -c pass``) for scale, and the load average at the time.

    .venv/bin/python bench/startup.py            # 9 runs each
    .venv/bin/python bench/startup.py --quick    # 3 runs each
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import GIT_ENV, ORCHESTRATE, Result, cleanup, git_repo, parser, report

TARGETS = {"--help": 300.0, "validate (100 teams)": 500.0}


def plan_text(n: int) -> str:
    lines = ["version: 1", "name: bench", "max_parallel: 8", "teams:"]
    for i in range(n):
        deps = [f"t{j}" for j in (i - 1, i - 7) if j >= 0]
        lines += [
            f"  - id: t{i}",
            f"    task: build part {i}",
            "    role: backend-architect",
            "    estimate: 10m",
            f"    deliverables: [src/part{i}/*.py]",
            f"    depends_on: [{', '.join(deps)}]",
        ]
    return "\n".join(lines) + "\n"


def timed(argv: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    """(median, min) milliseconds of ``argv`` run ``runs`` times."""
    samples = []
    env = {**os.environ, **GIT_ENV}
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False)
        samples.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return statistics.median(samples), min(samples)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=None, help="runs per command (9; quick 3)")
    args = p.parse_args()
    runs = args.runs or (3 if args.quick else 9)
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        repo = git_repo(work / "repo")
        (repo / "plan.yaml").write_text(plan_text(100))
        results = []
        med, low = timed([sys.executable, "-c", "pass"], repo, runs)
        results.append(Result("startup", "python -c pass", med, "ms", note=f"min {low:.0f} ms"))
        for name, argv in (
            ("--help", [*ORCHESTRATE, "--help"]),
            ("validate (100 teams)", [*ORCHESTRATE, "validate", "plan.yaml"]),
        ):
            med, low = timed(argv, repo, runs)
            target = TARGETS[name]
            results.append(
                Result(
                    "startup",
                    name,
                    med,
                    "ms",
                    f"< {target:.0f} ms",
                    med < target,
                    f"median of {runs}, min {low:.0f} ms",
                )
            )
        report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
