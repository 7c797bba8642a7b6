"""Property: every malformed plan is refused cleanly, and refusing it writes nothing.

Hypothesis mutates a valid plan (deleted keys, wrong types, cycles, escaping
paths, huge values, unknown keys) or generates random bytes, 1000 cases
in-process; a handful go through the real ``orchestrate validate`` process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import PlanError
from orchestrator.plan.load import load_plan_text

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

BASE: dict[str, Any] = {
    "version": 1,
    "name": "fuzz",
    "base": "main",
    "max_parallel": 2,
    "defaults": {"agent": "claude-code", "timeout": "10m", "retries": 1},
    "teams": [
        {"id": "db", "task": "database", "deliverables": ["src/db.py"]},
        {"id": "auth", "task": "auth", "depends_on": ["db"], "deliverables": ["src/auth/*.py"]},
        {"id": "api", "task": "api", "depends_on": ["auth"], "role": "backend-architect"},
        {"id": "tests", "task": "tests", "depends_on": ["api", "db"]},
    ],
    "integration": {"test": "pytest -q", "retries": 1},
}

WRONG_TYPES: list[tuple[tuple[str | int, ...], Any]] = [
    (("version",), "one"),
    (("version",), 2),
    (("name",), ["x"]),
    (("name",), "has space"),
    (("max_parallel",), "many"),
    (("max_parallel",), 0),
    (("isolation",), "both"),
    (("teams",), {}),
    (("teams",), []),
    (("teams",), "db"),
    (("teams", 1, "depends_on"), "db"),
    (("teams", 0, "deliverables"), 5),
    (("teams", 0, "task"), ""),
    (("teams", 2, "retries"), -1),
    (("teams", 3, "estimate"), 0),
    (("defaults", "timeout"), "forever"),
    (("defaults", "retries"), "x"),
    (("defaults", "agent"), "nobody"),
    (("budget",), {"usd": -1}),
    (("integration", "retries"), "x"),
    (("integration", "resolver"), "ghost"),
    (("teams", 2, "role"), "no-such-role"),
    (("base",), "no-such-branch"),
    (("repo",), "no/such/dir"),
]
HUGE: list[tuple[tuple[str | int, ...], Any]] = [
    (("max_parallel",), 10**30),
    (("defaults", "retries"), 10**18),
    (("teams", 0, "estimate"), "99999h"),
    (("teams", 0, "id"), "a" * 1000),
    (("name",), "n" * 100_000),
    (("teams", 1, "timeout"), 1e308),
]
ESCAPES = ["/etc/passwd", "../x.py", "src/../../x", "~/x", "C:\\x", ".git/config", ""]
REQUIRED: list[tuple[str | int, ...]] = [
    ("version",),
    ("name",),
    ("teams",),
    ("teams", 0, "id"),
    ("teams", 1, "task"),
]


def set_at(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def delete_at(data: Any, path: tuple[str | int, ...]) -> None:
    for step in path[:-1]:
        data = data[step]
    del data[path[-1]]


@st.composite
def mutated_plans(draw: st.DrawFn) -> str:
    data = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["delete", "wrong", "huge", "cycle", "escape", "unknown", "deep"]))
    if kind == "delete":
        delete_at(data, draw(st.sampled_from(REQUIRED)))
    elif kind == "wrong":
        path, value = draw(st.sampled_from(WRONG_TYPES))
        set_at(data, path, value)
    elif kind == "huge":
        path, value = draw(st.sampled_from(HUGE))
        set_at(data, path, value)
    elif kind == "cycle":
        i = draw(st.integers(0, 3))
        data["teams"][i]["depends_on"] = [*data["teams"][i].get("depends_on", []), "tests"]
    elif kind == "escape":
        i = draw(st.integers(0, 3))
        data["teams"][i]["deliverables"] = [draw(st.sampled_from(ESCAPES))]
    elif kind == "unknown":
        key = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
        target = draw(
            st.sampled_from([data, data["defaults"], data["teams"][1], data["integration"]])
        )
        if key in target or key in ("id", "task", "version", "name", "teams"):
            key = f"x_{key}"
        target[key] = draw(st.one_of(st.integers(), st.text(max_size=20), st.none()))
    else:
        depth = draw(st.integers(50, 400))
        data["teams"][0]["task"] = yaml.safe_load("[" * depth + "]" * depth)
    text = yaml.safe_dump(data, sort_keys=False, width=10**6)
    # A random cut or byte flip on top, sometimes.
    if draw(st.booleans()) and kind != "huge":
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=8)) + text[cut:]
    return text


random_texts = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
    st.text(max_size=300),
)


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            st_ = p.lstat()
            out.append((str(p.relative_to(root)), st_.st_size, st_.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzrepo")
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True)
    (root / "src").mkdir()
    return root


def git_state(repo: Path) -> tuple[str, str]:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout

    return run("status", "--porcelain", "--ignored"), run("for-each-ref")


def refused(repo: Path, text: str) -> None:
    with pytest.raises(PlanError) as info:
        load_plan_text(text, path=repo / "plan.yaml")
    assert info.value.problems
    for problem in info.value.problems:
        line = str(problem)
        assert "\n" not in line and "Traceback" not in line
        assert line.startswith(str(repo / "plan.yaml"))


def test_malformed_plans_are_refused_and_nothing_is_written(repo: Path) -> None:
    """1000 malformed plans: each a PlanError with one-line problems; the repo is untouched."""
    before = (snapshot(repo), git_state(repo))

    @settings(
        max_examples=1000,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(text=st.one_of(mutated_plans(), random_texts))
    def check(text: str) -> None:
        refused(repo, text)

    check()
    assert (snapshot(repo), git_state(repo)) == before
    assert not (repo / ".orchestrate").exists()


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nname: x\nteams:\n  - id: a\n    task: t\n    depends_on: [a]\n",
        "\x00\x01\x02",
        "teams: [\n",
        "version: 1\nname: x\nmax_parallel: 99999999999999999999999\nteams: []\n",
        yaml.safe_dump({**BASE, "repo": "/nonexistent"}),
    ],
)
def test_cli_refuses_with_exit_2(repo: Path, tmp_path: Path, text: str) -> None:
    """Through the real command: exit 2, one line per problem plus a count, no traceback."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    before = (snapshot(repo), git_state(repo))
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(plan)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("orchestrate: the plan has ")
    assert all(line.startswith(str(plan)) for line in lines[:-1])
    assert lines[-1] == f"orchestrate: the plan has {len(lines) - 1} problem(s)"
    assert (snapshot(repo), git_state(repo)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]
