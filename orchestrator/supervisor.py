"""The small process that runs one agent: ``python -m orchestrator.supervisor``.

::

    python -m orchestrator.supervisor --log LOG --status STATUS [--secrets-fd FD] [--stdin FILE]
        -- ARGV...

The orchestrator starts one supervisor per agent attempt, in a session of its
own, so the agent outlives a crash of the orchestrator. The supervisor:

- runs ARGV as its child in its own process group (killing the group ``-pid``
  kills both), stdin from ``/dev/null`` (or from FILE with ``--stdin``: how an
  agent gets its prompt without it showing on its command line), stdout and
  stderr merged into a pipe;
- appends that output to LOG (``O_APPEND``) line by line as it comes: a
  complete line is written at once, a partial line after a short quiet moment
  or once it reaches 64 KiB, so memory stays bounded whatever the agent prints.
  Values of secret-looking environment variables (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*PASSWORD*``) and the extra secrets read from ``--secrets-fd``
  (a JSON list of strings on an inherited pipe, read to EOF: never argv or
  environment) are replaced by ``***``. A partial line is written without the
  tail that could be the start of a secret, so a secret never straddles two
  writes: that tail waits for the rest of its line (or the agent's end);
- forwards SIGTERM, SIGINT and SIGHUP to the agent;
- records who it is (pid and start time, ``STATUS.pid``) once the agent runs,
  so that a resume finds it even if the orchestrator never learnt its pid;
- when the agent has ended, kills what the agent left behind in the group
  (a background grandchild; as the agent's subreaper it only looks when one
  of the agent's processes is still alive), then writes STATUS atomically
  (write + rename)::

      {"exit_code": int | null, "signal": int | null, "pid": agent pid | null,
       "supervisor_pid": int, "supervisor_created": epoch (its start time, as psutil
       has it), "started": epoch, "ended": epoch}

  and removes ``STATUS.pid``;

  An agent that cannot be started gets ``exit_code`` 127 (not found) or 126
  (not executable) and the reason as a line in LOG.

The orchestrator normally forks it from a warm helper (:mod:`orchestrator.forkserver`,
which calls :func:`supervise`); this command line is the slow path, and the
name live processes of older versions carry.
It imports the standard library only (and :mod:`orchestrator.redact`, which does too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from orchestrator.redact import redact_bytes, secret_values

MAX_LINE = 64 * 1024
"""A line longer than this is written in pieces of this size."""
READ_CHUNK = 64 * 1024
QUIET_FLUSH = 0.2
"""A partial line is written after this many seconds without more output."""
DRAIN_AFTER_EXIT = 0.5
"""After the agent exits, keep reading output left in the pipe for at most this long."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PREFIX = b"[orchestrate] "


def secret_bytes(env: dict[str, str], extra: list[str]) -> list[bytes]:
    """The values to redact, as bytes, longest first: secret-looking variables and ``extra``."""
    return [v.encode("utf-8", "surrogateescape") for v in secret_values(env, extra=extra)]


