"""The spawner of a host's supervisors: ``python -I -S -c ... orchestrator.ray_spawn``.

Ray kills an actor worker's direct children when the actor is killed, even
those in a session of their own. A host actor (:mod:`orchestrator.ray_host`)
therefore never starts a supervisor itself: it runs this short-lived process,
which starts the supervisor in a new session (the agent's process group),
hands it the secrets to redact through an inherited pipe, records its pid
(write + rename) and exits at once. The supervisor is re-parented and
outlives the host actor.

:func:`spawn_detached` is the host's side; :func:`main` the spawner's. It
reads one JSON object on stdin (secrets included: never argv or the
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.agents.process import Launch


_SPAWNER = (
    sys.executable,
    "-I",
    "-S",
    "-c",
    "import sys; sys.path.insert(0, sys.argv[1]); from orchestrator.ray_spawn import main; main()",
    str(Path(__file__).resolve().parent.parent),  # where the ``orchestrator`` package is
)


def spawn_detached(launch: Launch, pid_file: Path) -> tuple[int, float | None]:
    """Start ``launch`` under a supervisor that is not our child; its (pid, start time).

    Through :mod:`orchestrator.ray_spawn` (a bare interpreter that starts the
    supervisor in its own session, records its pid in ``pid_file`` and exits):
    Ray's killing of an actor worker's children never reaches the supervisor.
    The launch, secrets included, goes to the spawner on its stdin.
    """
    import psutil

    from orchestrator.agents.process import _SUPERVISOR
    from orchestrator.errors import AgentError

    if not launch.argv:
        raise AgentError("the agent's command line is empty")
    launch.log.parent.mkdir(parents=True, exist_ok=True)
    launch.status.unlink(missing_ok=True)
    head = [*_SUPERVISOR, "--log", str(launch.log), "--status", str(launch.status)]
    if launch.stdin is not None:
        head += ["--stdin", str(launch.stdin)]
    payload = json.dumps(
        {
            "head": head,
            "tail": ["--", *launch.argv],
            "cwd": str(launch.cwd),
            "env": dict(launch.env),
            "log": str(launch.log),
            "secrets": list(launch.secrets),
            "pid_file": str(pid_file),
        }
    ).encode()
    try:
        done = subprocess.run(_SPAWNER, input=payload, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"cannot start the agent's supervisor: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise AgentError(said[-1] if said else f"the spawner failed (exit {done.returncode})")
    pid = int(json.loads(done.stdout)["pid"])
    try:
        create_time: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    return pid, create_time


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
