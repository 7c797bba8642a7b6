"""The Prefect 3 peer of bench/throughput.py: run with bench/.venv-prefect/bin/python.

    prefect_flow.py GRAPH.json MAX_WORKERS

GRAPH.json is ``{"command": [...], "teams": [[id, [deps...]], ...]}`` in
dependency order. Each team is a task that runs the command (subprocess, like
orchestrate's agent) and waits for its upstream tasks' futures. Prints one JSON
line: import seconds, a one-task warm-up flow's seconds (it starts Prefect's
ephemeral API server), the bench flow's seconds and the task count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

t_import = time.perf_counter()
from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

import_s = time.perf_counter() - t_import


@task(persist_result=False)
def team(command: list[str]) -> None:
    subprocess.run(command, check=True)


def main() -> int:
    graph = json.loads(Path(sys.argv[1]).read_text())
    workers = int(sys.argv[2])
    command = graph["command"]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers), persist_result=False)
    def bench_flow() -> int:
        futures = {}
        for tid, deps in graph["teams"]:
            futures[tid] = team.with_options(name=tid).submit(
                command, wait_for=[futures[d] for d in deps]
            )
        for f in futures.values():
            f.wait()
        return len(futures)

    @flow(persist_result=False)
    def warm_up() -> None:
        team.submit(["true"]).wait()

    start = time.perf_counter()
    warm_up()  # starts Prefect's ephemeral API server, kept for this process
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    done = bench_flow()
    flow_s = time.perf_counter() - start
    print(json.dumps({"import_s": import_s, "warm_up_s": warm_s, "flow_s": flow_s, "tasks": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
