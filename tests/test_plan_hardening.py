"""Hostile and careless plans are refused with one located line, before anything runs.

Recursive aliases, NUL bytes and '=' that no environment or argv can carry,
non-finite numbers, team ids that collide with orchestrate's own branches, a
user branch that blocks every team branch, and plan "files" that never end.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, Problem
from orchestrator.gitops import integration_branch, shared_branch
from orchestrator.plan.load import (
    MAX_NODES,
    MAX_PLAN_BYTES,
    RESERVED_TEAM_IDS,
    load_plan,
    load_plan_text,
)

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

GOOD = """\
version: 1
name: demo
teams:
  - id: db
    task: set up the database
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "--initial-branch=main")
    git(root, "commit", "-q", "--allow-empty", "-m", "init")
    return root


def problems(repo: Path, text: str) -> list[Problem]:
    with pytest.raises(PlanError) as info:
        load_plan_text(textwrap.dedent(text), path=repo / "plan.yaml")
    return list(info.value.problems)


def validate(plan: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(plan)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- recursive aliases ----------------------------------------------------------


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", GOOD + "x: &x [1, [2, *x]]\n"])
def test_recursive_alias_is_one_problem(repo: Path, text: str) -> None:
    """An alias inside the node it names is refused at once with its line (it used to grow
    memory without bound)."""
    found = problems(repo, text)
    assert len(found) == 1
    assert "recursive alias" in found[0].message
    assert found[0].line == text.count("\n")


def test_recursive_alias_through_validate_exits_2(repo: Path) -> None:
    """Through the real command: one line, exit 2, no traceback, in well under the timeout."""
    plan = repo / "plan.yaml"
    plan.write_text("a: &a [*a]\n")
    proc = validate(plan, repo)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{plan}:1:4: a YAML alias refers to a node that contains it (a recursive alias)",
        "orchestrate: the plan has 1 problem(s)",
    ]


