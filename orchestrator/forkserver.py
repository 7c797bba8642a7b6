"""The fork server: supervisors forked from a warm process, not a fresh interpreter each.

Starting ``python -m orchestrator.supervisor`` costs an interpreter and its
imports (40-60 ms here) before the agent can start. Instead, each orchestrator
process keeps one small helper that has imported the supervisor once and forks
a supervisor per agent (about a millisecond)::

    pid, created = fork_server().spawn(request, log_fd)   # in a worker thread

The helper is ``python -I -S -c ... orchestrator.forkserver FD``, started on
first use with its own session, ``/`` as its folder and no environment of ours
(no secrets, no paths). Its orchestrator sends requests over a ``SOCK_SEQPACKET``
control socket pair (whose orchestrator end never leaves the orchestrator); the
helper exits when that socket reaches EOF: its orchestrator closed it or died.
A request is one message, JSON ``{argv, cwd, env, log, status, secrets, stdin}``, with
two file descriptors: the log (the supervisor's stderr) and one end of a fresh
socket pair for the reply, so several requests are under way at once. For each
the helper forks a child that

1. closes the control socket and starts its own session (so the agent outlives
   the helper and the orchestrator),
2. takes the request's folder (the environment goes to the agent only: the
   supervisor's own is the helper's, which holds nothing of ours),
3. records its pid and start time next to the status file, replies
   ``{"pid", "created"}`` itself (``created``: its start time as ``psutil``
   reads it) on the request's reply socket, and only if that reply was sent
4. runs :func:`orchestrator.supervisor.supervise` and exits with its code.

So a reply always means a running supervisor, and EOF before a reply means
that no agent was started: the request is safe to send again. That is what
makes a helper killed with SIGKILL harmless: supervisors it forked go on (they
are in their own sessions; a resume recognises them by pid and start time, see
:mod:`orchestrator.agents.process`), and the next request starts a new helper. A
helper that cannot be started (three in a row died without a reply: the
process stops trying), or a request too large for one message, makes
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
MAX_FAILURES = 3
"""Helpers in a row that may die without a reply before this process stops using them."""
SEND_TIMEOUT = 5.0
"""Seconds a request may wait for room in the helper's queue (it reads them at once)."""
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


def _encode(request: Mapping[str, Any]) -> bytes:
    data = json.dumps(request).encode()
    if len(data) > MAX_MESSAGE:
        raise ForkServerUnavailable("the request is too large for one message")
    return data


# -- the helper's side ----------------------------------------------------------------------


def _child(
    control: socket.socket, reply: socket.socket, request: dict[str, Any], log_fd: int
) -> int:
    """In the forked child: become the supervisor of ``request``; returns the exit code."""
    from orchestrator.supervisor import create_time, identity_file, supervise, write_identity

    control.close()  # only the helper listens there: its death must show as EOF at once
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
        _reply(reply, {"errno": exc.errno, "error": exc.strerror or str(exc)})
        return 1
    status = Path(request["status"])
    write_identity(status)  # before the reply: whoever learns our pid can also find us by it
    if not _reply(reply, {"pid": os.getpid(), "created": create_time()}):
        identity_file(status).unlink(missing_ok=True)
        return 1  # nobody knows of us: start no agent
    reply.close()
    return supervise(
        list(request["argv"]),
        Path(request["log"]),
        status,
        request["secrets"],
        Path(request["stdin"]) if request.get("stdin") else None,
        env=request["env"],  # the agent's; ours (the helper's) holds nothing of it
        identified=True,
    )


def _reply(sock: socket.socket, message: dict[str, Any]) -> bool:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def _handle(control: socket.socket, data: bytes, fds: list[int]) -> None:
    """One request: ``fds`` are the log and the request's reply socket."""
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return  # not from our client: its reply socket (if any) reaches EOF
    log_fd, reply = fds[0], socket.socket(fileno=fds[1])
    try:
        try:
            request = json.loads(data)
        except ValueError:
            _reply(reply, {"errno": 0, "error": "a malformed request"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            _reply(reply, {"errno": exc.errno, "error": exc.strerror or str(exc)})
            return
        if pid == 0:
            code = 1
            try:
                code = _child(control, reply, request, log_fd)
            except BaseException:  # the child must never return into the helper's loop
                import traceback

                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
    finally:
        os.close(log_fd)
        reply.close()


def serve(fd: int) -> int:
    """The helper's loop: a request in, a forked supervisor out, until EOF on ``fd``."""
    from orchestrator import supervisor

    supervisor._libc()  # warm: every child has it loaded already
    # Out of the collector's sight: a collection in a child would otherwise touch (and
    # so copy) every page of objects it shares with us.
    gc.collect()
    gc.freeze()

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the supervisors
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=fd)
    while True:
        try:
            data, ancdata, _flags, _addr = control.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(16))
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
        _handle(control, data, list(fds))


# -- the orchestrator's side ----------------------------------------------------------------


