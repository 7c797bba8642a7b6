"""``orchestrate hosts``: the nodes of the Ray cluster the ray executor runs teams on.

One row per node: its name (the ``machine`` label, else its address), whether
it is alive, its labels, its agent slots (free / total: total minus the
attempts its host runs now), the agent CLIs found on its PATH, and the
attempts running there (``run/team/attempt``). ``--json`` prints the same as
a list of objects. Exit 2 when Ray is not installed or no cluster answers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orchestrator.cli import app
from orchestrator.cli._run import RayAddressOpt


async def host_rows(address: str) -> list[dict[str, Any]]:
    """What ``orchestrate hosts`` shows, one dict per node (joins the cluster first)."""
    from orchestrator.run.ray_executor import RayCluster

    cluster = RayCluster.connect(address)
    rows = []
    for node in await cluster.nodes_async():
        info = await cluster.host_info(node) if node.alive and node.slots else None
        running = list(info["running"]) if info else []
        programs = info["programs"] if info else {}
        rows.append(
            {
                "name": node.name,
                "node_id": node.node_id,
                "address": node.address,
                "alive": node.alive,
                "labels": dict(node.labels),
                "agent_slots": node.slots,
                "free_slots": max(0, node.slots - len(running)) if node.alive else 0,
                "agents": sorted(k for k, v in programs.items() if v),
                "running": running,
                "workspace": info["root"] if info else None,
                "host_answers": info is not None,
            }
        )
    return rows


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The table: one line per node, the attempts running indented below it."""
    table = [("host", "state", "slots", "agents", "labels")]
    for r in rows:
        state = "alive" if r["alive"] else "dead"
        if r["alive"] and r["agent_slots"] and not r["host_answers"]:
            state = "no host"
        slots = f"{r['free_slots']}/{r['agent_slots']} free" if r["agent_slots"] else "-"
        labels = ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"
        table.append((r["name"], state, slots, ", ".join(r["agents"]) or "-", labels))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for i, row in enumerate(table):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        )
        if i and rows[i - 1]["running"]:
            lines += [f"    running {key}" for key in rows[i - 1]["running"]]
    return [line.rstrip() for line in lines]


@app.command()
def hosts(
    ray_address: RayAddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The Ray cluster's nodes: labels, free agent slots, agent CLIs found, attempts running.

    Exit 2 when Ray is not installed or no cluster answers at --ray-address.
    """
    import anyio

    from orchestrator.run.ray_executor import connect_cluster

    address = connect_cluster(ray_address or "auto")
    rows = anyio.run(host_rows, address)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for line in format_rows(rows):
        typer.echo(line)
