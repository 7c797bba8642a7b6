"""Commands: resume and cancel a run."""

from __future__ import annotations

from orchestrator.cli import app  # noqa: F401
