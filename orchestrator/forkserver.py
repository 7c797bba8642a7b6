"""The fork server: supervisors forked from a warm process, not a fresh interpreter each.

Starting ``python -m orchestrator.supervisor`` costs an interpreter and its
imports (40-60 ms here) before the agent can start. Instead, each orchestrator
process keeps one small helper that has imported the supervisor once and forks
a supervisor per agent (about a millisecond)::

    pid, created = fork_server().spawn(request, log_fd)   # in a worker thread

The helper is ``python -I -S -c ... orchestrator.forkserver FD``, started on
first use with its own session, ``/`` as its folder and no environment of ours
(no secrets, no paths). It talks to its orchestrator over a ``SOCK_SEQPACKET``
socket pair (one message per request or reply; the orchestrator's end never
leaves the orchestrator) and exits when that socket reaches EOF: its
orchestrator closed it or died. Per request (JSON ``{argv, cwd, env, log,
status, secrets}`` plus the log's file descriptor, which becomes the
supervisor's stderr) it forks a child that

1. starts its own session (so the agent outlives the helper and the orchestrator),
2. takes the request's folder (the environment goes to the agent only: the
   supervisor's own is the helper's, which holds nothing of ours),
3. records its pid and start time next to the status file, replies
   ``{"pid", "created"}`` itself (``created``: its start time as
   ``psutil`` reads it), and only if that reply was sent
4. runs :func:`orchestrator.supervisor.supervise` and exits with its code.

So a reply always means a running supervisor, and EOF before a reply means
that no agent was started: the request is safe to send again. That is what
makes a helper killed with SIGKILL harmless: supervisors it forked go on (they
are in their own sessions; a resume recognises them by pid and start time, see
:mod:`orchestrator.agentproc`), and the next request starts a new helper. A
helper that cannot be started, or a request too large for one message, makes
:class:`ForkServerUnavailable`: the caller starts the supervisor the slow way.

The helper ignores ``SIGCHLD``, so the kernel reaps the supervisors it forked;
the orchestrator learns of their exit through a pidfd, as for any process.
Secrets travel in the request, over the socket pair: never argv or environment.
"""

from __future__ import annotations

import array
import atexit
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_MESSAGE = 1 << 20
"""Largest request (bytes of JSON): a bigger one (a huge environment) takes the slow path."""
REPLY_TIMEOUT = 30.0
"""Seconds to wait for a supervisor's reply before the helper is given up as hung."""
DISABLE_ENV = "ORCHESTRATE_FORK_SERVER"
"""``ORCHESTRATE_FORK_SERVER=0``: always start supervisors as fresh interpreters (benchmarks)."""

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from orchestrator.forkserver import serve; sys.exit(serve(int(sys.argv[3])))"
)
_KEPT_ENV = ("LANG", "LC_ALL", "LC_CTYPE")
"""The only variables the helper itself gets: how to decode bytes, nothing else."""


class ForkServerUnavailable(Exception):
    """No helper could take the request: start the supervisor the slow way."""


# -- the helper's side ----------------------------------------------------------------------


def _child(conn: socket.socket, request: dict[str, Any], log_fd: int) -> int:
    """In the forked child: become the supervisor of ``request``; returns the exit code."""
    from orchestrator.supervisor import create_time, identity_file, supervise, write_identity

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the supervisor waits for its agent
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        os.setsid()
        os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log_fd, 2)  # should the supervisor fail, its traceback is in the log
        for fd in {null, log_fd} - {0, 1, 2}:
            os.close(fd)
    except OSError as exc:
        _reply(conn, {"errno": exc.errno, "error": exc.strerror or str(exc)})
        return 1
    status = Path(request["status"])
    write_identity(status)  # before the reply: whoever learns our pid can also find us by it
    if not _reply(conn, {"pid": os.getpid(), "created": create_time()}):
        identity_file(status).unlink(missing_ok=True)
        return 1  # nobody knows of us: start no agent
    conn.close()
    return supervise(
        list(request["argv"]),
        Path(request["log"]),
        status,
        request["secrets"],
        env=request["env"],  # the agent's; ours (the helper's) holds nothing of it
        identified=True,
    )


