"""``AgentProcess``: start a supervised agent, follow its log, enforce its time limits.

The agent runs under :mod:`orchestrator.supervisor` in a session of its own;
we never read a pipe, we tail the log file the supervisor appends to and wait
for the status file it writes at the end. So a new orchestrator can
:meth:`AgentProcess.attach` to an agent an old one started and carry on from
the log offset it had reached.

::

    async with await AgentProcess.start(launch) as proc:
        outcome = await proc.run(timeout=1800, stall_timeout=600, on_lines=store_lines)

Closing kills the agent's whole process group unless :meth:`detach` was
called; it is safe to call twice. A timeout or stall sends SIGTERM to the
group and SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
import psutil

from orchestrator import forkserver
from orchestrator.errors import AgentError
from orchestrator.supervisor import create_time as supervisor_create_time
from orchestrator.supervisor import identity_file

POLL_INTERVAL = 0.05
"""Seconds between looks at the log and status files when nothing is new."""
READ_CHUNK = 1024 * 1024
"""Bytes of log read at once: bounds our memory whatever the agent prints."""
MAX_LINE = 64 * 1024
"""A line longer than this is delivered in pieces."""
MAX_BATCH = 1000
"""Lines handed to ``on_lines`` at once."""
DEFAULT_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL."""
_EXIT_WAIT = 5.0
"""How long we wait for a supervisor that wrote its status to exit."""

OnLines = Callable[[list[str]], Awaitable[None]]

_released: list[subprocess.Popen[bytes]] = []
"""Supervisors we started and let go: reaped whenever we look at processes, never waited for."""


def _reap_released() -> None:
    _released[:] = [popen for popen in _released if popen.poll() is None]


@dataclass(frozen=True)
class Launch:
    """What to start: the agent's argv, its cwd and full environment, and its two files.

    ``secrets`` are extra values the supervisor masks in the log (the Redis
    password, which the agent's environment never holds). They reach it through
    an inherited pipe, never argv or the environment.
    """

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    log: Path
    status: Path
    secrets: tuple[str, ...] = ()
    stdin: Path | None = None
    """A file the agent reads as its stdin (its prompt); None: ``/dev/null``."""


@dataclass(frozen=True)
class Outcome:
    """How an agent process ended.

    ``exit_code`` is None when it was killed by ``signal`` or when its end is
    unknown (``lost``: the supervisor vanished without writing a status).
    ``limit`` is the timeout or stall timeout that was hit, in seconds.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    stalled: bool
    duration: float
    lost: bool = False
    limit: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.stalled or self.lost)


def read_status(path: Path) -> dict[str, Any] | None:
    """The supervisor's status file, or None while it is not written (or unreadable)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_identity(status: Path) -> tuple[int, float] | None:
    """(pid, start time) the supervisor writing ``status`` recorded, or None."""
    record = read_status(identity_file(status))
    if record is None:
        return None
    pid, created = record.get("supervisor_pid"), record.get("created")
    if not isinstance(pid, int) or not isinstance(created, int | float):
        return None
    return pid, float(created)


def _same_start(proc: psutil.Process, created: float) -> bool:
    return abs(proc.create_time() - created) <= 0.05


def _is_supervisor(proc: psutil.Process, status: Path | None, create_time: float | None) -> bool:
    """Is ``proc`` the supervisor writing ``status`` (and not a process that reused its pid)?

    A pid with its start time names one process for sure: the recorded
    ``create_time``, else the one the supervisor wrote next to ``status``. Only a
    supervisor of an older version, which wrote neither, is told by its command line.
    """
    if create_time is not None:
        return _same_start(proc, create_time)
    if status is None:
        return True
    identity = read_identity(status)
    if identity is not None:
        return identity[0] == proc.pid and _same_start(proc, identity[1])
    try:
        cmdline = proc.cmdline()
        cwd = proc.cwd()
    except psutil.AccessDenied:
        return True
    return _runs_supervisor(cmdline, cwd, status)


