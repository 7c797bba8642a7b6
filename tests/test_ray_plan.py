"""The plan fields of the ray executor (``runs_on``, ``remote``, ``executor``) and the
placement check that refuses a ``runs_on`` no node matches; the host an attempt ran on in
the board, ``status --json`` and the report. No cluster needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import PlanError
from orchestrator.plan.load import load_plan_text
from orchestrator.plan.models import Plan
from orchestrator.run.ray_cluster import check_placement, eligible, nodes_from
from orchestrator.state.store import Store


def _plan(**extra: object) -> Plan:
    teams = extra.pop("teams", [{"id": "a", "task": "t"}])
    return Plan.model_validate({"version": 1, "name": "p", "teams": teams, **extra})


def _ray_nodes() -> list[dict[str, object]]:
    """Entries shaped as ``ray.nodes()`` returns them."""

    def entry(nid: str, labels: dict[str, str], slots: float, alive: bool = True) -> dict:
        return {
            "NodeID": nid * 8,
            "Alive": alive,
            "NodeManagerAddress": "10.0.0.1",
            "Labels": {**labels, "ray.io/node-id": nid * 8},
            "Resources": {"agent_slots": slots, "CPU": 4.0} if slots else {"CPU": 1.0},
        }

    return [
        entry("h", {}, 0),
        entry("a", {"machine": "mac-pro"}, 4),
        entry("b", {"machine": "lenovo", "gpu": "yes"}, 2),
        entry("c", {"machine": "backend"}, 2, alive=False),
    ]


def test_runs_on_takes_a_value_or_a_list_and_defaults_apply() -> None:
    """``runs_on: {machine: mac-pro}`` and ``{machine: [a, b]}`` both load; a team without
    its own takes ``defaults.runs_on``; without either a team may run anywhere."""
    plan = _plan(
        defaults={"runs_on": {"machine": "mac-pro"}},
        teams=[
            {"id": "a", "task": "t", "runs_on": {"machine": ["lenovo", "backend"]}},
            {"id": "b", "task": "t"},
        ],
    )
    assert plan.runs_on(plan.team("a")) == {"machine": ("lenovo", "backend")}
    assert plan.runs_on(plan.team("b")) == {"machine": ("mac-pro",)}
    assert _plan().runs_on(_plan().team("a")) == {}


def test_bad_runs_on_remote_and_executor_are_plan_errors_with_their_line(tmp_path: Path) -> None:
    """A label value with a space, an empty list, an unknown executor: each is reported
    with its file, line and field, exit 2, before anything runs."""
    text = (
        "version: 1\nname: p\nexecutor: docker\n"
        "teams:\n"
        "  - id: a\n    task: t\n    runs_on: {machine: 'mac pro'}\n"
        "  - id: b\n    task: t\n    runs_on: {machine: []}\n"
    )
    with pytest.raises(PlanError) as err:
        load_plan_text(text, path=tmp_path / "plan.yaml", check_repo=False)
    lines = [str(p) for p in err.value.problems]
    assert any("executor" in ln and ":3:" in ln for ln in lines), lines
    assert any("teams[0].runs_on" in ln and "'mac pro'" in ln and ":7:" in ln for ln in lines)
    assert any("teams[1].runs_on" in ln and "at least one value" in ln for ln in lines), lines
    ok = load_plan_text(
        "version: 1\nname: p\nexecutor: ray\nremote: git@example.com:x.git\n"
        "teams:\n  - id: a\n    task: t\n",
        path=tmp_path / "plan.yaml",
        check_repo=False,
    )
    assert ok.plan.executor == "ray" and ok.plan.remote == "git@example.com:x.git"


def test_placement_refuses_an_unmatched_runs_on_naming_the_labels_there() -> None:
    """A team pinned to a machine no live agent node has is refused (exit 2) with the
    labels that do exist; a dead node's or a slot-less node's labels do not count."""
    nodes = nodes_from(_ray_nodes())
    assert [n.name for n in eligible(nodes, {"machine": ("mac-pro", "lenovo")})] == [
        "lenovo",
        "mac-pro",
    ]
    assert eligible(nodes, {"machine": ("backend",)}) == []  # dead
    plan = _plan(
        teams=[
            {"id": "a", "task": "t", "runs_on": {"machine": "mac-pro"}},
            {"id": "b", "task": "t", "runs_on": {"machine": "backend"}},
            {"id": "c", "task": "t", "runs_on": {"gpu": "yes", "machine": "mac-pro"}},
        ]
    )
    with pytest.raises(PlanError) as err:
        check_placement(plan, nodes, "plan.yaml")
    assert err.value.exit_code == 2
    lines = [str(p) for p in err.value.problems]
    assert lines == [
        "plan.yaml: teams[1].runs_on: team b: no node of the cluster has machine=backend "
        "(labels there: gpu=yes, machine=lenovo, machine=mac-pro)",
        "plan.yaml: teams[2].runs_on: team c: no node of the cluster has gpu=yes, "
        "machine=mac-pro (labels there: gpu=yes, machine=lenovo, machine=mac-pro)",
    ]


def test_a_cluster_without_agent_slots_is_refused_saying_how_to_offer_them() -> None:
    """Nodes that offer no ``agent_slots`` take no agent: the run is refused up front."""
    nodes = nodes_from([e for e in _ray_nodes() if e["NodeID"] == "h" * 8])
    with pytest.raises(PlanError, match="offers agent_slots"):
        check_placement(_plan(), nodes, "plan.yaml")


def test_importing_the_cli_and_the_plan_does_not_import_ray() -> None:
    """``orchestrate --help`` and local runs stay as fast: Ray is imported only when asked."""
    code = (
        "import sys, orchestrator.cli, orchestrator.plan.models, orchestrator.run.engine;"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


PLAN_TEXT = """\
version: 1
name: shop
agents:
  fake: {kind: command, command: [echo, hi]}
