"""Import a Markdown coordination plan as plan.yaml.

``parse`` reads the Markdown structure (markdown-it-py), ``interpret`` finds the
units of work, ``build`` turns them into plan data with a note on every guess,
``emit`` writes commented YAML, ``convert`` ties them together and validates.
"""

from __future__ import annotations

from orchestrator.mdimport.convert import (
    ImportResult,
    commands,
    import_markdown,
    load_markdown_plan,
    no_edges_message,
    summary_lines,
    validate_text,
)

__all__ = [
    "ImportResult",
    "commands",
    "import_markdown",
    "load_markdown_plan",
    "no_edges_message",
    "summary_lines",
    "validate_text",
]
