"""End-to-end: the real Claude Code, Codex, OpenCode and Gemini CLI run plans against a script.

The script is our own LLM endpoint on loopback (tests/support/llm_server.py).

For each CLI one plan of three teams runs with ``orchestrate run``: ``api``
meets an injected API error (429) on its first attempt, ``ui`` does nothing
on its first attempt (a missing deliverable), ``docs`` depends on both. All
three must succeed, the two failed attempts retried by orchestrate with the
retry *resuming* the CLI's own session (the endpoint sees the earlier
conversation in the retry's request), and ``status --json`` / ``logs`` must
show tokens and session ids. (Gemini CLI forgets a session whose first
request failed, so its rate-limited team retries in a fresh session: see
``test_gemini_retry_after_a_failed_first_request``.)

The binaries come from ``.ci/agent-clis.sh``. Without them the tier is
skipped, except under ``CI=true``, where a missing binary fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.clis import KINDS, find, prepare
from tests.support.llm_server import LLMServer, Turn

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


def require(kind: str) -> None:
    if find(kind) is not None:
        return
    message = f"{kind}: binary not installed (run .ci/agent-clis.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " — CI=true, so this is a failure, not a skip")
    pytest.skip(message)


def orchestrate(repo: Path, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")},
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A git repository with one commit; its embedded state server stopped afterwards."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "e2e@example.com")
    git(repo, "config", "user.name", "e2e")
    (repo / "README.md").write_text("e2e\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "init")
    yield repo
    # `orchestrate run` leaves its valkey-server up for status/logs: stop it.
    if (repo / ".orchestrate").exists():
        orchestrate(repo, "server", "stop", timeout=30)


def marker(kind: str, team: str) -> str:
    return f"ZQ{kind.replace('-', '')}{team}77"


@pytest.mark.parametrize("kind", KINDS)
def test_plan_of_three_teams_runs_with_retries_that_resume(
    kind: str, llm: LLMServer, repo: Path, tmp_path: Path
) -> None:
    """A plan pointed at a real agent CLI gets every team done, errors retried in-session."""
    require(kind)
    cli = prepare(kind, llm.url, tmp_path / "home")
    # OpenCode retries a 429 five times itself before it gives up: outlast that.
    fault_times = 6 if kind == "opencode" else 1
    m = {team: marker(kind, team) for team in ("api", "ui", "docs")}
    # Downstream first: a prompt may quote upstream teams, the first marker found wins.
    llm.script(m["docs"], Turn(writes={"docs/guide.txt": "guide\n"}, text="Docs written."))
    llm.script(
        m["api"],
        Turn.fail(429, times=fault_times),
        Turn(writes={"src/api.txt": "api\n"}, text="API written."),
    )
    llm.script(m["ui"], Turn.nothing(), Turn(writes={"src/ui.txt": "ui\n"}, text="UI written."))
    agents = {"cli": cli.agent_entry()}
    api: dict[str, object] = {
        "id": "api",
        "task": f"{m['api']}: write src/api.txt",
        "deliverables": ["src/api.txt"],
    }
    # Gemini CLI 0.61 takes the prompt back out of its session when the first request
    # fails (`--resume` of it is refused): the adapter forgets such a session, so the
    # rate-limited team's retry starts afresh (test_gemini_retry_after_a_failed_first_request).
    fresh_api = kind == "gemini"
    plan = {
        "version": 1,
        "name": f"e2e-{kind}",
        "max_parallel": 3,
        "defaults": {"agent": "cli", "timeout": "150s", "stall_timeout": "120s", "retries": 2},
        "agents": agents,
        "teams": [
            api,
            {"id": "ui", "task": f"{m['ui']}: write src/ui.txt", "deliverables": ["src/ui.txt"]},
            {
                "id": "docs",
                "task": f"{m['docs']}: write docs/guide.txt",
                "deliverables": ["docs/guide.txt"],
                "depends_on": ["api", "ui"],
            },
        ],
    }
    (repo / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))

    run = orchestrate(repo, "run", "plan.yaml", "--backoff", "0.1")
    assert run.returncode == 0, f"run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    status = orchestrate(repo, "status", "--json")
    assert status.returncode == 0, status.stderr
    board = json.loads(status.stdout)
    teams = {t["id"]: t for t in board["teams"]}
    assert {t["status"] for t in teams.values()} == {"succeeded"}
    assert teams["api"]["attempt"] >= 2 and teams["ui"]["attempt"] >= 2
    assert teams["docs"]["attempt"] == 1
    for team in teams.values():
        assert team["input_tokens"] > 0 and team["output_tokens"] > 0
    assert board["input_tokens"] > 0

    logs = orchestrate(repo, "logs")
    assert logs.returncode == 0, logs.stderr
    assert "session " in logs.stdout, logs.stdout[-2000:]

    # The retries resumed the session: the retry's request carries the first conversation.
    resuming = (("ui", "did nothing"),) if fresh_api else (("api", m["api"]), ("ui", "did nothing"))
    for team, earlier in resuming:
        answered = [r for r in llm.requests_for(m[team]) if r.status == 200]
        resumed = [r for r in answered if _resumed(r.api, r.body, m[team])]
        assert resumed, f"{team}: no retry resumed the session ({len(answered)} requests)"
        assert earlier in json.dumps(resumed[0].body)

    # The deliverables are on the team branches.
    branches = git(repo, "branch", "--list", "orchestrate/*")
    assert branches.count("orchestrate/") >= 3


def test_gemini_retry_after_a_failed_first_request(
    llm: LLMServer, repo: Path, tmp_path: Path
) -> None:
    """A Gemini team whose first request is rate limited succeeds on its retry.

    Gemini CLI 0.61 drops the prompt of a session whose first request failed and
    then refuses `--resume` of it (exit 42, "No previous sessions found"): the
    adapter must not offer such a session, so the retry starts a fresh one.
    """
    require("gemini")
    cli = prepare("gemini", llm.url, tmp_path / "home")
    mark = marker("gemini", "first429")
    llm.script(mark, Turn.fail(429), Turn(writes={"out.txt": "out\n"}, text="Written."))
    plan = {
        "version": 1,
        "name": "e2e-gemini-first-429",
        "defaults": {"agent": "cli", "timeout": "120s", "stall_timeout": "100s", "retries": 1},
        "agents": {"cli": cli.agent_entry()},
        "teams": [{"id": "one", "task": f"{mark}: write out.txt", "deliverables": ["out.txt"]}],
    }
    (repo / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    run = orchestrate(repo, "run", "plan.yaml", "--backoff", "0.1")
    assert run.returncode == 0, f"run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"


_CONTEXT = (
    "<system-reminder>",
    "<environment_context>",
    "# AGENTS.md",
    "<permissions",
    "<user_instructions>",
    "<session_context>",
)


def _user_pieces(api: str, body: dict[str, object]) -> list[str]:
    """The user's own texts in a request, in order (tool results and CLI context left out)."""
    if api == "gemini":  # contents: [{role, parts: [{text} | {functionResponse}]}]
        items: object = [
            {"role": c.get("role", "user"), "content": c.get("parts")}
            for c in body.get("contents") or ()  # type: ignore[attr-defined]
            if isinstance(c, dict)
        ]
    else:
        items = body.get("input") if api == "responses" else body.get("messages")
    pieces: list[str] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        content = item.get("content")
        blocks = content if isinstance(content, list) else [content]
        for block in blocks:
            text = block.get("text") if isinstance(block, dict) else block
            if isinstance(text, str) and text.strip() and not text.lstrip().startswith(_CONTEXT):
                pieces.append(text)
    return pieces


def _resumed(api: str, body: dict[str, object], first_prompt_marker: str) -> bool:
    """The request holds the first prompt and, as a later separate text, the feedback."""
    pieces = _user_pieces(api, body)
    firsts = [i for i, p in enumerate(pieces) if first_prompt_marker in p]
    return bool(firsts) and any(first_prompt_marker not in p for p in pieces[firsts[0] + 1 :])