defaults: {agent: fake}
teams:
  - {id: db, task: the database, runs_on: {machine: lenovo}}
  - {id: web, task: the site}
"""


@pytest.mark.anyio
async def test_board_status_and_report_say_which_host_ran_an_attempt(store: Store) -> None:
    """A team whose attempt ran on a host of the ray executor: the board's line under it
    starts with ``on lenovo``, ``status --json`` has ``host``, and the report's attempt row
    says ``<agent> on lenovo``; a team without a host shows none."""
    import io

    from rich.console import Console

    from orchestrator.views.board import build_snapshot, render_board, snapshot_json
    from orchestrator.views.report import build_report, render_markdown

    meta = {"plan_text": PLAN_TEXT, "plan_path": "/nowhere/plan.yaml", "plan_name": "shop"}
    await store.create_run("shop-1", meta=meta, team_ids=["db", "web"])
    async with store.lease("shop-1") as lease:
        await store.team_transition(
            "shop-1", "db", "running", epoch=lease.epoch, attempt=1,
            fields={"agent_id": "a1b2c3d", "started": "1.0"},
        )  # fmt: skip
        await store.update_attempt(
            "shop-1", "db", 1, {"host": "lenovo", "pid": "42"}, epoch=lease.epoch
        )
        await store.append_log("shop-1", "db", 1, ["writing the schema"])
        snap = await build_snapshot(store, "shop-1")
    console = Console(record=True, width=100, color_system=None, file=io.StringIO())
    console.print(render_board(snap))
    lines = console.export_text().splitlines()
    assert any("└ on lenovo: writing the schema" in line for line in lines), lines
    hosts = {t["id"]: t["host"] for t in snapshot_json(snap)["teams"]}
    assert hosts == {"db": "lenovo", "web": None}
    report = await build_report(store, "shop-1")
    (db,) = [t for t in report["teams"] if t["id"] == "db"]
    assert db["host"] == "lenovo" and db["attempts"][0]["host"] == "lenovo"
    assert "| a1b2c3d on lenovo |" in render_markdown(report)
