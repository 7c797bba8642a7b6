"""The spawner of a host's supervisors: ``python -I -S -c ... orchestrator.ray_spawn``.

Ray kills an actor worker's direct children when the actor is killed, even
those in a session of their own. A host actor (:mod:`orchestrator.ray_host`)
therefore never starts a supervisor itself: it runs this short-lived process,
which starts the supervisor in a new session (the agent's process group),
hands it the secrets to redact through an inherited pipe, records its pid
(write + rename) and exits at once. The supervisor is re-parented and
outlives the host actor.

It reads one JSON object on stdin (secrets included: never argv or the
environment)::

    {"head": [supervisor argv up to its options], "tail": ["--", agent argv...],
     "cwd": ..., "env": {...}, "log": ..., "secrets": [...], "pid_file": ...}

and prints ``{"pid": N}``. Standard library only, started without site-packages:
it costs a bare interpreter start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def spawn(data: dict[str, Any]) -> int:
    """Start the supervisor described by ``data``; its pid."""
    secrets = list(data.get("secrets") or [])
    log_fd = os.open(str(data["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    read_end, write_end = os.pipe() if secrets else (-1, -1)
    try:
        head = list(data["head"])
        tail = list(data["tail"])
        extra = ["--secrets-fd", str(read_end)] if secrets else []
        proc = subprocess.Popen(
            [*head, *extra, *tail],
            cwd=str(data["cwd"]),
            env=dict(data["env"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,  # should the supervisor itself fail, its traceback is in the log
            start_new_session=True,
            close_fds=True,
            pass_fds=(read_end,) if secrets else (),
        )
    finally:
        os.close(log_fd)
        if secrets:
            os.close(read_end)
    if secrets:
        view = memoryview(json.dumps(secrets).encode())
        try:
            while view:
                view = view[os.write(write_end, view) :]
        except OSError:
            pass  # the supervisor is gone already: its host reports the outcome
        finally:
            os.close(write_end)
    return proc.pid


def main() -> None:
    data = json.loads(sys.stdin.buffer.read())
    try:
        pid = spawn(data)
    except OSError as exc:
        sys.stderr.write(f"cannot start the agent in {data.get('cwd')}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        os._exit(1)
    out = json.dumps({"pid": pid})
    pid_file = Path(str(data["pid_file"]))
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(out)
    tmp.replace(pid_file)
    sys.stdout.write(out)
    sys.stdout.flush()
    os._exit(0)  # never wait for the supervisor: it is re-parented and runs on


if __name__ == "__main__":
    main()
