"""Startup benchmark: `orchestrate --help` and `validate` of a generated 100-team plan.

Targets: --help under 300 ms, validate of 100 teams under 500 ms (wall clock,
median of several runs, a fresh process each time). Prints the numbers; exits
1 if a target is missed. Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 7
TARGETS = {"--help": 0.300, "validate (100 teams)": 0.500}


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


def timed(argv: list[str], cwd: Path) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return statistics.median(samples)


def main() -> int:
    exe = [sys.executable, "-m", "orchestrator"]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@b",
        }
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(
            ["git", "commit", "-q", "--allow-empty", "-m", "b"], cwd=repo, env=env, check=True
        )
        (repo / "plan.yaml").write_text(plan_text(100))
        results = {
            "--help": timed([*exe, "--help"], repo),
            "validate (100 teams)": timed([*exe, "validate", "plan.yaml"], repo),
        }
    missed = 0
    for name, seconds in results.items():
        target = TARGETS[name]
        ok = seconds < target
        missed += not ok
        print(
            f"{name:<22} {seconds * 1000:6.0f} ms  (target < {target * 1000:.0f} ms) "
            f"{'ok' if ok else 'MISSED'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