def _runs_supervisor(cmdline: Sequence[str], cwd: str | None, status: Path) -> bool:
    """Does this command line run our supervisor writing ``status`` (a relative path in
    it is from ``cwd``)? How a supervisor of an older version, with no identity record,
    is told: the one reading of a command line for :func:`_is_supervisor` and
    :func:`find_supervisor`."""
    if "orchestrator.supervisor" not in cmdline or "--status" not in cmdline:
        return False
    index = cmdline.index("--status") + 1
    if index >= len(cmdline):
        return False
    theirs = os.path.normpath(Path(cwd or "/") / cmdline[index])
    return theirs == os.path.normpath(status.absolute())


def find_supervisor(status: Path) -> tuple[int, float] | None:
    """The live supervisor writing ``status`` (pid, start time): for a pid never recorded.

    From the record it writes next to ``status`` (a forked supervisor's command
    line is its fork server's); for an older supervisor, from its command line.
    """
    identity = read_identity(status)
    if identity is not None:
        pid, created = identity
        return identity if _alive(pid, create_time=created) else None
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if _runs_supervisor(proc.info["cmdline"] or [], proc.info["cwd"], status):
            with contextlib.suppress(psutil.Error):
                return proc.pid, proc.create_time()
    return None


def _owns(pid: int, status: Path, create_time: float | None) -> bool:
    """Is the process ``pid`` (just opened as a pidfd) the supervisor we are after?"""
    if create_time is not None:  # one read of /proc instead of psutil's several
        now = supervisor_create_time(pid)
        return now is not None and abs(now - create_time) <= 0.05
    try:
        return _is_supervisor(psutil.Process(pid), status, None)
    except psutil.Error:
        return False


def _alive(pid: int, status: Path | None = None, create_time: float | None = None) -> bool:
    """Is ``pid`` still our supervisor (not a zombie, not a reused pid)?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return _is_supervisor(proc, status, create_time)
    except psutil.Error:
        return False


def _leads_group(pid: int, status: Path, create_time: float | None) -> bool:
    """May we signal process group ``pid``: is it the one our supervisor led?

    While any member of a group lives, its id is not given to a new process; so
    a group whose leader is gone (or a zombie) is still ours. A live process with
    that pid must be our supervisor.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return _is_supervisor(proc, status, create_time)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


async def _wait_until(done: Callable[[], bool], limit: float) -> bool:
    """Poll ``done`` every POLL_INTERVAL for at most ``limit`` seconds; its last answer."""
    with anyio.move_on_after(limit):
        while True:
            if done():
                return True
            await anyio.sleep(POLL_INTERVAL)
    return done()


_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from orchestrator.supervisor import main; sys.exit(main(sys.argv[3:]))"
)
_SUPERVISOR = (
    sys.executable,
    "-I",  # isolated: no PYTHON* variables of the agent's environment, not its cwd on sys.path
    "-S",  # no site: the supervisor needs the standard library only, and starts ~20 ms sooner
    "-c",
    _BOOT,
    str(Path(__file__).resolve().parents[2]),  # where the ``orchestrator`` package is
    "orchestrator.supervisor",  # how a resume recognises the process (see _is_supervisor)
)
"""The supervisor's command line, before its own arguments."""


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (Linux 5.3+): readable the moment the process exits. None elsewhere."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _group_alive(pgid: int) -> bool:
    """Does any process of group ``pgid`` remain (zombies excepted)?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg also reaches zombies: look closer.
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):  # it may vanish as we look
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _send_secrets(fd: int, secrets: Sequence[str]) -> None:
    """Write ``secrets`` as a JSON list to the supervisor's pipe and close it (EOF)."""
    try:
        view = memoryview(json.dumps(list(secrets)).encode())
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the supervisor is gone already: run() reports the outcome
    finally:
        os.close(fd)


_ready_dirs: set[Path] = set()
"""Folders of logs and status files known to exist: no mkdir per agent."""


