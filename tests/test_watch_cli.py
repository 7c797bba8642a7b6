"""`orchestrate logs / status / watch / runs` against a real run of `orchestrate run`.

One plan with fake agents (real processes) runs once for the module, in a
subprocess, against a password-protected Redis; `orchestrate logs -f` follows
it from another process. The tests then read that run like a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator.views.board import BoardSnapshot
from tests.support.redis import PasswordRedis

AGENT = """\
import os, sys, time
team, attempt = sys.argv[1], sys.argv[2]
n = 1000 if team == "flood" else 30
for i in range(n):
    print(f"{team} line {i}", flush=team != "flood")
    if team != "flood" and i % 10 == 0:
        time.sleep(0.02)
print(f"{team} uses key {os.environ.get('DEMO_API_KEY', '')}", flush=True)
if team == "api":  # the Redis password, which no secret-named variable of the agent holds
    print("api sees " + open(os.environ["DEMO_VALUE_FILE"]).read(), flush=True)
if team == "split":  # a secret printed in two writes, a pause between them
    tok = os.environ["DEMO_SPLIT_TOKEN"]
    sys.stdout.write("split token " + tok[:8]); sys.stdout.flush()
    time.sleep(0.6)
    print(tok[8:], flush=True)
open(team + ".txt", "w").write("done\\n")
"""

PLAN = """\
version: 1
name: demo
base: main
max_parallel: 4
defaults: {{agent: talk, timeout: 2m, stall_timeout: 1m, retries: 0}}
env: {{DEMO_VALUE_FILE: "{pw_file}"}}
agents:
  talk: {{kind: command, command: [{py}, -u, {script}, "{{team}}", "{{attempt}}"]}}
teams:
  - {{id: db, task: the database, deliverables: [db.txt]}}
  - {{id: api, task: the api, depends_on: [db], deliverables: [api.txt]}}
  - {{id: flood, task: many lines}}
  - {{id: split, task: a secret in two pieces}}
"""


@dataclass
class Done:
    repo: Path
    env: dict[str, str]
    """The environment of a user's second terminal: no planted secrets in it."""
    run_id: str
    run_out: str
    run_rc: int
    follow_out: str
    follow_rc: int
    follow_lag: float
    api_key: str
    split_token: str
    prefix: str
    redis: PasswordRedis


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory, password_redis: PasswordRedis) -> Done:
    base = tmp_path_factory.mktemp("watch")
    repo = base / "repo"
    repo.mkdir()
    script = base / "agent.py"
    script.write_text(AGENT)
    pw_file = base / "value.txt"  # outside the repo and the state folder
    pw_file.write_text(password_redis.password)
    plan = PLAN.format(py=sys.executable, script=script, pw_file=pw_file)
    (repo / "plan.yaml").write_text(plan)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "ORCHESTRATE_")) and k not in ("NO_COLOR",)
    }
    env.update(
        HOME=str(base),
        GIT_CONFIG_NOSYSTEM="1",
        ORCHESTRATE_REDIS_URL=password_redis.url,
        ORCHESTRATE_KEY_PREFIX=prefix,
        ORCHESTRATE_LOG_STREAM_CAP="100",
    )
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
    subprocess.run([*git, "add", "plan.yaml"], cwd=repo, env=env, check=True)
    subprocess.run([*git, "commit", "-qm", "plan"], cwd=repo, env=env, check=True)
    api_key = f"sk-planted-{uuid.uuid4().hex}"
    split_token = f"tok-split-{uuid.uuid4().hex}"
    run_env = {**env, "DEMO_API_KEY": api_key, "DEMO_SPLIT_TOKEN": split_token}
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "plan.yaml"],
        env=run_env,
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    follower: subprocess.Popen[str] | None = None
    try:
        assert run.stdout is not None
        first = run.stdout.readline()
        m = re.match(r"^run (\S+):", first)
        assert m, first
        run_id = m.group(1)
        follower = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "logs", run_id, "-f"],
            env=env,
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rest, _ = run.communicate(timeout=90)
        run_ended = time.monotonic()
        follow_out, follow_err = follower.communicate(timeout=30)
        lag = time.monotonic() - run_ended
    finally:  # a failure above must not leave the run (or its agents) or the follower behind
        for proc in (run, follower):
            if proc is not None and proc.poll() is None:
                proc.terminate()  # the run cancels its teams and stops their agents
                try:
                    proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
    assert follower.returncode == 0, follow_err
    return Done(
        repo,
        env,
        run_id,
        first + rest,
        run.returncode,
        follow_out,
        follower.returncode,
        lag,
        api_key,
        split_token,
        prefix,
        password_redis,
    )


