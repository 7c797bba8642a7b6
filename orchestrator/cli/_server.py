"""Commands: the embedded Redis server (``orchestrate server start|status|stop``).

The embedded valkey-server is started on demand by any command that needs the
state and then keeps running in the background (so ``orchestrate logs`` in
another terminal finds it); ``server stop`` ends it. With ``--redis-url`` the
server is someone else's and these commands only report.

``server start --listen HOST:PORT`` makes it reachable from other machines (the
nodes of a Ray cluster, docs/cluster.md): it listens there with a generated
password, TLS with ``--tls-cert``/``--tls-key``, and prints the URL once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli._common import StateDirOpt

server_app = typer.Typer(
    name="server",
    help="The embedded Redis server that holds orchestrate's state (start, status, stop).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


def _server(state_dir: StateDirOpt) -> object:
    """The state folder's server; looking at it or stopping it creates nothing."""
    from orchestrator.cli._common import load_settings
    from orchestrator.paths import StateLayout, default_state_dir
    from orchestrator.state.server import EmbeddedServer

    settings = load_settings(state_dir=state_dir)
    root = settings.state_dir or default_state_dir()
    return EmbeddedServer(StateLayout(root.absolute()).redis_dir, settings)


def _listen_of(listen: str, cert: Path | None, key: Path | None, ca: Path | None) -> object:
    from orchestrator.errors import UsageError
    from orchestrator.state.server import Listen

    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:6380")
    if (cert is None) != (key is None):
        raise UsageError("TLS needs both --tls-cert and --tls-key")
    if ca is not None and cert is None:
        raise UsageError("--tls-ca needs --tls-cert and --tls-key")
    for option, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None and not path.is_file():
            raise UsageError(f"{option} {path}: no such file")
    return Listen(
        host=host.strip("[]") or "0.0.0.0",
        port=int(port),
        tls_cert=str(cert.resolve()) if cert else None,
        tls_key=str(key.resolve()) if key else None,
        tls_ca=str(ca.resolve()) if ca else None,
    )


@server_app.command("start")
def start(
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Also listen on TCP there, with a generated password (for other machines).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="With --listen: speak TLS (rediss://).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="The certificate's key.")
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option("--tls-ca", help="Require client certificates signed by it.")
    ] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Start the embedded server (restart it with --listen to reach it from other machines).

    With --listen the URL, password included, is printed once; the password
    stays in the state folder (readable by you alone) and is never shown again.
    Without --listen the server goes back to its local socket only.
    """
    from orchestrator.errors import UsageError
    from orchestrator.state.server import EmbeddedServer, Listen

    if listen is None and (tls_cert or tls_key or tls_ca):
        raise UsageError("--tls-cert, --tls-key and --tls-ca go with --listen")
    wanted = _listen_of(listen, tls_cert, tls_key, tls_ca) if listen is not None else None
    srv = _server(state_dir)
    assert isinstance(srv, EmbeddedServer)
    assert wanted is None or isinstance(wanted, Listen)
    url = srv.listen(wanted)
    if url is None or wanted is None:
        typer.echo(f"embedded Redis: running on its socket {srv.socket_path} only")
        return
    tls = " with TLS" if wanted.tls_cert else ""
    typer.echo(
        f"embedded Redis: listening on {wanted.host}:{wanted.port}{tls}; the password is in "
        f"{srv.password_file} (readable by you alone). The URL for the other machines "
        "(shown this once):"
    )
    typer.echo(url)


@server_app.command("status")
def status(state_dir: StateDirOpt = None) -> None:
    """Say whether the embedded server runs, where, and how big its data is."""
    from orchestrator.state.server import EmbeddedServer

    srv = _server(state_dir)
    assert isinstance(srv, EmbeddedServer)
    st = srv.status()
    damage = srv.damage()
    if damage is not None:
        typer.echo(f"orchestrate: warning: {damage}", err=True)
    if not st.running:
        typer.echo(f"embedded Redis: not running (data in {st.data_dir})")
        return
    typer.echo(f"embedded Redis: running, pid {st.pid}, valkey {st.version}")
    typer.echo(f"  socket      {st.socket}")
    typer.echo(f"  data        {st.data_dir} (append-only file, fsync {st.appendfsync})")
    typer.echo(f"  memory      {st.used_memory}")
    typer.echo(f"  clients     {st.connected_clients}")
    typer.echo(f"  uptime      {st.uptime_seconds}s")
    if st.listen:
        typer.echo(f"  listening   {st.listen} (password in {srv.password_file})")


@server_app.command("stop")
def stop(state_dir: StateDirOpt = None) -> None:
    """Stop the embedded server (data flushed to disk first; the next command restarts it)."""
    from orchestrator.state.server import EmbeddedServer

    srv = _server(state_dir)
    assert isinstance(srv, EmbeddedServer)
    if srv.stop():
        typer.echo("embedded Redis: stopped")
    else:
        typer.echo("embedded Redis: was not running")
