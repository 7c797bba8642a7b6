"""Smoke test of the benchmark scripts in bench/: each runs with --quick and reports.

Benchmarks are not tests: no number is checked here, only that every script
still works against the current code (exit 0, at least one ``RESULT`` line).
The scripts run at once, each in its own process, to keep this short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.redis import stop_embedded

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "startup", "chain", "dispatch", "throughput", "logs_bench", "memory", "resume", "plan_graph"
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_bench_script_runs_quick_and_prints_a_result(tmp_path: Path) -> None:
    """A user running `python bench/<script>.py --quick` gets numbers, not a traceback."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("ORCHESTRATE_REDIS_URL", None)
    env.pop("ORCHESTRATE_STATE_DIR", None)
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    deadline = time.monotonic() + 200
    failures = []
    try:
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                failures.append(f"{name}: timed out\n{out[-1500:]}{err[-1500:]}")
                continue
            if proc.returncode != 0 or "RESULT " not in out:
                failures.append(f"{name}: exit {proc.returncode}\n{out[-1500:]}{err[-1500:]}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # A script killed (or failing) before its own cleanup leaves its embedded server up.
        for state in tmp_path.rglob(".orchestrate"):
            stop_embedded(state)
    assert not failures, "\n\n".join(failures)