def team_lines(out: str, team: str) -> list[str]:
    return [
        line.split(" | ", 1)[1] for line in out.splitlines() if line.split(" | ")[0].strip() == team
    ]


def expected(team: str, n: int = 30) -> list[str]:
    extra = ["api sees ***"] if team == "api" else []
    return [f"{team} line {i}" for i in range(n)] + [f"{team} uses key ***", *extra]


def test_run_succeeded(done: Done) -> None:
    """The fixture's run itself worked (so the other tests read a real run)."""
    assert done.run_rc == 0, done.run_out


def test_follow_gets_every_line_in_order_and_exits_when_the_run_ends(done: Done) -> None:
    """`logs -f` from another terminal prints every agent line, per team in order, then exits 0."""
    assert done.follow_rc == 0
    assert team_lines(done.follow_out, "db") == expected("db")
    assert team_lines(done.follow_out, "api") == expected("api")
    assert done.follow_lag < 10  # it noticed the end (the generous bound is for slow CI)


def test_logs_after_the_cap_fall_back_to_the_files(done: Done) -> None:
    """The stream keeps ~100 lines, yet `logs` shows all 1001 of the flooding team, in order."""
    client = redis.Redis.from_url(done.redis.url)
    try:
        assert client.xlen(f"{done.prefix}:{{{done.run_id}}}:log:flood") < 1000
    finally:
        client.close()
    rc, out, err = cli("logs", done.run_id, "flood", env=done.env, cwd=done.repo)
    assert rc == 0, err
    assert out.splitlines() == expected("flood", 1000)


def test_logs_interleave_teams_with_a_prefix(done: Done) -> None:
    """Without a team: every team, each line prefixed; the newest run is the default."""
    rc, out, err = cli("logs", env=done.env, cwd=done.repo)
    assert rc == 0, err
    assert team_lines(out, "db") == expected("db")
    assert team_lines(out, "flood") == expected("flood", 1000)
    assert "db    | db line 0" in out.splitlines()
    assert "\x1b[" not in out  # not a terminal: no colour
    rc, raw, _ = cli(
        "logs", done.run_id, "api", "--raw", "--attempt", "1", env=done.env, cwd=done.repo
    )
    assert raw.splitlines() == expected("api")


def test_status_json_validates_and_runs_lists_the_run(done: Done) -> None:
    """`status --json` validates against the documented schema; `runs` shows the run, its id
    in the last column."""
    rc, out, err = cli("status", "--json", env=done.env, cwd=done.repo)
    assert rc == 0, err
    snap = BoardSnapshot.model_validate(json.loads(out))
    assert snap.run_id == done.run_id and snap.phase == "done"
    assert [t.status for t in snap.teams] == ["succeeded"] * 4
    assert snap.teams[0].deliverables_found == 1
    rc, out, err = cli("status", done.run_id, env=done.env, cwd=done.repo)
    assert rc == 0 and "phase done" in out and all(len(x) <= 80 for x in out.splitlines())
    rc, out, err = cli("runs", env=done.env, cwd=done.repo)
    assert rc == 0 and re.search(rf"^succeeded\s.*\s4/0/4\s+{done.run_id}$", out, re.M), out
    # the run id comes last, so the columns before it line up whatever the plan's name
    assert out.splitlines()[0].endswith("ok/failed/all  run")


def test_watch_without_a_terminal_prints_event_lines(done: Done) -> None:
    """`watch` into a pipe prints timestamped event lines and exits when the run has ended."""
    rc, out, err = cli("watch", env=done.env, cwd=done.repo)
    assert rc == 0, err
    assert re.search(r"^\d\d:\d\d:\d\d api\s+succeeded\s+attempt 1$", out, re.M), out


