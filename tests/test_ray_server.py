"""``orchestrate server start --listen``: the embedded Redis reachable from the nodes of a
cluster, with a generated password shown once (kept 0600, never in a log or a status), TLS
when asked (``rediss://``), and back to its socket only. A real server, real processes."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
import redis

from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.store import open_store

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmd(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    return subprocess.run(
        [*ORCHESTRATE, *args, "--state-dir", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / ".orchestrate"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        _cmd("server", "stop", state=folder)


def _tls_processes(state: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "orchestrator.redis_tls" in line and str(state) in line:
            found.append(proc)
    return found


def test_listen_shows_the_url_once_and_keeps_the_password_private(state: Path) -> None:
    """The URL (with a generated password) is printed by `server start --listen` alone: the
    password file is 0600, `server status` names the file, not the password; the server
    refuses a client without it, accepts one with it, and never logs it; local commands
    still reach it through its socket."""
    port = _port()
    started = _cmd("server", "start", "--listen", f"127.0.0.1:{port}", state=state)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    password = (state / "redis" / "password").read_text().strip()
    assert url == f"redis://:{password}@127.0.0.1:{port}/0" and len(password) >= 24
    assert stat.S_IMODE((state / "redis" / "password").stat().st_mode) == 0o600
    status = _cmd("server", "status", state=state)
    assert f"listening   127.0.0.1:{port}" in status.stdout
    assert password not in status.stdout + status.stderr
    assert password not in (state / "redis" / "valkey.log").read_text()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
    client = redis.Redis.from_url(url, socket_timeout=5)
    assert client.ping()
    client.close()

    async def local() -> tuple[list[str], tuple[str, ...]]:
        async with open_store(Settings(), StateLayout(state)) as store:
            return await store.list_runs(), store.secrets

    runs, secrets = anyio.run(local)
    assert runs == [] and password in secrets  # redacted from agents' lines like any secret
    again = _cmd("server", "start", state=state)  # back to the socket only
    assert again.returncode == 0 and password not in again.stdout
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
    assert not (state / "redis" / "password").exists()
    assert anyio.run(local)[0] == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_listen_with_tls_takes_rediss_urls_only(state: Path, tmp_path: Path) -> None:
    """With a certificate and key the server speaks TLS on its port: the URL is rediss://,
    a client trusting the certificate gets in (so does the store, a `rediss://` URL with
    `ssl_ca_certs`), a plain connection does not; `server stop` leaves no listener."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _port()
    started = _cmd(
        "server", "start", "--listen", f"127.0.0.1:{port}",
        "--tls-cert", str(cert), "--tls-key", str(key), state=state,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    assert url.startswith("rediss://:") and url.endswith(f"@127.0.0.1:{port}/0")
    trusted = f"{url}?ssl_ca_certs={cert}"
    client = redis.Redis.from_url(trusted, socket_timeout=5)
    assert client.ping()
    client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()

    async def remote() -> list[str]:
        async with open_store(Settings(redis_url=trusted), StateLayout(tmp_path / "x")) as store:  # type: ignore[arg-type]
            return await store.list_runs()

    assert anyio.run(remote) == []
    assert _tls_processes(state)
    assert _cmd("server", "stop", state=state).returncode == 0
    assert not _tls_processes(state)


def test_bad_listen_options_are_one_line_exit_2(state: Path, tmp_path: Path) -> None:
    """A listen address without a port, half of a TLS pair, a missing certificate: one
    line on stderr, exit 2, no server started."""
    cases = [
        (["--listen", "0.0.0.0"], "--listen '0.0.0.0': expected HOST:PORT"),
        (["--listen", "127.0.0.1:1", "--tls-cert", str(tmp_path / "c")], "needs both"),
        (
            ["--listen", "127.0.0.1:1", "--tls-cert", str(tmp_path / "c"), "--tls-key", "k"],
            "no such file",
        ),
        (["--tls-cert", "c"], "go with --listen"),
    ]
    for args, said in cases:
        proc = _cmd("server", "start", *args, state=state)
        assert proc.returncode == 2, (args, proc.stderr)
        assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (state / "redis" / "valkey.pid").exists()
