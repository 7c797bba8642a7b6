"""Import a Markdown coordination plan as plan.yaml.

``parse`` reads the Markdown structure (markdown-it-py), ``interpret`` finds the
units of work (with ``titles``, ``refs``, ``deliverables`` and ``words``, the
vocabulary in several languages), ``tables`` reads teams and matrices from
tables, ``deps`` reads references, sentences and Mermaid graphs, ``build`` turns
it all into plan data with a note on every guess and a report line for every
dependency it could not read, ``emit`` writes commented YAML, ``convert`` ties
them together, validates and lists the commands a run starts.
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
