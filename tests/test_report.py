"""The run report: its facts match the store, its files are written, its HTML renders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.gitops import team_branch
from orchestrator.plan.load import load_plan
from orchestrator.run.engine import EngineOptions, start_run
from orchestrator.run.integration.phase import integrate
from orchestrator.settings import Settings
from orchestrator.state.store import Store
from orchestrator.views.report import build_report, write_reports
from orchestrator.views.timeline import COLOURS
from tests.support.engine import files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

PLAN = """\
version: 1
name: demo
repo: repo
max_parallel: 2
defaults: {agent: command}
agents: {command: {kind: command, command: ["true"]}}
teams:
  - id: db
    task: The database.
    deliverables: [src/db.txt, "migrations/*.sql"]
    checks: ["test -f src/db.txt"]
  - id: auth
    task: Authentication.
    deliverables: [src/auth.txt]
    checks: ["pytest -q", "ruff check"]
    depends_on: [db]
integration:
  test: "! grep -rq broken src"
"""


async def _store_driven_run(git_repo: GitRepo, store: Store) -> str:
    """A run written straight into the store: db succeeds on attempt 2, auth fails a check;
    then the integration of db (partial) runs for real."""
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(PLAN)
    run_id = "demo-7"
    meta = {"plan_text": PLAN, "plan_path": str(plan_file), "plan_name": "demo",
            "base_ref": "main", "base_commit": git_repo.head("main")}  # fmt: skip
    await store.create_run(run_id, meta=meta, team_ids=["db", "auth"])
    git_repo.make_branch(team_branch(run_id, "db"), {"src/db.txt": "db\n"})
    async with store.lease(run_id) as lease:
        e = lease.epoch
        await store.run_transition(run_id, "running", epoch=e)
        await store.team_transition(run_id, "db", "running", epoch=e, attempt=1,
                                    fields={"agent_id": "aaaaaa1"})  # fmt: skip
        await store.update_attempt(
            run_id, "db", 1, {"exit_code": "1", "reason": "exit code 1"}, epoch=e
        )
        await store.team_transition(run_id, "db", "verifying", epoch=e, attempt=1)
        await store.team_transition(
            run_id, "db", "retrying", epoch=e, attempt=2, reason="exit code 1"
        )
        await store.team_transition(run_id, "db", "running", epoch=e, attempt=2,
                                    fields={"agent_id": "bbbbbb2"})  # fmt: skip
        await store.update_attempt(run_id, "db", 2, {"exit_code": "0"}, epoch=e)
        from orchestrator.state.store import Usage

        await store.add_usage(run_id, "db", Usage(input_tokens=100, output_tokens=20, cost_usd=0.5),
                              epoch=e, attempt=2)  # fmt: skip
        await store.team_transition(run_id, "db", "verifying", epoch=e, attempt=2)
        await store.set_deliverables(run_id, "db", {"src/db.txt": "ab12", "migrations/*.sql": None},
                                     epoch=e)  # fmt: skip
        await store.team_transition(run_id, "db", "succeeded", epoch=e, attempt=2)
        await store.team_transition(run_id, "auth", "running", epoch=e, attempt=1,
                                    fields={"agent_id": "ccccccc"})  # fmt: skip
        await store.update_attempt(run_id, "auth", 1, {"exit_code": "0"}, epoch=e)
        await store.team_transition(run_id, "auth", "verifying", epoch=e, attempt=1)
        reason = "check `pytest -q` failed (exit 1)"
        await store.team_transition(run_id, "auth", "failed", epoch=e, attempt=1, reason=reason)
        await integrate(load_plan(plan_file), store=store, layout=git_repo.state_layout(),
                        run_id=run_id, epoch=e, base_commit=git_repo.head("main"),
                        succeeded=["db"], partial=True)  # fmt: skip
        await store.run_transition(run_id, "failed", epoch=e, reason="failed: auth")
    return run_id


async def test_report_json_matches_what_happened(git_repo: GitRepo, store: Store) -> None:
    """The JSON report lists each attempt with its agent id, exit and outcome, the deliverables
    as a checklist with the files found, the checks' results, the integration and the totals."""
    run_id = await _store_driven_run(git_repo, store)
    paths = await write_reports(store, git_repo.state_layout(), run_id)
    assert set(paths) == {"md", "json", "html"}
    data = json.loads(paths["json"].read_text())
    assert paths["json"] == git_repo.state_layout().run_dir(run_id) / "report.json"
    db, auth = data["teams"]
    assert [
        (a["attempt"], a["agent_id"], a["exit_code"], a["outcome"]) for a in db["attempts"]
    ] == [
        (1, "aaaaaa1", 1, "retried"),
        (2, "bbbbbb2", 0, "succeeded"),
    ]
    assert db["attempts"][1]["tokens"] == 120 and db["cost_usd"] == 0.5
    assert db["deliverables"] == [
        {"deliverable": "src/db.txt", "done": True, "files": ["src/db.txt"]},
        {"deliverable": "migrations/*.sql", "done": False, "files": []},
    ]
    assert db["checks"][0]["passed"] is True
    assert auth["status"] == "failed" and auth["reason"] == "check `pytest -q` failed (exit 1)"
    assert {c["command"]: c["result"] for c in auth["checks"]} == {
        "pytest -q": "failed (exit 1)",
        "ruff check": "passed",
    }
    integ = data["integration"]
    assert integ["status"] == "succeeded" and integ["merged"] == ["db"]
    assert integ["left_out"] == ["auth"] and integ["suite"][0]["passed"] is True
    totals = data["totals"]
    assert totals["attempts"] == 3 and totals["tokens"] == 120 and totals["max_parallel"] == 2
    assert totals["wall_time"] > 0
    assert 0 <= totals["parallel_efficiency"] <= 1
    md = paths["md"].read_text()
    assert "| 2 | bbbbbb2 |" in md and "- [ ] `migrations/*.sql`: not found" in md
    assert "Merge order: db" in md and "Left out (did not succeed): auth" in md


