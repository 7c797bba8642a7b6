"""The dashboard in a real browser (Playwright driving the system Chromium) during live runs.

Everything is real: `orchestrate run --ui` or `orchestrate ui` as subprocesses,
a real Redis, agents that are real processes printing a numbered, timestamped
line every 0.2 s until the test tells them to finish (a file appears).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ORCHESTRATE = [sys.executable, "-m", "orchestrator"]
TICKER = r"""
import os, pathlib, sys, time
team = os.environ["ORCHESTRATE_TEAM"]
ctl = pathlib.Path(sys.argv[1])
i = 0
while not (ctl / ("stop-" + team)).exists() and i < 3000:
    print(f"{team} tick {i} {time.time():.3f}", flush=True)
    i += 1
    time.sleep(0.2)
pathlib.Path("src").mkdir(exist_ok=True)
pathlib.Path("src", team + ".txt").write_text(team + " done\n")
print(f"{team} finished after {i} ticks", flush=True)
"""
# Lines the dashboard added live, with the browser's clock when each arrived.
OBSERVE = """
document.addEventListener("DOMContentLoaded", () => {
  window.__arrivals = [];
  const log = document.getElementById("log");
  if (!log) return;
  new MutationObserver((changes) => {
    for (const c of changes) for (const n of c.addedNodes)
      window.__arrivals.push([n.textContent, Date.now() / 1000]);
  }).observe(log, { childList: true });
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Kit:
    """A repository with a ticking plan, and the orchestrate processes a test started."""

    def __init__(self, git_repo: GitRepo, tmp_path: Path, redis_url: str) -> None:
        self.repo = git_repo
        self.ctl = tmp_path / "ctl"
        self.ctl.mkdir()
        agent = tmp_path / "ticker.py"
        agent.write_text(TICKER)
        self.plan = git_repo.path.parent / "plan.yaml"
        command = [sys.executable, "-u", str(agent), str(self.ctl)]
        self.plan.write_text(
            "version: 1\nname: live\nmax_parallel: 4\n"
            f"repo: {git_repo.path.name}\n"
            "defaults: {agent: ticker, timeout: 5m, retries: 0}\n"
            f"agents: {{ticker: {{kind: command, command: {command!r}}}}}\n"
            "teams:\n"
            "  - {id: db, task: The database., deliverables: [src/db.txt]}\n"
            "  - {id: api, task: The API., deliverables: [src/api.txt]}\n"
            "  - {id: web, task: The front end., deliverables: [src/web.txt], depends_on: [db]}\n"
        )
        self.env = dict(os.environ)
        self.env["ORCHESTRATE_REDIS_URL"] = redis_url
        self.env["ORCHESTRATE_KEY_PREFIX"] = f"t{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = tmp_path

    def start(self, *args: str, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.tmp / f"{name}.out"
        with out.open("wb") as fh:
            proc = subprocess.Popen(
                [*ORCHESTRATE, *args],
                cwd=self.repo.path,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc, out

    def stop(self, team: str) -> None:
        (self.ctl / f"stop-{team}").write_text("")

    def close(self) -> None:
        for team in ("db", "api", "web"):
            self.stop(team)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def kit(git_repo: GitRepo, tmp_path: Path, redis_url: str) -> Iterator[Kit]:
    k = Kit(git_repo, tmp_path, redis_url)
    try:
        yield k
    finally:
        k.close()


def wait_text(path: Path, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text(errors='replace')}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_lines(page: Any) -> list[str]:
    texts = page.eval_on_selector_all("#log .ln:not(.mark)", "els => els.map(e => e.textContent)")
    return list(texts)


def wait_js(page: Any, expression: str, timeout: float = 30) -> None:
    """Wait until ``expression`` is true in the page (polled from here: the page's CSP
    forbids the string evaluation ``wait_for_function`` uses, as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)


def has_line(prefix: str) -> str:
    """A script: does the page's log hold a line starting with ``prefix``?"""
    return (
        "[...document.querySelectorAll('#log .ln')]"
        f".some(e => e.textContent.startsWith({prefix!r}))"
    )


def test_live_run_turns_teams_green_streams_lines_within_a_second_and_cancels(
    kit: Kit, browser: Any
) -> None:
    """`run --ui` during a live run: on the run page a running team shows its agent and
    host, and turns from running to succeeded without a reload (board and DAG); on a
    team page each new log line appears within a second of the agent printing it; a
    succeeded team's deliverable opens from its branch; "Cancel team" stops one team
    while the run goes on; "Cancel run" cancels the run (`run` exits 130), and the runs
    page, open all along, shows it. No page logs
    an error (a script error, a Content-Security-Policy violation)."""
    run, out = kit.start("run", str(kit.plan), "--ui", "--ui-port", "0", name="run")
    base = wait_text(out, r"dashboard: (http://127\.0\.0\.1:\d+/)").group(1)
    run_id = wait_text(out, r"run (live-\S+): 3 teams").group(1)
    ctx = browser.new_context()
    errors: list[str] = []  # console errors: a script error, a CSP violation
    ctx.on("page", lambda p: p.on("console", lambda m: m.type == "error" and errors.append(m.text)))
    try:
        runs = ctx.new_page()
        runs.goto(base)
        runs.wait_for_selector(f"a[href='/runs/{run_id}']")
        page = ctx.new_page()
        page.goto(f"{base}runs/{run_id}")
        page.wait_for_selector("#row-db .badge.st-running", timeout=20_000)
        assert "st-running" in (page.get_attribute("#node-db", "class") or "")
        row = page.inner_text("#row-db")  # the agent and the host it runs on
        assert "ticker" in row and f"on {socket.gethostname()}" in row, row
        kit.stop("db")  # db finishes: no reload from here on
        page.wait_for_selector("#row-db .badge.st-succeeded", timeout=20_000)
        page.wait_for_selector("#node-db.st-succeeded", state="attached", timeout=5_000)
        page.wait_for_selector("#row-web .badge.st-running", timeout=20_000)

        team = ctx.new_page()
        team.add_init_script(OBSERVE)
        team.goto(f"{base}runs/{run_id}/teams/api")
        wait_js(team, "(window.__arrivals || []).length >= 10", 20)
        arrivals = team.evaluate("window.__arrivals")
        delays = [
            seen - float(text.rsplit(" ", 1)[-1])
            for text, seen in arrivals
            if re.fullmatch(r"api tick \d+ [\d.]+", text)
        ]
        assert len(delays) >= 10 and max(delays) < 1.0, delays

        files = ctx.new_page()
        files.goto(f"{base}runs/{run_id}/teams/db")
        files.click("ul.files a:has-text('src/db.txt')")
        files.wait_for_selector("pre.file")
        assert files.inner_text("pre.file").strip() == "db done"

        web = ctx.new_page()  # cancel one team: the engine stops it, the run goes on
        web.goto(f"{base}runs/{run_id}/teams/web")
        web.on("dialog", lambda dialog: dialog.accept())
        web.click("#cancel-team")
        web.wait_for_selector("#team-status.st-cancelled", timeout=20_000)
        page.wait_for_selector("#row-web .badge.st-cancelled", timeout=20_000)
        assert page.inner_text("#run-status") == "running"

        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#cancel-run")
        page.wait_for_selector("#run-status.st-cancelled", timeout=30_000)
        runs.wait_for_selector("#runs .badge.st-cancelled", timeout=10_000)  # no reload
        assert errors == [], errors  # (the server's end, next, cuts the open streams)
        assert run.wait(timeout=30) == 130
    finally:
        ctx.close()


def test_a_reconnect_loses_no_line(kit: Kit, browser: Any) -> None:
    """The dashboard's server goes away mid-run and comes back: the page says
    "reconnecting", then resumes from the last line it had; in the end the page shows
    every line the agent printed exactly once, in order. Its search finds a line."""
    run, run_out = kit.start("run", str(kit.plan), name="run")
    run_id = wait_text(run_out, r"run (live-\S+): 3 teams").group(1)
    port = free_port()
    ui, ui_out = kit.start("ui", "--port", str(port), name="ui")
    base = wait_text(ui_out, r"orchestrate ui: (http://127\.0\.0\.1:\d+/)").group(1)
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(f"{base}runs/{run_id}/teams/api")
        wait_js(page, has_line("api tick 12 "))
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=20) == 0
        page.wait_for_selector("#conn", state="visible", timeout=10_000)
        assert "reconnecting" in page.inner_text("#conn")
        time.sleep(1.5)  # the agent goes on printing meanwhile
        kit.start("ui", "--port", str(port), name="ui2")
        page.wait_for_selector("#conn", state="hidden", timeout=20_000)
        kit.stop("api")
        wait_js(page, has_line("api finished"))
        lines = log_lines(page)
        total = int(re.search(r"after (\d+) ticks", lines[-1]).group(1))  # type: ignore[union-attr]
        assert total > 20
        ticks = [int(t.split()[2]) for t in lines[:-1]]
        assert ticks == list(range(total)), ticks
        page.fill("#log-search", "tick 7 ")  # the search keeps the matching lines only
        shown = page.eval_on_selector_all(
            "#log .ln:not([hidden])", "els => els.map(e => e.textContent)"
        )
        assert [t.rsplit(" ", 1)[0] for t in shown] == ["api tick 7"], shown
        assert page.inner_text("#log-count") == f"1 of {total + 1} lines"
    finally:
        ctx.close()
        kit.stop("db")
        kit.stop("web")
        run.wait(timeout=60)


def test_redis_going_away_shows_reconnecting_and_recovers(
    git_repo: GitRepo, tmp_path: Path, browser: Any, redis_server_path: str
) -> None:
    """The Redis the dashboard reads goes away: the page says "reconnecting"; it comes back
    (same data): the notice goes and the page is live again (a new team state shows)."""
    import redis

    sock = tmp_path / "redis.sock"
    data = tmp_path / "redis-data"
    data.mkdir()
    argv = [
        redis_server_path, "--port", "0", "--unixsocket", str(sock), "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(unix_socket_path=str(sock)).ping():
                    return proc
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server = start_redis()
    r = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    r.zadd("orch:runs", {"r1": time.time()})
    r.hset("orch:{r1}:meta", mapping={"status": "running", "plan": "plan.yaml"})
    r.rpush("orch:{r1}:teams", "db")
    r.hset("orch:{r1}:team:db", mapping={"status": "pending", "attempt": "0"})
    r.close()
    env = dict(os.environ)
    env["ORCHESTRATE_REDIS_URL"] = f"unix://{sock}"
    env.pop("ORCHESTRATE_KEY_PREFIX", None)
    (tmp_path / "state").mkdir()
    out = tmp_path / "ui.out"
    with out.open("wb") as fh:
        ui = subprocess.Popen(
            [*ORCHESTRATE, "ui", "--port", "0", "--state-dir", str(tmp_path / "state")],
            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    ctx = browser.new_context()
    try:
        base = wait_text(out, r"orchestrate ui: (http://127\.0\.0\.1:\d+/)").group(1)
        page = ctx.new_page()
        page.goto(f"{base}runs/r1")
        page.wait_for_selector("#row-db .badge.st-pending")
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        page.wait_for_selector("#conn", state="visible", timeout=20_000)
        assert "reconnecting" in page.inner_text("#conn")
        server = start_redis()
        page.wait_for_selector("#conn", state="hidden", timeout=20_000)
        r = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
        # A transition as the engine writes it: the hash and its event.
        r.hset("orch:{r1}:team:db", mapping={"status": "running", "attempt": "1"})
        r.xadd(
            "orch:{r1}:events",
            {"type": "team", "team": "db", "from": "pending", "to": "running",
             "attempt": "1", "epoch": "0", "ts": str(time.time())},
        )  # fmt: skip
        r.close()
        page.wait_for_selector("#row-db .badge.st-running", timeout=20_000)
    finally:
        ctx.close()
        ui.send_signal(signal.SIGTERM)
        ui.wait(20)
        server.terminate()
        server.wait(10)
