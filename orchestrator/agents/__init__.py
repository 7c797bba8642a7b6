"""Agent adapters: one small module per kind, found by name.

The adapter of kind ``claude-code`` lives in ``orchestrator/agents/claude_code.py``
and defines ``Adapter`` (a subclass of :class:`~orchestrator.agents.base.AgentAdapter`
whose ``kind`` is ``"claude-code"``). Adding a kind is adding its module; only
kinds listed in :data:`orchestrator.plan.models.BUILTIN_AGENT_KINDS` are looked up.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from orchestrator.agents.base import AgentAdapter
from orchestrator.errors import AgentError
from orchestrator.plan.models import BUILTIN_AGENT_KINDS, AgentConfig

__all__ = ["adapter_for", "executable", "missing_executable"]


@cache
def adapter_for(kind: str) -> AgentAdapter:
    """The adapter of ``kind``. Raises :class:`AgentError` for a kind we cannot start."""
    if kind not in BUILTIN_AGENT_KINDS:
        raise AgentError(f"unknown agent kind {kind!r}")
    module_name = f"{__name__}.{kind.replace('-', '_')}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AgentError(f"agent kind {kind!r} is not supported by this version") from exc
    adapter_class = getattr(module, "Adapter", None)
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, AgentAdapter)):
        raise AgentError(f"agent kind {kind!r}: {module_name}.Adapter is not an AgentAdapter")
    return adapter_class()


def _kind(config: AgentConfig) -> str:
    if config.kind is None:
        raise AgentError("agent configuration without a kind")
    return config.kind


def executable(config: AgentConfig) -> str:
    """The program an agent configuration runs (its ``command:`` or the kind's default)."""
    return adapter_for(_kind(config)).executable(config)


def missing_executable(config: AgentConfig, cwd: Path | None = None) -> str | None:
    """A one-line problem when that program cannot be found (for preflight); else None."""
    return adapter_for(_kind(config)).missing_executable(config, cwd)
