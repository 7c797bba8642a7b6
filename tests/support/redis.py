"""Test support: real Redis servers and open stores. No fakeredis, ever.

Register with ``pytest_plugins = ["tests.support.redis"]`` (root ``conftest.py``).
What you get:

``redis_server_path`` (session) -> str
    The Debian ``redis-server`` executable; tests that need it are skipped with
    a clear reason when it is not installed (CI installs it).

``redis_url`` (session) -> str
    ``unix://...`` URL of an external ``redis-server`` started for the whole
    session on a unix socket in a temp folder (no TCP port, no persistence).
    Tests share it: isolate yourself with a fresh key prefix (``store`` does).

``password_redis`` (session) -> :class:`PasswordRedis`
    A second external server with ``requirepass`` listening on a free
    localhost port: ``.url`` (``redis://:PASSWORD@127.0.0.1:PORT/0``),
    ``.password``. Use it to prove a password never shows up anywhere.

``settings`` (function) -> Settings
    ``Settings`` pointing at ``redis_url`` with a fresh ``key_prefix`` (so
    ``list_runs`` sees only this test's runs), a short lease TTL (2 s) and few
    retries (fast failures).

``store`` (function, async) -> Store
    An open :class:`~orchestrator.state.store.Store` on ``settings``; closed after
    the test. Needs an anyio test (``pytestmark = pytest.mark.anyio``).

``embedded_state_dir`` (module) -> StateLayout
    A fresh state folder whose embedded valkey-server is already running
    (``appendfsync always``); the server is stopped after the module. Open a
    store on it with ``open_store(embedded_settings(), layout)``.

``stop_embedded(state_dir)`` (helper)
    Stops the embedded server of a state folder (``repo/.orchestrate``) if one
    runs: what ``orchestrate run`` without ``--redis-url`` leaves up. The
    ``git_repo`` fixture calls it at teardown.

``make_run(store, run_id="r1", teams=("db", "auth"))`` (async helper)
    Creates a run whose teams are all pending (no lease taken); returns its id.

``anyio_backend`` (session) -> "asyncio"
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.server import EmbeddedServer
from orchestrator.state.store import Store, open_store

__all__ = [
    "PasswordRedis",
    "anyio_backend",
    "embedded_settings",
    "embedded_state_dir",
    "make_run",
    "password_redis",
    "redis_server_path",
    "redis_url",
    "settings",
    "stop_embedded",
    "store",
]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


def _wait_ping(client: redis.Redis, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            if client.ping():
                return
        except (redis.exceptions.RedisError, OSError):
            time.sleep(0.01)
    raise RuntimeError("redis-server did not answer")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _redis_server(
    redis_server_path: str, folder: Path, listen: list[str], client: redis.Redis
) -> Iterator[None]:
    """Run a throw-away Debian redis-server (data in ``folder``, removed after)."""
    fixed = ["--save", "", "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"]
    proc = subprocess.Popen(
        [redis_server_path, *listen, *fixed],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ping(client, proc)
        yield
    finally:
        client.close()
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server_path: str) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="orch-redis-"))
    sock = str(folder / "redis.sock")
    listen = ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"]
    with _redis_server(redis_server_path, folder, listen, redis.Redis(unix_socket_path=sock)):
        yield f"unix://{sock}"


@dataclass(frozen=True)
class PasswordRedis:
    url: str
    password: str
    port: int


@pytest.fixture(scope="session")
def password_redis(redis_server_path: str) -> Iterator[PasswordRedis]:
    password = "pw-" + uuid.uuid4().hex  # unique: a hit in any output can only be a leak
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="orch-redis-pw-"))
    listen = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", password]
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    with _redis_server(redis_server_path, folder, listen, client):
        yield PasswordRedis(f"redis://:{password}@127.0.0.1:{port}/0", password, port)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,  # type: ignore[arg-type]
        key_prefix=f"t{uuid.uuid4().hex[:10]}",
        lease_ttl=2.0,
        retry_attempts=3,
        retry_max_delay=0.2,
    )


@pytest.fixture
async def store(settings: Settings, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(settings, StateLayout(tmp_path / ".orchestrate")) as opened:
        yield opened


def embedded_settings(**overrides: object) -> Settings:
    """Settings for the embedded server: fsync always, a fresh key prefix, short lease."""
    values: dict[str, object] = {
        "appendfsync": "always",
        "key_prefix": f"t{uuid.uuid4().hex[:10]}",
        "lease_ttl": 2.0,
        "retry_attempts": 4,
        "retry_max_delay": 0.2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def embedded_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateLayout]:
    layout = StateLayout(tmp_path_factory.mktemp("embedded") / ".orchestrate")
    server = EmbeddedServer(layout.redis_dir, embedded_settings())
    server.ensure()
    try:
        yield layout
    finally:
        server.stop()


def stop_embedded(state_dir: Path) -> bool:
    """Stop ``state_dir``'s embedded valkey-server if it runs; True if one was stopped."""
    redis_dir = state_dir / "redis"
    if not redis_dir.is_dir():
        return False
    return EmbeddedServer(redis_dir, embedded_settings()).stop()


async def make_run(store: Store, run_id: str = "r1", teams: Sequence[str] = ("db", "auth")) -> str:
    """Create a run with ``teams`` (all pending); returns its id."""
    await store.create_run(run_id, meta={"plan": "plan.yaml"}, team_ids=list(teams))
    return run_id
