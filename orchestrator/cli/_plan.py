"""Commands: (to be filled)."""

from __future__ import annotations

from orchestrator.cli import app  # noqa: F401