def read_secrets_fd(fd: int) -> list[str]:
    """The JSON list of strings written to ``fd``, read to EOF; ``fd`` is closed."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = json.loads(b"".join(chunks) or b"[]")
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        raise ValueError("--secrets-fd: expected a JSON list of strings")
    return data


def unsafe_tail(data: bytes, secrets: list[bytes]) -> int:
    """Length of the longest tail of ``data`` that is the start (not all) of a secret."""
    longest = 0
    for secret in secrets:
        for k in range(min(len(secret) - 1, len(data)), longest, -1):
            if data.endswith(secret[:k]):
                longest = k
                break
    return longest


class LogWriter:
    """Appends output to the log file line by line, redacted, with a bounded buffer."""

    def __init__(self, path: Path, secrets: list[bytes]) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.secrets = secrets
        self.partial = b""

    def _write(self, data: bytes) -> None:
        data = redact_bytes(data, self.secrets)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def feed(self, data: bytes) -> None:
        """Write every complete line of ``partial + data``; keep the rest (at most MAX_LINE)."""
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        if cut:
            self._write(data[:cut])
        rest = data[cut:]
        while len(rest) >= MAX_LINE:
            piece = self._safe_len(rest[:MAX_LINE]) or MAX_LINE
            self._write(rest[:piece] + b"\n")
            rest = rest[piece:]
        self.partial = rest

    def _safe_len(self, data: bytes) -> int:
        """How much of ``data`` may be written now: all but a tail that may begin a secret."""
        return len(data) - unsafe_tail(data, self.secrets)

    def flush_partial(self, *, final: bool = False) -> None:
        """Write the partial line as it is (no newline added: the rest may follow).

        Unless ``final``, a tail that could be the start of a secret stays back
        until more output tells (the rest of the line, or the agent's end).
        """
        size = len(self.partial) if final else self._safe_len(self.partial)
        if size:
            self._write(self.partial[:size])
            self.partial = self.partial[size:]

    def note(self, text: str) -> None:
        """A line of our own in the log, on a line of its own."""
        self.flush_partial(final=True)
        self._write(b"\n" if self._ends_mid_line() else b"")
        self._write(PREFIX + text.encode("utf-8", "replace") + b"\n")

    def _ends_mid_line(self) -> bool:
        try:
            size = os.fstat(self.fd).st_size
            return size > 0 and os.pread(self.fd, 1, size - 1) != b"\n"
        except OSError:
            return False

    def close(self) -> None:
        self.flush_partial(final=True)
        os.close(self.fd)


def write_status(path: Path, status: dict[str, object]) -> None:
    """Write ``status`` as JSON to ``path`` atomically: a temporary file, then a rename.

    No fsync: the orchestrator reads it the moment we exit, and should the
    machine crash before the disk has it, the attempt is seen as cut short and
    run again, which is what a crash calls for anyway (an fsync of the file and
    its folder cost ~3 ms per agent, on the path from one agent to the next).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(status).encode() + b"\n")
    finally:
        os.close(fd)
    tmp.replace(path)
    with contextlib.suppress(OSError):  # the status names us now
        identity_file(path).unlink()


def identity_file(status: Path) -> Path:
    """Where the supervisor writing ``status`` records who it is while it runs."""
    return status.with_name(status.name + ".pid")


def start_ticks(pid: int | str = "self") -> int | None:
    """Process ``pid``'s start time in clock ticks since boot (``/proc/PID/stat``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:  # noqa: PTH123 (hot path: no Path object)
            stat = fh.read()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses; starttime is field 22.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as fh:  # noqa: PTH123
            for line in fh:
                if line.startswith(b"btime"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def create_time(pid: int | str = "self") -> float | None:
    """Process ``pid``'s start time in seconds since the epoch, exactly as ``psutil`` has it."""
    ticks, boot = start_ticks(pid), _boot_time()
    if ticks is None or boot is None:
        return None
    return ticks / os.sysconf("SC_CLK_TCK") + boot


def write_identity(status: Path) -> None:
    """Record our pid and start time next to ``status`` (write + rename).

    A resume that never learnt our pid (the orchestrator died right after
    starting us) finds us by it: pid and start time name one process for sure,
    whatever started it (a fresh interpreter or the fork server).
    """
    path = identity_file(status)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            record = {"supervisor_pid": os.getpid(), "created": create_time()}
            os.write(fd, json.dumps(record).encode() + b"\n")
        finally:
            os.close(fd)
        tmp.replace(path)


_PR_SET_CHILD_SUBREAPER = 36