class ForkServer:
    """The client of one helper process; thread-safe, several requests at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        """How many helpers this client started (a new one after a helper died)."""
        self._failures = 0
        """Helpers in a row that died without a single reply (reset by a reply)."""

    @property
    def helper_pid(self) -> int | None:
        """The live helper's pid (None before the first request)."""
        return self._proc.pid if self._proc is not None else None

    def warm(self) -> None:
        """Start the helper now, without waiting for it (say, while a resume reads Redis), so
        that the first agent does not wait for its imports. No-op when it runs already."""
        with self._lock:
            if self._failures < MAX_FAILURES:
                try:
                    self._ensure()
                except ForkServerUnavailable:
                    self._failures += 1

    def spawn(self, request: Mapping[str, Any], log_fd: int) -> tuple[int, float | None]:
        """Fork a supervisor for ``request``: its (pid, start time). Raises
        :class:`ForkServerUnavailable` (use the slow path) or ``OSError`` (the
        supervisor could not take the request's folder: nothing was started)."""
        data = _encode(request)
        for _ in range(2):  # a dead helper: once more with a new one
            sent = self._send(data, log_fd)
            if sent is None:
                continue
            control, mine = sent
            try:
                try:
                    raw = mine.recv(65536)
                except TimeoutError:
                    raw = self._last_word(mine, control)
                except OSError:
                    raw = b""
            finally:
                mine.close()
            started = self._started(raw, control)
            if started is not None:
                return started
        raise ForkServerUnavailable("the fork server died twice in a row")

    async def aspawn(self, request: Mapping[str, Any], log_fd: int) -> tuple[int, float | None]:
        """:meth:`spawn` for an event loop: the reply is awaited, not waited for in a thread.

        Not cancellable once sent (a reply means a running agent, which must reach
        the caller): it takes at most :data:`REPLY_TIMEOUT`.
        """
        import anyio  # here: the helper itself never imports it

        data = _encode(request)
        for _ in range(2):
            sent = self._send(data, log_fd)
            if sent is None:
                continue
            control, mine = sent
            try:
                mine.setblocking(False)
                raw: bytes | None = None
                deadline = anyio.current_time() + REPLY_TIMEOUT
                with anyio.CancelScope(shield=True, deadline=deadline):
                    while raw is None:
                        await anyio.wait_readable(mine)
                        try:
                            raw = mine.recv(65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            raw = b""
                if raw is None:
                    raw = self._last_word(mine, control)
            finally:
                mine.close()
            started = self._started(raw, control)
            if started is not None:
                return started
        raise ForkServerUnavailable("the fork server died twice in a row")

    def _started(self, raw: bytes, control: socket.socket) -> tuple[int, float | None] | None:
        """A reply's (pid, start time); None at EOF before a reply: no child replied, so
        no agent runs, and the helper is gone (discarded). OSError: the child refused."""
        if not raw:
            self._discard(control)
            self._failures += 1
            return None
        self._failures = 0
        reply: dict[str, Any] = json.loads(raw)
        if "pid" in reply:
            return int(reply["pid"]), reply.get("created")
        raise OSError(reply.get("errno") or 0, str(reply.get("error")))

    def _send(self, data: bytes, log_fd: int) -> tuple[socket.socket, socket.socket] | None:
        """Send one request with a fresh reply socket; (control socket, our reply end), or
        None when the helper is gone (it is discarded: the next call starts a new one).

        Raises :class:`ForkServerUnavailable` once :data:`MAX_FAILURES` helpers in a row
        died without a reply (one that cannot even start): the slow path from then on.
        """
        with self._lock:
            if self._failures >= MAX_FAILURES:
                raise ForkServerUnavailable("the fork server keeps dying: not used any more")
            control = self._ensure()
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                rights = array.array("i", [log_fd, theirs.fileno()])
                control.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
            except OSError:
                mine.close()
                self._discard(control, locked=True)
                self._failures += 1
                return None
            finally:
                theirs.close()  # the helper holds it now, and then only the child
        mine.settimeout(REPLY_TIMEOUT)
        return control, mine

    def _last_word(self, mine: socket.socket, control: socket.socket) -> bytes:
        """A hung helper: stop it and take a reply only if one was already sent.

        After ``SHUT_RD`` no child can send any more (and none will start its
        agent); a reply already queued means that supervisor runs.
        """
        self._discard(control, kill=True)
        try:
            mine.shutdown(socket.SHUT_RD)
            mine.setblocking(False)
            return mine.recv(65536)
        except OSError:
            return b""

    def _ensure(self) -> socket.socket:
        """The live helper's control socket (the lock is held): a new helper if need be."""
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        if self._sock is not None:
            self._discard(self._sock, locked=True)
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
        ours.settimeout(SEND_TIMEOUT)  # a helper stopped with its queue full is given up
        self._sock = ours
        self.started += 1
        return ours

    def _discard(self, control: socket.socket, *, locked: bool = False, kill: bool = False) -> None:
        """Let go of the helper behind ``control`` (if it is still the current one)."""
        if not locked:
            with self._lock:
                self._discard(control, locked=True, kill=kill)
            return
        if control is not self._sock:
            return  # another request discarded it already, and maybe started a new one
        control.close()
        self._sock = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        try:
            proc.wait(timeout=1.0)  # it exits at EOF
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the helper (it exits at EOF); supervisors it forked go on. Safe twice."""
        with self._lock:
            if self._sock is not None:
                self._discard(self._sock, locked=True)


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