def _reply(conn: socket.socket, message: dict[str, Any]) -> bool:
    try:
        conn.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def _handle(conn: socket.socket, data: bytes, fds: list[int]) -> None:
    try:
        request = json.loads(data)
        log_fd = fds[0]
    except (ValueError, IndexError):
        _reply(conn, {"errno": 0, "error": "a malformed request"})
        for fd in fds:
            os.close(fd)
        return
    try:
        pid = os.fork()
    except OSError as exc:
        _reply(conn, {"errno": exc.errno, "error": exc.strerror or str(exc)})
        os.close(log_fd)
        return
    if pid == 0:
        code = 1
        try:
            code = _child(conn, request, log_fd)
        except BaseException:  # the child must never return into the helper's loop
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(log_fd)


def serve(fd: int) -> int:
    """The helper's loop: a request in, a forked supervisor out, until EOF on ``fd``."""
    from orchestrator import supervisor

    supervisor._libc()  # warm: every child has it loaded already
    # Out of the collector's sight: a collection in a child would otherwise touch (and
    # so copy) every page of objects it shares with us, ~2 MB per supervisor.
    gc.collect()
    gc.freeze()

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the supervisors
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = socket.socket(fileno=fd)
    while True:
        try:
            data, ancdata, _flags, _addr = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(8))
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not data:
            return 0
        fds = array.array("i")
        for level, kind, raw in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[: len(raw) - (len(raw) % fds.itemsize)])
        _handle(conn, data, list(fds))


# -- the orchestrator's side ----------------------------------------------------------------


class ForkServer:
    """The client of one helper process; thread-safe (requests are serialised)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        """How many helpers this client started (a new one after a helper died)."""

    @property
    def helper_pid(self) -> int | None:
        """The live helper's pid (None before the first request)."""
        return self._proc.pid if self._proc is not None else None

    def spawn(self, request: Mapping[str, Any], log_fd: int) -> tuple[int, float | None]:
        """Fork a supervisor for ``request``: its (pid, start time). Raises
        :class:`ForkServerUnavailable` (use the slow path) or ``OSError`` (the
        supervisor could not take the request's folder: nothing was started)."""
        data = json.dumps(request).encode()
        if len(data) > MAX_MESSAGE:
            raise ForkServerUnavailable("the request is too large for one message")
        with self._lock:
            for _ in range(2):  # a dead helper: once more with a new one
                sock = self._ensure()
                reply = self._exchange(sock, data, log_fd)
                if reply is None:
                    self._discard()
                    continue
                if "pid" in reply:
                    return int(reply["pid"]), reply.get("created")
                raise OSError(reply.get("errno") or 0, str(reply.get("error")))
        raise ForkServerUnavailable("the fork server died twice in a row")

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._discard()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if k in _KEPT_ENV}
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE * 2)
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _BOOT,
                    str(Path(__file__).resolve().parent.parent),
                    "orchestrator.forkserver",
                    str(theirs.fileno()),
                ],
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # terminal signals are not for it
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            raise ForkServerUnavailable(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self._sock = ours
        self.started += 1
        return ours

    def _exchange(self, sock: socket.socket, data: bytes, log_fd: int) -> dict[str, Any] | None:
        """Send one request, read its reply; None: the helper is gone and nothing started."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [log_fd]))]
        try:
            sock.sendmsg([data], rights)
        except OSError:
            return None  # not sent: the helper is gone
        try:
            raw = sock.recv(65536)
        except TimeoutError:
            raw = self._last_word(sock)
        except OSError:
            return None
        if not raw:
            return None  # EOF before a reply: no child replied, so no agent runs
        reply: dict[str, Any] = json.loads(raw)
        return reply

    def _last_word(self, sock: socket.socket) -> bytes:
        """A hung helper: stop it and take a reply only if one was already sent.

        After ``SHUT_RD`` no child can send any more (and none will start its
        agent); a reply already queued means that supervisor runs.
        """
        if self._proc is not None:
            self._proc.kill()
        try:
            sock.shutdown(socket.SHUT_RD)
            sock.setblocking(False)
            return sock.recv(65536)
        except OSError:
            return b""

    def _discard(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(timeout=1.0)  # it exits at EOF
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Stop the helper (it exits at EOF); supervisors it forked go on. Safe twice."""
        with self._lock:
            self._discard()


_server: ForkServer | None = None
_server_lock = threading.Lock()


def enabled() -> bool:
    """Start supervisors through the fork server (the default on Linux)?"""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and os.environ.get(DISABLE_ENV, "1") != "0"
    )


def fork_server() -> ForkServer:
    """This process's fork server client (its helper starts on the first request)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = ForkServer()
            atexit.register(_server.close)
        return _server


def _after_fork_in_child() -> None:
    """A process forked from an orchestrator must not share its helper's socket."""
    global _server
    _server = None


os.register_at_fork(after_in_child=_after_fork_in_child)
