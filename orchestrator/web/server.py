"""Serving the dashboard: bind first (a port in use is one clear error), then uvicorn.

The server runs inside the caller's event loop (``orchestrate ui`` alone, or
beside a run with ``orchestrate run --ui``); it installs no signal handler of
its own. :meth:`UiServer.stop` ends it gracefully: open event streams are cut
after ``GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import anyio
import uvicorn

from orchestrator.errors import UsageError
from orchestrator.web.app import WebConfig, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
GRACE = 1


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); UsageError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; pick another with --port") from exc
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def address(sock: socket.socket, host: str, token: str | None) -> str:
    """The address to open: ``http://127.0.0.1:8765/`` (``?token=...`` when one is needed)."""
    port = sock.getsockname()[1]
    shown = host
    if host in ("0.0.0.0", "::", ""):
        shown = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The caller owns the signals (the engine's, or ``orchestrate ui``'s)."""
        yield


class UiServer:
    """The dashboard on an already bound socket; :meth:`serve` until :meth:`stop`."""

    def __init__(self, config: WebConfig, sock: socket.socket) -> None:
        self.sock = sock
        uconfig = uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACE,
            http="h11",
            ws="none",
        )
        self._server = _Server(uconfig)
        self._done = anyio.Event()

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self.sock])
        finally:
            self.sock.close()
            self._done.set()

    async def stop(self) -> None:
        """Stop accepting, let open requests end (``GRACE`` s), return when it has stopped."""
        self._server.should_exit = True
        await self._done.wait()