async def test_report_after_a_real_engine_run(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """After a real run (one team retried), the report has every attempt with the agent id the
    engine recorded and each deliverable found."""
    teams = [("db", []), ("api", ["db"])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, api={"fail_attempts": 1}))
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(plan_yaml(command, teams) + f"repo: {git_repo.path.name}\n")
    options = EngineOptions(
        backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, kill_grace=1.0
    )
    result = await start_run(
        load_plan(plan_file), store=store, layout=git_repo.state_layout(), options=options
    )
    assert result.status == "succeeded", result.reason
    data = await build_report(store, result.run_id)
    recorded = {
        t: [a.agent_id for a in await store.get_attempts(result.run_id, t)] for t in ("db", "api")
    }
    got = {t["id"]: [a["agent_id"] for a in t["attempts"]] for t in data["teams"]}
    assert got == recorded and len(got["api"]) == 2 and all(got["api"])
    api = data["teams"][1]
    assert [a["outcome"] for a in api["attempts"]] == ["retried", "succeeded"]
    assert api["attempts"][0]["exit_code"] == 1
    assert api["deliverables"] == [
        {"deliverable": "src/api.txt", "done": True, "files": ["src/api.txt"]}
    ]
    assert data["status"] == "succeeded" and data["totals"]["speedup"] is not None


async def test_report_shows_each_attempts_check_results(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """A check that fails on attempt 1 and passes on attempt 2: the report shows exactly that,
    per attempt (exit code, pass/fail, recorded by the engine) and for the team (passed)."""
    teams = [("db", [])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams))
    marker = tmp_path / "check-ran"
    check = f"test -e {marker} || {{ touch {marker}; exit 3; }}"
    plan_file = git_repo.path.parent / "plan.yaml"
    text = plan_yaml(command, teams, checks={"db": [check, "true"]})
    plan_file.write_text(text + f"repo: {git_repo.path.name}\n")
    options = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01)
    result = await start_run(
        load_plan(plan_file), store=store, layout=git_repo.state_layout(), options=options
    )
    assert result.status == "succeeded", result.reason
    (db,) = (await build_report(store, result.run_id))["teams"]
    first, second = db["attempts"]
    assert [(c["command"], c["passed"], c["exit_code"], c["result"]) for c in first["checks"]] == [
        (check, False, 3, "failed (exit 3)"),
        ("true", True, 0, "passed"),
    ]
    assert [(c["passed"], c["exit_code"]) for c in second["checks"]] == [(True, 0), (True, 0)]
    assert all(c["source"] == "recorded" and c["timed_out"] is False for c in db["checks"])
    assert [c["passed"] for c in db["checks"]] == [True, True]
    assert first["outcome"] == "retried" and "exit 3" in first["reason"]