def _prepare(launch: Launch) -> tuple[int, int]:
    """Clear the attempt's status, open its log: (log fd, the log's size). Raises OSError."""
    for folder in {launch.log.parent, launch.status.parent} - _ready_dirs:
        folder.mkdir(parents=True, exist_ok=True)
        _ready_dirs.add(folder)
    for stale in (launch.status, identity_file(launch.status)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)  # noqa: PTH108 (per agent: no Path machinery)
    try:
        fd = os.open(launch.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # its folder went away since
        _ready_dirs.clear()
        launch.log.parent.mkdir(parents=True, exist_ok=True)
        launch.status.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(launch.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return fd, os.fstat(fd).st_size


def _cannot_start(launch: Launch, exc: OSError) -> AgentError:
    return AgentError(
        f"cannot start the agent {launch.argv[0]!r} in {launch.cwd}: {exc.strerror or exc}"
    )


def _request(launch: Launch) -> dict[str, Any]:
    """What the fork server needs to fork the supervisor of ``launch`` (absolute paths)."""
    return {
        "argv": list(launch.argv),
        "cwd": str(launch.cwd.absolute()),
        "env": dict(launch.env),
        "log": str(launch.log.absolute()),
        "status": str(launch.status.absolute()),
        "secrets": list(launch.secrets),
        "stdin": None if launch.stdin is None else str(launch.stdin.absolute()),
    }


def _spawn(launch: Launch, log_fd: int) -> subprocess.Popen[bytes]:
    """Start the supervisor as a fresh interpreter (the slow path)."""
    secrets_r, secrets_w = os.pipe() if launch.secrets else (-1, -1)
    try:
        secrets_args = ["--secrets-fd", str(secrets_r)] if launch.secrets else []
        if launch.stdin is not None:
            secrets_args += ["--stdin", str(launch.stdin)]
        popen = subprocess.Popen(
            [
                *_SUPERVISOR,
                "--log",
                str(launch.log),
                "--status",
                str(launch.status),
                *secrets_args,
                "--",
                *launch.argv,
            ],
            cwd=launch.cwd,
            env=dict(launch.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,  # should the supervisor itself fail, its traceback is in the log
            start_new_session=True,
            close_fds=True,
            pass_fds=(secrets_r,) if launch.secrets else (),
        )
    except BaseException:
        if launch.secrets:
            os.close(secrets_w)
        raise
    finally:
        if launch.secrets:
            os.close(secrets_r)
    if launch.secrets:
        _send_secrets(secrets_w, launch.secrets)
    return popen


class _LineSplitter:
    """Bytes in, complete decoded lines out; a partial line waits (bounded by MAX_LINE)."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        """Lines with the number of bytes each consumed (its newline included)."""
        data = self.partial + data
        out: list[tuple[str, int]] = []
        start, size = 0, len(data)
        while start < size:
            end = data.find(b"\n", start, start + MAX_LINE + 1)
            if end >= 0:
                out.append((_decode(data[start:end]), end + 1 - start))
                start = end + 1
            elif size - start > MAX_LINE:  # an overlong line: deliver a piece of it
                out.append((_decode(data[start : start + MAX_LINE]), MAX_LINE))
                start += MAX_LINE
            else:
                break
        self.partial = data[start:]
        return out

    def finish(self) -> list[tuple[str, int]]:
        """The partial last line, once no more output will come."""
        rest, self.partial = self.partial, b""
        return [(_decode(rest), len(rest))] if rest else []


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").removesuffix("\r")


class AgentProcess:
    """One supervised agent process. Use :meth:`start` or :meth:`attach`, then :meth:`run`."""

    def __init__(
        self,
        *,
        pid: int,
        log: Path,
        status: Path,
        offset: int,
        popen: subprocess.Popen[bytes] | None,
        create_time: float | None,
        fresh: bool = False,
    ) -> None:
        self.pid = pid
        """The supervisor's pid, which is also the process group id of the agent."""
        self.log = log
        self.status = status
        self.offset = offset
        """Bytes of LOG consumed so far. Inside ``on_lines``: the end of the batch's last line."""
        self.create_time = create_time
        """The supervisor's start time (psutil), to tell it from a reused pid on attach."""
        self._popen = popen
        self._read_pos = offset
        self._splitter = _LineSplitter()
        self._closed = False
        self._detached = False
        self._pidfd = _open_pidfd(pid)
        """Wakes :meth:`_nap` the moment the supervisor exits, instead of a poll tick later."""
        self._gone = False
        """The pid is not (or no longer) our supervisor's: a stranger, or an exited one reaped."""
        if not fresh and self._pidfd is not None and not _owns(pid, status, create_time):
            self._close_pidfd()
            self._gone = True

    # -- starting ---------------------------------------------------------------------------

    @classmethod
    async def start(cls, launch: Launch) -> AgentProcess:
        """Start ``launch.argv`` under a supervisor in a new session. Raises :class:`AgentError`.

        Through the fork server (awaited on the event loop: a few file operations and
        one message), else as a fresh interpreter (in a worker thread).
        """
        if not launch.argv:
            raise AgentError("the agent's command line is empty")
        if forkserver.enabled():
            try:
                fd, offset = _prepare(launch)
                try:
                    forked = await forkserver.fork_server().aspawn(_request(launch), fd)
                finally:
                    os.close(fd)
            except forkserver.ForkServerUnavailable:
                pass
            except OSError as exc:
                raise _cannot_start(launch, exc) from exc
            else:
                pid, create_time = forked
                return cls(
                    pid=pid,
                    log=launch.log,
                    status=launch.status,
                    offset=offset,
                    popen=None,
                    create_time=create_time,
                    fresh=True,  # it told us its pid itself: no need to check who it is
                )
        return await anyio.to_thread.run_sync(cls._spawn_sync, launch)

    @classmethod
    def _spawn_sync(cls, launch: Launch) -> AgentProcess:
        try:
            fd, offset = _prepare(launch)
            try:
                popen = _spawn(launch, fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _cannot_start(launch, exc) from exc
        try:
            create_time: float | None = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            create_time = None
        return cls(
            pid=popen.pid,
            log=launch.log,
            status=launch.status,
            offset=offset,
            popen=popen,
            create_time=create_time,
        )

    @classmethod
    async def attach(
        cls, pid: int, log: Path, status: Path, offset: int, *, create_time: float | None = None
    ) -> AgentProcess:
        """Reconnect to a supervisor another orchestrator started (after its crash).

        Works whether the supervisor is still running, has already written its
        status, or is gone without one (then :meth:`run` reports ``lost``).
        ``create_time`` (from the starting side) guards against a reused pid.
        """
        _reap_released()
        return cls(
            pid=pid, log=log, status=status, offset=offset, popen=None, create_time=create_time
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The supervisor is alive and has not written its status yet."""
        return not self.status.exists() and self._supervisor_alive()

    def _supervisor_alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        if self._gone:
            return False
        if self._pidfd is not None:  # the process we opened it for: readable once it exited
            return not select.select([self._pidfd], [], [], 0)[0]
        return _alive(self.pid, self.status, self.create_time)

    # -- running ----------------------------------------------------------------------------

    async def run(
        self,
        *,
        timeout: float,  # noqa: ASYNC109 (the agent's limit, not this call's deadline)
        stall_timeout: float | None,
        on_lines: OnLines,
        grace: float = DEFAULT_GRACE,
    ) -> Outcome:
        """Follow the log into ``on_lines`` until the agent ends; kill it at a limit.

        ``timeout`` counts from this call; ``stall_timeout`` is the longest time
        without any output. Lines reach ``on_lines`` in order, in batches of
        at most :data:`MAX_BATCH`.
        """
        began = time.monotonic()
        last_output = began
        timed_out = stalled = False
        limit: float | None = None
        with self._open_log() as fd:
            while True:
                got = await self._pump(fd, on_lines)
                now = time.monotonic()
                if got:
                    last_output = now
                if self.status.exists() or not self._supervisor_alive():
                    break
                if now - began >= timeout:
                    timed_out, limit = True, timeout
                elif stall_timeout is not None and now - last_output >= stall_timeout:
                    stalled, limit = True, stall_timeout
                if timed_out or stalled:
                    await self.terminate(grace)
                    break
                if got == READ_CHUNK:
                    await anyio.lowlevel.checkpoint()  # more is waiting: catch up
                else:
                    await self._nap(POLL_INTERVAL)
            await self._wait_exit(_EXIT_WAIT)
            while await self._pump(fd, on_lines):
                pass
            await self._deliver(self._splitter.finish(), on_lines)
        return self._outcome(timed_out, stalled, limit, time.monotonic() - began)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the supervisor exits meanwhile."""
        if self._pidfd is None:
            await anyio.sleep(seconds)
            return
        with anyio.move_on_after(seconds):
            await anyio.wait_readable(self._pidfd)

    async def _wait_exit(self, limit: float) -> None:
        """Wait at most ``limit`` seconds for the supervisor to be gone."""
        with anyio.move_on_after(limit):
            while self._supervisor_alive():
                await self._nap(POLL_INTERVAL)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    @contextlib.contextmanager
    def _open_log(self) -> Iterator[int]:
        try:
            fd = os.open(self.log, os.O_RDONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AgentError(f"cannot read the agent log {self.log}: {exc}") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    async def _pump(self, fd: int, on_lines: OnLines) -> int:
        """Read up to READ_CHUNK new bytes and deliver the complete lines; bytes read."""
        data = os.pread(fd, READ_CHUNK, self._read_pos)
        if not data:
            return 0
        self._read_pos += len(data)
        await self._deliver(self._splitter.feed(data), on_lines)
        return len(data)

    async def _deliver(self, lines: list[tuple[str, int]], on_lines: OnLines) -> None:
        for i in range(0, len(lines), MAX_BATCH):
            batch = lines[i : i + MAX_BATCH]
            self.offset += sum(n for _, n in batch)
            await on_lines([text for text, _ in batch])

    def _outcome(
        self, timed_out: bool, stalled: bool, limit: float | None, elapsed: float
    ) -> Outcome:
        status = read_status(self.status)
        if status is None:
            returncode = self._popen.returncode if self._popen is not None else None
            sig = -returncode if returncode is not None and returncode < 0 else None
            return Outcome(
                exit_code=None,
                signal=sig,
                timed_out=timed_out,
                stalled=stalled,
                duration=elapsed,
                lost=not (timed_out or stalled),
                limit=limit,
            )
        duration = elapsed
        with contextlib.suppress(TypeError, ValueError):
            duration = float(status["ended"]) - float(status["started"])
        return Outcome(
            exit_code=status.get("exit_code"),
            signal=status.get("signal"),
            timed_out=timed_out,
            stalled=stalled,
            duration=duration,
            limit=limit,
        )

    # -- stopping ---------------------------------------------------------------------------

    async def terminate(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM the agent's process group; SIGKILL it after ``grace`` seconds. Waits for it."""
        with anyio.CancelScope(shield=True):
            if not self._group_alive():
                return
            _killpg(self.pid, signal.SIGTERM)
            if not await _wait_until(lambda: not self._group_alive(), grace):
                _killpg(self.pid, signal.SIGKILL)
                await _wait_until(lambda: not self._group_alive(), _EXIT_WAIT)

    def kill(self) -> None:
        """SIGKILL the agent's process group now, without a grace period (a second Ctrl-C).

        A :meth:`terminate` under way sees the group gone and returns."""
        if self._group_alive():
            _killpg(self.pid, signal.SIGKILL)

    def _group_alive(self) -> bool:
        _reap_released()
        if self._popen is not None:
            self._popen.poll()  # reap our supervisor so it is not counted as a zombie
        elif self._gone or (
            self._pidfd is None and not _leads_group(self.pid, self.status, self.create_time)
        ):
            return False
        # With a pidfd the group is ours: its leader is our supervisor, alive or exited (and
        # a group's id is not reused while any member lives).
        return _group_alive(self.pid)

    def detach(self) -> None:
        """Leave the agent running when this object closes (another orchestrator may attach)."""
        self._detached = True
        self._close_pidfd()
        if self._popen is not None:
            _released.append(self._popen)  # still ours to reap, once it ends
            self._popen = None

    async def aclose(self) -> None:
        """Kill the agent's process group (unless detached) and reap the supervisor. Safe twice."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if not self._detached:
                await self.terminate(grace=DEFAULT_GRACE)
            popen = self._popen
            if popen is not None and not self._detached:
                await self._wait_exit(_EXIT_WAIT)
            self._close_pidfd()

    async def __aenter__(self) -> AgentProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
