"""Commands: the embedded Redis server (``orchestrate server status|stop``).

The embedded valkey-server is started on demand by any command that needs the
state and then keeps running in the background (so ``orchestrate logs`` in
another terminal finds it); ``server stop`` ends it. With ``--redis-url`` the
server is someone else's and these commands only report.
"""

from __future__ import annotations

import typer

from orchestrator.cli import app
from orchestrator.cli._common import StateDirOpt

server_app = typer.Typer(
    name="server",
    help="The embedded Redis server that holds orchestrate's state (status, stop).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


def _server(state_dir: StateDirOpt) -> object:
    """The state folder's server; looking at it or stopping it creates nothing."""
    from orchestrator.cli._common import load_settings
    from orchestrator.paths import StateLayout, default_state_dir
    from orchestrator.redis_server import EmbeddedServer

    settings = load_settings(state_dir=state_dir)
    root = settings.state_dir or default_state_dir()
    return EmbeddedServer(StateLayout(root.absolute()).redis_dir, settings)


@server_app.command("status")
def status(state_dir: StateDirOpt = None) -> None:
    """Say whether the embedded server runs, where, and how big its data is."""
    from orchestrator.redis_server import EmbeddedServer

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


@server_app.command("stop")
def stop(state_dir: StateDirOpt = None) -> None:
    """Stop the embedded server (data flushed to disk first; the next command restarts it)."""
    from orchestrator.redis_server import EmbeddedServer

    srv = _server(state_dir)
    assert isinstance(srv, EmbeddedServer)
    if srv.stop():
        typer.echo("embedded Redis: stopped")
    else:
        typer.echo("embedded Redis: was not running")