async def _cli(args: list[str], settings: Settings, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert settings.redis_url is not None
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": settings.redis_url.get_secret_value(),
           "ORCHESTRATE_KEY_PREFIX": settings.key_prefix}  # fmt: skip
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_report_command_writes_the_newest_run_and_refuses_an_unknown_one(
    git_repo: GitRepo, store: Store, settings: Settings
) -> None:
    """`orchestrate report` writes the newest run's files; an unknown run is one line, exit 2;
    --stdout --format json prints the JSON."""
    run_id = await _store_driven_run(git_repo, store)
    state = str(git_repo.state_layout().root)
    done = await _cli(["report", "--state-dir", state], settings, git_repo.path)
    assert done.returncode == 0, done.stderr
    assert f"runs/{run_id}/report.html" in done.stdout
    printed = await _cli(
        ["report", run_id, "--format", "json", "--stdout", "--state-dir", state],
        settings,
        git_repo.path,
    )
    assert json.loads(printed.stdout)["run_id"] == run_id
    bad = await _cli(["report", "nope-1", "--state-dir", state], settings, git_repo.path)
    assert bad.returncode == 2 and bad.stderr.strip() == "orchestrate: error: no run 'nope-1'"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (CI must have it: apt-get install chromium)")
    return found


PROBE = """<script>
(function () {
  var svg = document.querySelector('#timeline svg');
  var r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  var bars = document.querySelectorAll('#timeline rect.bar');
  var fills = Array.prototype.map.call(bars, function (b) { return b.getAttribute('fill'); });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({w: r.width, h: r.height, bars: bars.length, fills: fills});
  document.body.appendChild(out);
})();
</script></body>"""


@pytest.mark.slow
async def test_html_report_renders_in_headless_chromium_with_the_timeline(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """The HTML report opens offline in a real browser and shows the timeline: an SVG with a
    real size and one coloured bar per attempt (green succeeded, orange retried, red failed)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    run_id = await _store_driven_run(git_repo, store)
    paths = await write_reports(store, git_repo.state_layout(), run_id, ["html"])
    html = paths["html"].read_text()
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE))
    profile = tmp_path / "profile"
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,900",
            "--dump-dom", page.as_uri()]  # fmt: skip
    with anyio.fail_after(90):
        proc = await anyio.run_process(argv, check=False)
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    m = re.search(r'<pre id="probe">(.*?)</pre>', stdout)
    assert m is not None, stderr[-2000:]
    probe: dict[str, Any] = json.loads(m.group(1).replace("&quot;", '"'))
    assert probe["w"] > 100 and probe["h"] > 40
    # db: retried + succeeded, auth: failed, integration: its passing suite run
    assert probe["bars"] == 4
    assert {
        COLOURS["retried"],
        COLOURS["succeeded"],
        COLOURS["failed"],
        COLOURS["integration"],
    } == set(probe["fills"])


async def test_report_redacts_secret_values(
    git_repo: GitRepo, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret from the environment (an API key) that reached a team's reason is ``***`` in
    every report format."""
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("SERVICE_API_KEY", secret)
    await store.create_run("demo-9", meta={"plan_name": "demo"}, team_ids=["db"])
    async with store.lease("demo-9") as lease:
        await store.run_transition("demo-9", "running", epoch=lease.epoch)
        await store.team_transition("demo-9", "db", "running", epoch=lease.epoch, attempt=1)
        await store.team_transition(
            "demo-9", "db", "failed", epoch=lease.epoch, attempt=1, reason=f"auth {secret} refused"
        )
    paths = await write_reports(store, git_repo.state_layout(), "demo-9")
    for path in paths.values():
        text = path.read_text()
        assert secret not in text and "auth *** refused" in text


async def test_report_says_each_thing_once(git_repo: GitRepo, store: Store) -> None:
    """A team without a name is headed by its id alone (not `db: db`), a deliverable found at its
    own path is listed once (not `src/db.txt: src/db.txt`), the first suite run has no 'round 0'."""
    run_id = await _store_driven_run(git_repo, store)
    paths = await write_reports(store, git_repo.state_layout(), run_id)
    md = paths["md"].read_text()
    assert "### db (succeeded)" in md and "db: db" not in md
    assert "- [x] `src/db.txt`\n" in md
    assert "- test suite: passed" in md and "round 0" not in md
    html = paths["html"].read_text()
    assert '<h3 id="team-db">db <span' in html
    assert "<code>src/db.txt</code></li>" in html and "round 0" not in html
