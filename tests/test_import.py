"""`orchestrate import`: Markdown coordination plans -> plan.yaml.

The expected plans in tests/fixtures/markdown/*.expected.yaml are written by
hand; the variants below are generated from the originals and must convert to
the same teams, dependencies, deliverables, roles, estimates and criteria.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import UsageError
from orchestrator.mdimport import ImportResult, import_markdown, load_markdown_plan, summary_lines
from orchestrator.plan.models import Plan, parse_duration

FIXTURES = Path(__file__).parent / "fixtures" / "markdown"
EXAMPLES = ["payments-teams", "search-matrix", "mobile-phases"]
OTHER_SHAPES = ["billing-streams", "docs-phases", "pipeline-table"]
ORCHESTRATE = Path(sys.executable).parent / "orchestrate"


def semantic_of_plan(plan: Plan) -> dict[str, Any]:
    teams = {
        t.id: {
            "depends_on": sorted(t.depends_on),
            "deliverables": sorted(t.deliverables),
            "role": t.role,
            "estimate": t.estimate,
            "acceptance": sorted(t.acceptance),
        }
        for t in plan.teams
    }
    return {"teams": teams, "test": plan.integration.test}


def semantic_of_expected(name: str) -> dict[str, Any]:
    data = yaml.safe_load((FIXTURES / f"{name}.expected.yaml").read_text())
    teams = {
        t["id"]: {
            "depends_on": sorted(t.get("depends_on", [])),
            "deliverables": sorted(t.get("deliverables", [])),
            "role": t.get("role"),
            "estimate": parse_duration(t["estimate"]) if "estimate" in t else None,
            "acceptance": sorted(t.get("acceptance", [])),
        }
        for t in data["teams"]
    }
    return {"teams": teams, "test": (data.get("integration") or {}).get("test")}


def convert(text: str, name: str = "plan.md") -> ImportResult:
    return import_markdown(text, source=name)


@pytest.mark.parametrize("name", EXAMPLES + OTHER_SHAPES)
def test_plan_converts_to_the_hand_written_expectation(name: str) -> None:
    """Each sample plan yields exactly the teams, dependencies, deliverables, roles,
    estimates, criteria and test command a person reading it would write down."""
    result = load_markdown_plan(FIXTURES / f"{name}.md")
    assert semantic_of_plan(result.plan) == semantic_of_expected(name)


# ------------------------------------------------------------------ variants


def _reverse_runs(text: str, pattern: str) -> str:
    """Reverse every run of consecutive lines matching ``pattern``."""
    out: list[str] = []
    run: list[str] = []
    for line in [*text.split("\n"), None]:
        if line is not None and re.match(pattern, line):
            run.append(line)
            continue
        out.extend(reversed(run))
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


def _reverse_blocks(text: str, start: str) -> str:
    """Reverse the order of blocks that each begin with a line matching ``start``."""
    lines = text.split("\n")
    firsts = [i for i, ln in enumerate(lines) if re.match(start, ln)]
    if not firsts:
        return text
    end = firsts[-1] + 1
    while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
        end += 1
    bounds = [*firsts, end]
    blocks = ["\n".join(lines[a:b]).rstrip("\n") for a, b in itertools.pairwise(bounds)]
    middle = "\n\n".join(reversed(blocks))
    return "\n".join([*lines[: firsts[0]], middle, "", *lines[end:]])


def _strip_emoji(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "So" and ch != "\ufe0f")


def _add_emoji(text: str) -> str:
    text = re.sub(r"^(#{2,4} )", r"\1🚀 ", text, flags=re.MULTILINE)
    text = re.sub(r"^(\s*)\*\*", r"\1✅ **", text, flags=re.MULTILINE)
    return re.sub(r"^(\s*)- ", r"\1- ⏳ ", text, flags=re.MULTILINE)


RENAMES: dict[str, list[tuple[str, str]]] = {
    "payments-teams": [
        (r"### Team (\d)", r"### Squad \1"),
        ("## Integration Phase", "## Final Integration"),
    ],
    "search-matrix": [
        ("## Work Items", "## Tickets"),
        ("## Task Dependency Matrix", "## Who needs whom"),
    ],
    "mobile-phases": [
        ("## Execution Plan", "## Schedule"),
        (r"### Phase (\d)", r"### Stage \1"),
        ("Tasks:", "Steps:"),
        ("Streams:", "Workstreams:"),
    ],
}
REORDER: dict[str, Callable[[str], str]] = {
    "payments-teams": lambda t: _reverse_runs(t, r"- \[ \] `"),
    "search-matrix": lambda t: _reverse_runs(_reverse_blocks(t, r"\d+\. \*\*"), r"SRCH-10"),
    "mobile-phases": lambda t: _reverse_runs(t, r"- (?!\[)"),
}


def _rename(name: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        for old, new in RENAMES[name]:
            text = re.sub(old, new, text)
        return text

    return apply


def _matrix_extra_columns(text: str) -> str:
    """Add a column in the middle and one at the end of the dependency matrix."""
    out = []
    for line in text.split("\n"):
        if line.startswith("Task ") and "|" in line:
            first, rest = line.split("|", 1)
            line = f"{first}| Area |{rest} | Risk"
        elif line.startswith("-----") and "|" in line:
            first, rest = line.split("|", 1)
            line = f"{first}|------|{rest}|------"
        elif line.startswith("SRCH-") and "|" in line:
            first, rest = line.split("|", 1)
            line = f"{first}| core |{rest} | low"
        out.append(line)
    return "\n".join(out)


def _matrix_as_markdown_table(text: str) -> str:
    """The same matrix as a real Markdown table (pipes at both ends) instead of a code block."""
    out = []
    for line in text.split("\n"):
        if line.strip() == "```":
            continue
        if "|" in line and not line.startswith(("**", "#")):
            line = f"| {line} |"
        out.append(line)
    return "\n".join(out)


VARIANTS: list[tuple[str, str, Callable[[str], str]]] = [
    *[(n, "renamed-headings", _rename(n)) for n in EXAMPLES],
    *[(n, "reordered-lists", REORDER[n]) for n in EXAMPLES],
    *[(n, "no-emoji", _strip_emoji) for n in EXAMPLES if n != "search-matrix"],  # has none
    *[(n, "more-emoji", _add_emoji) for n in EXAMPLES],
    *[(n, "crlf", lambda t: t.replace("\n", "\r\n")) for n in EXAMPLES],
    ("search-matrix", "matrix-extra-columns", _matrix_extra_columns),
    ("search-matrix", "matrix-markdown-table", _matrix_as_markdown_table),
]


@pytest.mark.parametrize(
    ("name", "variant"), [(n, v) for n, v, _ in VARIANTS], ids=[f"{n}-{v}" for n, v, _ in VARIANTS]
)
def test_variant_converts_the_same(name: str, variant: str) -> None:
    """Cosmetic edits a user makes to a plan (renamed headings, reordered lists, emoji,
    Windows line ends, extra matrix columns) do not change what the import understands."""
    change = next(f for n, v, f in VARIANTS if (n, v) == (name, variant))
    original = (FIXTURES / f"{name}.md").read_text()
    changed = change(original)
    assert changed != original, "the variant must change the document"
    assert semantic_of_plan(convert(changed).plan) == semantic_of_expected(name)


# ------------------------------------------------------------------ what the user reads


def test_guessed_values_carry_a_comment_in_the_yaml() -> None:
    """Dependencies inferred from a sequential phase, a role read from free text and the
    default agent are marked in plan.yaml, so the user knows what to check."""
    text = load_markdown_plan(FIXTURES / "mobile-phases.md").yaml_text
    lines = text.splitlines()
    agent = next(ln for ln in lines if ln.strip().startswith("agent:"))
    assert "# guess" in agent
    seq = [ln for ln in lines if "depends_on: [fix-cold-start-crash]" in ln]
    assert seq and "# guess" in seq[0] and "sequence" in seq[0]
    role = next(ln for ln in lines if "role: devops-engineer" in ln)
    assert "release-engineer" in role
    assert "android-expert" in text  # an unknown role is kept in the name, not dropped


def test_summary_names_every_team_and_what_was_left_out() -> None:
    """The printed summary lists each team with its upstream teams, and the lines the
    importer could not place (so nothing is lost silently)."""
    result = load_markdown_plan(FIXTURES / "payments-teams.md")
    text = "\n".join(summary_lines(result))
    for team in result.plan.teams:
        assert team.id in text
    assert "after schema-storage, ledger-core" in text
    assert "Build the Docker image" in text
    assert "pytest -q" in text


def test_tricky_text_survives_the_yaml_writer() -> None:
    """Task text with colons, quotes, '#' and several lines reaches plan.yaml unchanged."""
    doc = (
        "# T\n\n### Team 1: Odd\n"
        "**Task:** fix: the 'quoted' \"thing\" # not a comment\n"
        "**Deliverables:**\n- `/a/b.py`\n\n"
        "### Team 2: Multi\n"
        "**Task:**\n- first step: yes\n- second # step\n"
        "**Dependencies:** Team 1\n"
    )
    plan = convert(doc).plan
    assert plan.teams[0].task == "fix: the 'quoted' \"thing\" # not a comment"
    assert plan.teams[0].deliverables == ("a/b.py",)
    assert plan.teams[1].task == "first step: yes\nsecond # step"
    assert plan.teams[1].depends_on == (plan.teams[0].id,)


def test_dependency_phrasings() -> None:
    """ "Teams 1, 3", "Teams 1-2", "Team 2 (Core)", "None" and ticket ids all resolve."""
    doc = "# P\n\n" + "".join(
        f"### Team {n}: T{n}\n**Task:** do {n}\n**Dependencies:** {deps}\n\n"
        for n, deps in [(1, "None"), (2, "Team 1 (T1)"), (3, "Teams 1-2"), (4, "Teams 1, 3")]
    )
    plan = convert(doc).plan
    assert [sorted(t.depends_on) for t in plan.teams] == [[], ["t1"], ["t1", "t2"], ["t1", "t3"]]


def test_a_document_without_teams_is_refused() -> None:
    """Prose with no team, task, stream or work item is refused, not turned into nonsense."""
    with pytest.raises(UsageError, match="no teams found"):
        convert("# Retro notes\n\nWe shipped. Good job everyone.\n\n- coffee was cold\n")


# ------------------------------------------------------------------ the real command


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ORCHESTRATE), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_refuses_a_document_without_teams_with_exit_2(tmp_path: Path) -> None:
    """`orchestrate import notes.md` on a document with no teams prints one clear line
    (no traceback), exits 2 and writes nothing."""
    (tmp_path / "notes.md").write_text("# Notes\n\nNothing to do here.\n")
    proc = _run("import", "notes.md", "-o", "plan.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no teams found" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "plan.yaml").exists()


def test_cli_writes_a_valid_plan_and_never_overwrites_without_force(tmp_path: Path) -> None:
    """`orchestrate import PLAN.md -o plan.yaml` writes a plan that loads cleanly; running it
    again refuses (exit 2) to overwrite plan.yaml unless --force is given."""
    from orchestrator.plan.load import load_plan

    src = tmp_path / "PLAN.md"
    src.write_text((FIXTURES / "payments-teams.md").read_text())
    proc = _run("import", "PLAN.md", "-o", "plan.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "schema-storage" in proc.stdout and "wrote plan.yaml" in proc.stdout
    loaded = load_plan(tmp_path / "plan.yaml", check_repo=False)
    assert loaded.plan.teams[0].id == "schema-storage"

    (tmp_path / "plan.yaml").write_text("mine\n")
    again = _run("import", "PLAN.md", "-o", "plan.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "plan.yaml").read_text() == "mine\n"
    forced = _run("import", "PLAN.md", "-o", "plan.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "plan.yaml").read_text().startswith("# Imported from PLAN.md")


# ------------------------------------------------------------------ --agent

_SCRIPTED_AGENT = """\
import pathlib, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
answer = pathlib.Path(sys.argv[2]) / "plan.yaml"
good = "version: 1\\nname: demo\\nteams:\\n  - id: db\\n    task: set up the database\\n"
bad = good + "  - id: api\\n    task: the API\\n    depends_on: [nope]\\n"
mode = sys.argv[3]
retry = "did not validate" in prompt
if mode == "fix-on-retry" and retry:
    assert "nope" in prompt, "the validation problems must reach the agent"
    answer.write_text(good)