def _libc() -> Any:
    """The C library through ctypes (imported on first use; the fork server warms it)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


_LIBC: Any = None


def become_subreaper() -> bool:
    """Adopt the agent's orphans (Linux ``PR_SET_CHILD_SUBREAPER``); False where unsupported.

    Then, once the agent is reaped, no child of ours means nothing of it is
    left, and :func:`kill_leftovers` needs no scan of every process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(_libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children() -> list[int] | None:
    """Our live children (reaping the dead ones first); None when ``/proc`` cannot tell."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children", "rb") as fh:  # noqa: PTH123
            return [int(pid) for pid in fh.read().split()]
    except (OSError, ValueError):
        return None


def group_members(pgid: int) -> list[int] | None:
    """Pids in process group ``pgid`` other than ours (Linux ``/proc``); None when unknown."""
    try:
        names = os.listdir("/proc")  # noqa: PTH208 (faster than Path objects here)
    except OSError:
        return None
    me = os.getpid()
    members = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
            try:
                stat = os.read(fd, 1024)
            finally:
                os.close(fd)
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split(None, 3)
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(name))
    return members


def kill_leftovers(pgid: int, pipe_open: bool, *, subreaper: bool = False) -> None:
    """SIGKILL whatever the agent left running in our process group.

    As a subreaper with no child left, nothing of the agent lives: no scan.
    """
    if subreaper and _children() == []:
        return
    members = group_members(pgid)
    if members is None:
        if pipe_open:  # someone still holds the output pipe; no /proc to find them
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGTERM)
        return
    for pid in members:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def supervise(
    argv: list[str],
    log: Path,
    status: Path,
    extra_secrets: Sequence[str] = (),
    stdin: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    identified: bool = False,
) -> int:
    """Run ``argv`` to its end, logging its output; write ``status``. Returns our exit code.

    ``stdin``: a file the agent reads as its stdin (default ``/dev/null``). ``env``: the
    agent's environment (default: ours). ``identified``: our identity
    record is written already (the fork server's child writes it before it tells
    the orchestrator its pid)."""
    if os.getsid(0) != os.getpid():
        with contextlib.suppress(OSError):
            os.setsid()  # never share a group with whoever started us
    pgid = os.getpgrp()
    created = create_time()
    subreaper = become_subreaper()
    agent_env = dict(os.environ if env is None else env)
    writer = LogWriter(log, secret_bytes(agent_env, list(extra_secrets)))
    started = time.time()
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
            return
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        with Path(stdin or os.devnull).open("rb") as source:  # the child keeps its own copy
            child = subprocess.Popen(
                argv,
                env=agent_env,
                stdin=source,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        writer.note(f"cannot start the agent: {exc.strerror or exc}: {argv[0] if argv else ''}")
        writer.close()
        write_status(
            status,
            {
                "exit_code": code,
                "signal": None,
                "pid": None,
                "supervisor_pid": os.getpid(),
                "supervisor_created": created,
                "started": started,
                "ended": time.time(),
            },
        )
        return 0
    for signum in pending:
        forward(signum, None)
    if not identified:
        write_identity(status)
    assert child.stdout is not None
    fd = child.stdout.fileno()
    eof = pump(child, fd, writer)
    returncode = child.wait()
    kill_leftovers(pgid, pipe_open=not eof, subreaper=subreaper)
    writer.close()
    child.stdout.close()
    write_status(
        status,
        {
            "exit_code": returncode if returncode >= 0 else None,
            "signal": -returncode if returncode < 0 else None,
            "pid": child.pid,
            "supervisor_pid": os.getpid(),
            "supervisor_created": created,
            "started": started,
            "ended": time.time(),
        },
    )
    return 0


def pump(child: subprocess.Popen[bytes], fd: int, writer: LogWriter) -> bool:
    """Copy the pipe to the log until EOF (True) or until the agent exited and a grace passed.

    The pipe may stay open after the agent exited when a grandchild holds it.
    """
    last_data = time.monotonic()
    exited_at: float | None = None
    while True:
        ready, _, _ = select.select([fd], [], [], QUIET_FLUSH)
        now = time.monotonic()
        if ready:
            data = os.read(fd, READ_CHUNK)
            if not data:
                return True
            writer.feed(data)
            last_data = now
        elif writer.partial and now - last_data >= QUIET_FLUSH:
            writer.flush_partial()
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > DRAIN_AFTER_EXIT:
            return False


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.supervisor",
        description="Run one agent: log its output, write its exit status.",
    )
    parser.add_argument("--log", required=True, type=Path, help="file the output is appended to")
    parser.add_argument("--status", required=True, type=Path, help="exit status (JSON) at the end")
    parser.add_argument(
        "--secrets-fd",
        type=int,
        metavar="FD",
        help="inherited pipe holding a JSON list of extra secrets to redact (read to EOF)",
    )
    parser.add_argument("--stdin", type=Path, metavar="FILE", help="the agent's stdin")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- the agent's command line")
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("no agent command given after --")
    extra = read_secrets_fd(ns.secrets_fd) if ns.secrets_fd is not None else []
    return supervise(argv, ns.log, ns.status, extra, ns.stdin)


if __name__ == "__main__":
    sys.exit(main())
