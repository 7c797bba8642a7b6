"""Commands: the embedded Redis server (status, stop)."""

from __future__ import annotations

from orchestrator.cli import app  # noqa: F401