else:
    answer.write_text(bad)
print("wrote", answer)
"""


def _agent_import(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "agent.py"
    script.write_text(_SCRIPTED_AGENT)
    (tmp_path / "PLAN.md").write_text((FIXTURES / "payments-teams.md").read_text())
    command = f"{sys.executable} {script} {{prompt_file}} {{workdir}} {mode}"
    return _run(
        "import", "PLAN.md", "-o", "plan.yaml", "--agent", "command", "--agent-command", command,
        cwd=tmp_path,
    )  # fmt: skip


def test_agent_conversion_gets_validation_errors_back_and_fixes_them(tmp_path: Path) -> None:
    """With --agent, a plan that fails validation goes back to the agent with the problems;
    its corrected second answer is written."""
    proc = _agent_import(tmp_path, "fix-on-retry")
    assert proc.returncode == 0, proc.stderr
    assert "try 2 of 3" in proc.stdout
    assert yaml.safe_load((tmp_path / "plan.yaml").read_text())["teams"] == [
        {"id": "db", "task": "set up the database"}
    ]


def test_agent_conversion_gives_up_after_three_tries(tmp_path: Path) -> None:
    """An agent that never produces a valid plan is stopped after 3 tries: the last
    problems are printed, exit 2, nothing written."""
    proc = _agent_import(tmp_path, "always-bad")
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "plan.yaml").exists()