def test_unknown_run_or_team_is_one_line_and_exit_2(done: Done) -> None:
    """A wrong run id or team is named in one line, exit 2, no traceback."""
    for args in (["status", "nope"], ["logs", "no run"], ["logs", done.run_id, "ghost"]):
        rc, _, err = cli(*args, env=done.env, cwd=done.repo)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_no_state_folder_says_so_and_starts_nothing(tmp_path: Path) -> None:
    """Outside any project: one line pointing at `orchestrate run`, exit 2, nothing created."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    for cmd in ("status", "logs", "watch", "runs"):
        rc, _, err = cli(cmd, env=env, cwd=tmp_path)
        assert rc == 2 and err.strip() == (
            "orchestrate: error: no runs here yet; start one with `orchestrate run plan.yaml`"
        ), (cmd, err)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def seen(done: Done) -> str:
    """Everything the run stored (Redis, files) and every command printed, as one text."""
    parts = [done.run_out, done.follow_out]
    client = redis.Redis.from_url(done.redis.url, decode_responses=True)
    try:
        for key in client.scan_iter(f"{done.prefix}:*"):
            kind = client.type(key)
            if kind == "stream":
                parts += [json.dumps(f) for _, f in client.xrange(key)]
            elif kind == "hash":
                parts.append(json.dumps(client.hgetall(key)))
            elif kind == "string":
                parts.append(str(client.get(key)))
            elif kind == "list":
                parts += client.lrange(key, 0, -1)
    finally:
        client.close()
    for path in (done.repo / ".orchestrate").rglob("*"):
        if path.is_file() and "redis" not in path.parts:
            parts.append(path.read_text(errors="replace"))
    for args in (
        ["logs"],
        ["logs", "--raw"],
        ["status"],
        ["status", "--json"],
        ["watch"],
        ["runs"],
    ):
        _, out, err = cli(*args, env=done.env, cwd=done.repo)
        parts += [out, err]
    return "\n".join(parts)


def test_planted_secret_never_appears_anywhere(done: Done, seen: str) -> None:
    """An API key the agent prints is in no Redis key, no log file and no command's output.

    Nor is the Redis password, which the api agent prints from a variable whose
    name looks harmless (so only the store's own secrets, handed to the
    supervisor, can mask it).
    """
    assert "db uses key ***" in seen
    assert "api sees ***" in seen
    assert done.api_key not in seen
    assert done.redis.password not in seen


def test_secret_split_across_writes_is_still_redacted(done: Done, seen: str) -> None:
    """A token printed in two pieces (a flush and a pause between) is masked all the same."""
    assert done.split_token not in seen


@pytest.mark.slow
def test_watch_draws_the_board_in_a_real_terminal(done: Done) -> None:
    """In a real 80x30 terminal (tmux), `watch` draws the board: every team, within 80 columns."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    sock = f"orch-watch-{uuid.uuid4().hex[:8]}"
    env_words = " ".join(
        f"{k}={v}"
        for k, v in done.env.items()
        if k.startswith("ORCHESTRATE_") or k in ("HOME", "PATH")
    )
    command = (
        f"env {env_words} TERM=xterm-256color {sys.executable} -m orchestrator watch;"
        " echo EXIT=$?; sleep 60"
    )
    base = [tmux, "-L", sock, "-f", "/dev/null"]
    subprocess.run(
        [*base, "new-session", "-d", "-x", "80", "-y", "30", "-c", str(done.repo), command],
        check=True,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "EXIT=" not in screen:
            time.sleep(0.2)
            screen = subprocess.run(
                [*base, "capture-pane", "-p", "-t", "0"], capture_output=True, text=True
            ).stdout
        assert "EXIT=0" in screen, screen
        lines = screen.splitlines()
        assert "phase done" in screen and done.run_id[:20] in screen
        for team in ("db", "api", "flood", "split"):
            assert any(re.match(rf"^✔ {team}\s+succeeded", x) for x in lines), screen
        assert all(len(x) <= 80 for x in lines)
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)


def test_logs_of_the_integration_phase(done: Done) -> None:
    """`logs RUN _integration` shows the integration phase like a team; `logs` includes it."""
    rc, out, err = cli("logs", done.run_id, "_integration", env=done.env, cwd=done.repo)
    assert rc == 0, err
    assert "integration succeeded" in out
    _, everything, _ = cli("logs", done.run_id, env=done.env, cwd=done.repo)
    assert "_integration | integration succeeded" in everything


def test_logs_with_a_team_alone_reads_that_team_of_the_newest_run(done: Done) -> None:
    """`orchestrate logs db` (no run id) shows team db of the newest run, as the journey types it;
    a word that is neither a run nor a team names the teams in one line, exit 2."""
    rc, out, err = cli("logs", "db", env=done.env, cwd=done.repo)
    assert rc == 0, err
    assert out.splitlines() == expected("db")
    rc, out, err = cli("logs", "dbb", env=done.env, cwd=done.repo)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "no run or team 'dbb'" in err and "db, api" in err


def test_help_of_every_run_command_names_its_argument_run() -> None:
    """`--help` of status, watch, logs, resume, cancel and report spells the argument RUN."""
    for cmd in ("status", "watch", "logs", "resume", "cancel", "report"):
        rc, out, err = cli(cmd, "--help", env=dict(os.environ), cwd=Path.cwd())
        assert rc == 0, err
        assert f" {cmd} [OPTIONS] [RUN]" in out, out