def test_alias_bomb_is_still_refused(repo: Path) -> None:
    """A 'billion laughs' plan (aliases of aliases) is refused from its few nodes, without
    expanding it."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = problems(repo, "\n".join(lines) + "\n")
    assert len(found) == 1
    assert found[0].message == f"the plan expands to more than {MAX_NODES} YAML nodes (aliases?)"


@pytest.mark.slow
def test_a_large_plain_plan_is_not_taken_for_an_alias_bomb(repo: Path) -> None:
    """20,000 teams without a single alias (under the size limit) load: the node limit
    bounds what aliases add, not the size of a plain plan."""
    lines = ["version: 1", "name: big", "teams:"]
    lines += [f"  - {{id: t{i}, task: p, depends_on: [t{i - 1}]}}" for i in range(1, 20_000)]
    text = "\n".join([*lines, "  - {id: t0, task: p}"]) + "\n"
    assert len(text) < MAX_PLAN_BYTES
    assert len(load_plan_text(text, path=repo / "plan.yaml").plan.teams) == 20_000


# --- what reaches argv, the environment and exec --------------------------------


def test_nul_escape_anywhere_is_a_located_problem(repo: Path) -> None:
    """A NUL written as a YAML escape, in any string (key or value), is one problem per place,
    with its line: no command, environment variable, git argument or path can carry one."""
    text = """\
    version: 1
    name: demo
    base: "ma\\0in"
    env: {"K\\0": v, OK: "x\\0y"}
    teams:
      - id: db
        task: t
        role: "r\\0"
        checks: ["true\\0", ["echo", "a\\0"]]
        model: "m\\0"
    integration:
      test: "pytest\\0"
    """
    found = problems(repo, text)
    assert [(p.line, p.message) for p in found] == [
        (3, "a NUL byte ('\\0') is not allowed in a plan"),
        (4, "a NUL byte ('\\0') is not allowed in a plan"),
        (4, "a NUL byte ('\\0') is not allowed in a plan"),
        (8, "a NUL byte ('\\0') is not allowed in a plan"),
        (9, "a NUL byte ('\\0') is not allowed in a plan"),
        (9, "a NUL byte ('\\0') is not allowed in a plan"),
        (10, "a NUL byte ('\\0') is not allowed in a plan"),
        (12, "a NUL byte ('\\0') is not allowed in a plan"),
    ]


@pytest.mark.parametrize(
    ("where", "name"),
    [("plan", "A=B"), ("plan", ""), ("team", "C="), ("agent", "=x")],
)
def test_env_names_must_fit_an_environment(repo: Path, where: str, name: str) -> None:
    """An env name with '=' (or empty) would be cut or refused by exec; every env: mapping
    (plan, team, agent) refuses it with its line."""
    entry = f'{{"{name}": "v"}}'
    text = {
        "plan": f"version: 1\nname: d\nenv: {entry}\nteams: [{{id: a, task: t}}]\n",
        "team": f"version: 1\nname: d\nteams:\n  - {{id: a, task: t, env: {entry}}}\n",
        "agent": (
            f"version: 1\nname: d\nagents:\n  c: {{kind: command, command: x, env: {entry}}}\n"
            "teams: [{id: a, task: t, agent: c}]\n"
        ),
    }[where]
    found = problems(repo, text)
    assert len(found) == 1, [str(p) for p in found]
    assert found[0].message == (
        f"{name!r} is not an environment variable name (it must be non-empty, without '=')"
    )
    assert found[0].line == (3 if where == "plan" else 4)


def test_env_values_may_hold_equals_signs(repo: Path) -> None:
    """'=' is fine in a value (and in a command): only names are constrained."""
    text = GOOD.replace("version: 1", "version: 1\nenv: {OPTS: 'a=b c=d'}")
    loaded = load_plan_text(text + "    checks: ['test a=a']\n", path=repo / "plan.yaml")
    assert loaded.plan.env == {"OPTS": "a=b c=d"}


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("    checks: [[]]\n", "teams[0].checks[0]"),
        ("    checks: [['', x]]\n", "teams[0].checks[0]"),
        ("integration: {test: [[]]}\n", "integration.test[0]"),
        ("agents: {c: {kind: codex, command: []}}\n", "agents.c.command"),
    ],
)
def test_argv_needs_a_program(repo: Path, snippet: str, where: str) -> None:
    """An argv list without a program (empty, or an empty first word) cannot be exec'd: a plan
    error at its line, not a crash of the run."""
    text = GOOD + snippet
    found = problems(repo, text)
    assert [(p.where, p.message) for p in found] == [
        (where, "an argv list needs a program as its first item")
    ]


# --- non-finite numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("    timeout: .nan\n", "teams[0].timeout"),
        ("    stall_timeout: .nan\n", "teams[0].stall_timeout"),
        ("    estimate: .nan\n", "teams[0].estimate"),
        ("    estimate: -.inf\n", "teams[0].estimate"),
        ("defaults: {timeout: .NaN}\n", "defaults.timeout"),
        ("defaults: {check_timeout: .nan}\n", "defaults.check_timeout"),
        ("integration: {timeout: .nan}\n", "integration.timeout"),
        ("budget: {usd: .inf}\n", "budget.usd"),
        ("budget: {usd: .nan}\n", "budget.usd"),
        ("    budget: {usd: .inf}\n", "teams[0].budget.usd"),
    ],
)
def test_non_finite_numbers_are_refused(repo: Path, snippet: str, where: str) -> None:
    """.nan passes every comparison (it used to disable a time limit, and crash `plan` as an
    estimate); .inf is no budget. Every float field refuses both, located."""
    found = problems(repo, GOOD + snippet)
    assert [p.where for p in found] == [where]
    assert "finite" in found[0].message


# --- reserved team ids and the user's branches -----------------------------------


@pytest.mark.parametrize("tid", ["integration", "Integration", "run", "RUN"])
def test_reserved_team_ids(repo: Path, tid: str) -> None:
    """A team named like one of orchestrate's own branches (the integration branch, the shared
    branch) is refused: its branch would be the integration branch."""
    found = problems(repo, GOOD + f"  - id: {tid}\n    task: t\n")
    assert [(p.where, p.line) for p in found] == [("teams[1].id", 6)]
    assert f"team id {tid!r} is reserved" in found[0].message


def test_reserved_ids_cover_every_pseudo_branch() -> None:
    """Each branch orchestrate makes besides the team branches ends in a reserved id."""
    for branch in (integration_branch("r"), shared_branch("r")):
        assert branch.rsplit("/", 1)[1] in RESERVED_TEAM_IDS


def test_team_ids_differing_only_in_case(repo: Path) -> None:
    """'db' and 'DB' are one branch and one folder on a case-insensitive file system."""
    found = problems(repo, GOOD + "  - id: DB\n    task: t\n")
    assert [p.where for p in found] == ["teams[1].id"]
    assert "only in case" in found[0].message


@pytest.mark.parametrize("packed", [False, True])
def test_a_branch_named_orchestrate_blocks_every_run(repo: Path, packed: bool) -> None:
    """refs/heads/orchestrate makes git refuse every orchestrate/<run>/<team> branch: the plan
    is refused with a line that names the branch (loose or packed)."""
    git(repo, "branch", "orchestrate")
    if packed:
        git(repo, "pack-refs", "--all")
    found = problems(repo, GOOD)
    assert len(found) == 1
    assert found[0].where == "repo"
    assert "'refs/heads/orchestrate'" in found[0].message
    assert "git branch -m orchestrate" in found[0].message


def test_branches_below_orchestrate_do_not_block(repo: Path) -> None:
    """Branches of earlier runs (orchestrate/<run>/<team>) are no obstacle."""
    git(repo, "branch", "orchestrate/old-run/db")
    load_plan_text(GOOD, path=repo / "plan.yaml")


# --- files that are not files ----------------------------------------------------


def test_fifo_is_refused_without_blocking(repo: Path) -> None:
    """A FIFO with no writer would block the reader forever: refused at once."""
    fifo = repo / "plan.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PlanError) as info:
        load_plan(fifo)
    assert str(info.value) == f"{fifo}: is a FIFO, not a regular file: a plan is read from a file"


def test_fifo_with_endless_writer_is_refused(repo: Path) -> None:
    """Even with a writer that never stops, a FIFO is refused unread."""
    fifo = repo / "plan.yaml"
    os.mkfifo(fifo)
    stop = threading.Event()

    def write() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY)
        except OSError:
            return
        try:
            while not stop.is_set():
                os.write(fd, b"a" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with pytest.raises(PlanError, match="is a FIFO"):
            load_plan(fifo)
    finally:
        stop.set()
        try:  # release a writer still waiting for a reader
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        writer.join(5)


def test_dev_zero_through_validate(tmp_path: Path) -> None:
    """`validate /dev/zero` used to read until memory ran out: one line, exit 2.

    (The child's address space is capped, so a regression fails fast instead of starving the
    machine.)"""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", "/dev/zero"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=cap_memory,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "/dev/zero: is a device, not a regular file: a plan is read from a file"
    )


def test_markdown_fifo_is_refused_by_run(repo: Path) -> None:
    """`run PLAN.md` on a FIFO is refused at once too (the Markdown importer reads the same
    way)."""
    fifo = repo / "PLAN.md"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(fifo)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "is a FIFO, not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_markdown_too_large_is_refused_by_import(repo: Path) -> None:
    """`import` of an endless or huge Markdown file reads at most the limit."""
    big = repo / "PLAN.md"
    big.write_bytes(b"x" * (MAX_PLAN_BYTES + 1))
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", str(big)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"larger than {MAX_PLAN_BYTES} bytes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_refuses_a_repository_with_a_branch_named_orchestrate(repo: Path) -> None:
    """`run` refuses too, before anything is recorded: one line naming the branch, exit 2,
    no state folder (every team used to fail to create its branch)."""
    git(repo, "branch", "orchestrate")
    plan = repo / "plan.yaml"
    plan.write_text(GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{plan}:1:1: repo: the repository has a ref 'refs/heads/orchestrate'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo / ".orchestrate").exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_import_names_what_a_markdown_plan_that_is_no_file_is(repo: Path, kind: str) -> None:
    """`import` on a FIFO or a link to /dev/zero says what it is, in one line, exit 2, and
    writes nothing (it said "no such file" of a file that is there)."""
    md = repo / "PLAN.md"
    if kind == "fifo":
        os.mkfifo(md)
    else:
        md.symlink_to("/dev/zero")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", str(md)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"{md}: is a {'FIFO' if kind == 'fifo' else 'device'}, not a regular file: "
        "a plan is read from a file"
    )
    assert "Traceback" not in proc.stderr and "no such file" not in proc.stderr
    assert not (repo / "PLAN.yaml").exists()


# --- prompt templates: what may reach the model -----------------------------------


def _with_template(name: str) -> str:
    return GOOD + f"prompt_template: {name}\n"


def test_a_template_outside_the_plan_and_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    """A shared plan naming `../../secret` or an absolute path as its prompt template would
    send that file to the agent's model in every prompt: refused at validate, with where."""
    outside = tmp_path / "id_rsa"
    outside.write_text("PRIVATE KEY\n")
    for name in [str(outside), "../id_rsa"]:
        found = problems(repo, _with_template(name))
        assert any(
            p.where == "prompt_template"
            and p.line is not None
            and "outside the plan's folder" in p.message
            for p in found
        ), found


def test_a_template_that_is_no_regular_file_or_too_large_is_refused(repo: Path) -> None:
    """A FIFO as the template would block every prompt; a huge one is read whole into
    each: both refused up front with one line each."""
    os.mkfifo(repo / "fifo.j2")
    (repo / "huge.j2").write_bytes(b"x" * (1024 * 1024))
    assert any("not a regular file" in p.message for p in problems(repo, _with_template("fifo.j2")))
    assert any("larger than" in p.message for p in problems(repo, _with_template("huge.j2")))


def test_a_template_inside_the_repository_is_used(repo: Path) -> None:
    """The ordinary case still validates: a template beside the plan."""
    (repo / "mine.md.j2").write_text("{{ task }}\n")
    loaded = load_plan_text(_with_template("mine.md.j2"), path=repo / "plan.yaml")
    assert loaded.plan.prompt_template == "mine.md.j2"
