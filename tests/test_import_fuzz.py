"""Property: any Markdown is either imported as a valid plan or refused with one clear
error; the reader never crashes, never hangs and never writes an invalid plan.

Hypothesis builds documents from fragments of every style the reader knows
(team headings, numbered and checklist items, tables, Mermaid, sentences, front
matter, fields in several languages), shuffled and cut at random.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import PlanError, UsageError
from orchestrator.mdimport import import_markdown, summary_lines

FRAGMENTS = [
    "# Title\n",
    "---\nname: x\ndescription: y\n---\n",
    "---\na: &a [*a]\n---\n",
    "## Team 1: Schema\n**Task:** t\n**Depends on:** Team 2\n",
    "### Team 2: API (needs: Team 1)\n**Files:** `api/x.py`\n**Blocks:** Teams 1-99999999999\n",
    "#### LGDA-008: Config\n**Deliverables:**\n- `a/[id]/page.tsx`\n- CI/CD green\n",
    "## #3 Reindex after: #2\n- `w/r.go`\n",
    "### 0.1 Terraform state\nCreates `infra/x.tf`. Team 3 can only start once Team 1 is done.\n",
    "## Backlog\n- [ ] **api** (needs: auth) — files: gw/*.go\n- [ ] **auth**: tokens\n",
    "## Group 1: A\n1. one `a.py`\n2. two, needs Group 2\n",
    "## Group 2: B\n1. three\n2. four after Task 1.1\n",
    "## Phase 1 (sequential)\nTasks:\n- Task 1.1: x - 1 hr\n- Task 1.2: y\n",
    "| ID | Component | Files | Needs |\n|---|---|---|---|\n| A1 | P | `p.proto` | - |\n"
    "| A2 | S | `s.go` | A1, A9 |\n",
    "| needs → | Team 1 | Team 2 |\n|---|---|---|\n| Team 2 | x | |\n| Team 1 | | x |\n",
    "```mermaid\ngraph TD\n  A[Team 1] --> B[Team 2] <-- C\n  D --- A\n```\n",
    "```mermaid\nflowchart LR\n  A -->|x| B & C\n  A -- t --> A\n```\n",
    "## Risks\n- Team 2 hängt an Team 1.\n",
    "Erst wenn Team 1 fertig ist, kann Team 2 beginnen.\n",
    "El equipo 2 solo puede empezar cuando el equipo 1 termine.\n",
    "**Abhängig von:** keine\n**Dateien:** `x/y.py`\n**Agent:** codex\n**Owner:** @bob\n",
    "<details>\n<summary>s</summary>\n\n**Checks:** `touch x`\n\n</details>\n",
    "## Integration\n```bash\nmake test\n```\n",
    "- [ ] \n1. \n| |\n|-|\n",
    "### Команда данных\nЗависит от: Team 1\n",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8),
    cut=st.integers(min_value=0, max_value=4000),
    noise=st.text(max_size=40),
)
def test_any_markdown_imports_or_is_refused_cleanly(parts: list[str], cut: int, noise: str) -> None:
    """Whatever the mix, the import gives a plan that validated (its summary renders) or
    one UsageError / PlanError; no other exception ever escapes."""
    doc = "\n".join(parts)
    doc = doc[:cut] + noise + doc[cut:]
    try:
        result = import_markdown(doc)
    except (UsageError, PlanError):
        return
    assert result.plan.teams
    assert summary_lines(result)
