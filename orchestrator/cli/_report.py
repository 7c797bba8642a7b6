"""Commands: the run report."""

from __future__ import annotations

from orchestrator.cli import app  # noqa: F401
