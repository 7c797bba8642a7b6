"""Recorded agent CLI output (tests/fixtures/agent-output/<kind>/) read through an adapter.

``Recorded("codex")`` gives the kind's adapter, the events and verdict of a
recording, and an ``AgentContext`` for argv tests.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents import adapter_for
from orchestrator.agents.base import AgentContext, AgentEvent, Verdict
from orchestrator.agents.process import Outcome
from orchestrator.plan.models import AgentConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agent-output"


class Recorded:
    """The recordings and adapter of one agent kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.adapter = adapter_for(kind)
        self.folder = FIXTURES / kind

    def events(self, name: str) -> list[AgentEvent]:
        """Every event the adapter reads from recording ``name``.jsonl."""
        lines = (self.folder / f"{name}.jsonl").read_text().splitlines()
        return [event for line in lines for event in self.adapter.parse(line)]

    def verdict(self, name: str, exit_code: int = 0) -> Verdict:
        """The adapter's verdict on recording ``name`` ended with ``exit_code``."""
        outcome = Outcome(
            exit_code=exit_code, signal=None, timed_out=False, stalled=False, duration=1.0
        )
        return self.adapter.judge(outcome, self.events(name))

    def context(self, workdir: Path, **fields: object) -> AgentContext:
        """An attempt context for team ``db`` in ``workdir``; ``fields`` override."""
        values: dict[str, object] = {
            "config": AgentConfig.model_validate({"kind": self.kind}),
            "kind": self.kind,
            "team_id": "db",
            "attempt": 1,
            "agent_id": "a1",
            "workdir": workdir,
            "prompt_file": workdir / "p.md",
            "prompt_text": "Build the db",
        }
        values.update(fields)
        return AgentContext(**values)  # type: ignore[arg-type]
