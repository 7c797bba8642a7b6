"""``orchestrate import --agent``: the converting agent runs like every agent, without
orchestrate's own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.mdimport.agentconvert import convert_async
from orchestrator.plan.models import AgentConfig

pytestmark = pytest.mark.anyio

_AGENT = """\
import json, os, pathlib, sys
pathlib.Path(sys.argv[1]).write_text(json.dumps(dict(os.environ)))
answer = pathlib.Path(sys.argv[2]) / "plan.yaml"
answer.write_text("version: 1\\nname: demo\\nteams:\\n  - id: db\\n    task: the db\\n")
"""


async def test_the_importers_agent_sees_no_orchestrate_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent converting a Markdown plan gets the user's environment and its own
    ``env:``, never ORCHESTRATE_* (the Redis URL and its password among them)."""
    monkeypatch.setenv("ORCHESTRATE_REDIS_URL", "redis://:hunter2-pw@example:6379/0")
    monkeypatch.setenv("ORCHESTRATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("USER_THING", "kept")
    script = tmp_path / "agent.py"
    script.write_text(_AGENT)
    seen = tmp_path / "env.json"
    config = AgentConfig(
        kind="command",
        command=f"{sys.executable} {script} {seen} {{workdir}}",
        env={"AGENT_VAR": "a"},
    )
    result = await convert_async(
        "# Plan\n", source="PLAN.md", config=config, output=tmp_path / "plan.yaml"
    )
    assert [t.id for t in result.plan.teams] == ["db"]
    env = json.loads(seen.read_text())
    assert not [k for k in env if k.upper().startswith("ORCHESTRATE_")]
    assert "hunter2-pw" not in seen.read_text()
    assert env["USER_THING"] == "kept" and env["AGENT_VAR"] == "a"


def test_the_import_command_keeps_the_redis_url_from_the_agent(tmp_path: Path) -> None:
    """Through the CLI too: `ORCHESTRATE_REDIS_URL=... orchestrate import --agent command`
    starts an agent that cannot see the URL."""
    script = tmp_path / "agent.py"
    script.write_text(_AGENT)
    seen = tmp_path / "env.json"
    (tmp_path / "PLAN.md").write_text("# Plan\n\n### Team 1: Database\n**Task:** the db\n")
    command = f"{sys.executable} {script} {seen} {{workdir}}"
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": "redis://:hunter2-pw@example:6379/0"}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", "PLAN.md", "-o", "plan.yaml",
         "--agent", "command", "--agent-command", command],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "ORCHESTRATE_REDIS_URL" not in json.loads(seen.read_text())
