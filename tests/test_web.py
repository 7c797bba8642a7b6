"""`orchestrate ui` over HTTP: pages, 404s, the event streams and their resumption, access rules.

A real uvicorn server (in this process) on a free loopback port, a real Redis,
real HTTP with httpx. The browser side is in test_web_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator.paths import StateLayout
from orchestrator.state.store import Store
from orchestrator.web.app import WebConfig
from orchestrator.web.security import Access
from orchestrator.web.server import UiServer, address, bind
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio
SECRET = "sk-test-0123456789abcdef"


@dataclass
class Web:
    client: httpx.AsyncClient
    url: str
    store: Store


@asynccontextmanager
async def serving(store: Store, layout: StateLayout, access: Access) -> AsyncIterator[Web]:
    sock = bind("127.0.0.1", 0)
    server = UiServer(WebConfig(store, layout, access), sock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        url = address(sock, "127.0.0.1", None)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield Web(client, url, store)
        finally:
            await server.stop()


@pytest.fixture
async def web(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Web]:
    monkeypatch.setenv("DEMO_API_KEY", SECRET)  # the dashboard must never show it
    layout = StateLayout(tmp_path / ".orchestrate")
    async with serving(store, layout, Access.for_bind("127.0.0.1", None)) as w:
        yield w


async def _messages(
    client: httpx.AsyncClient, url: str, want: int, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The first ``want`` messages (not comments) of an event stream: {id, event, data}."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with client.stream("GET", url, headers=headers or {}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in current:
                        out.append(current)
                        if len(out) >= want:
                            return out
                    current = {}
                    continue
                name, _, value = line.partition(": ")
                if name in ("id", "event"):
                    current[name] = value
                elif name == "data":
                    current["data"] = json.loads(value)
    return out


async def test_unknown_run_team_or_file_is_a_404_page(web: Web) -> None:
    """An unknown run, team, bad id or deliverable answers a 404 HTML page saying what was
    not found (and a stream of an unknown run is a 404 too, not an empty stream)."""
    await make_run(web.store, "r1", ["db"])
    for path, said in [
        ("/runs/nope", "no run"),
        ("/runs/bad:id", "no run"),
        ("/runs/r1/teams/nope", "has no team"),
        ("/runs/r1/teams/db/files/src/x.txt", "no deliverable"),
        ("/runs/nope/stream", "no run"),
        ("/runs/r1/teams/nope/stream", "has no team"),
        ("/no/such/page", "Not found"),
    ]:
        got = await web.client.get(path)
        assert got.status_code == 404, path
        assert "text/html" in got.headers["content-type"]
        assert said in got.text, (path, got.text)


async def test_runs_run_and_team_pages_show_the_run_with_secrets_redacted(web: Web) -> None:
    """The runs page lists the run; the run page its board; the team page its log as
    stored; a secret from the environment printed by an agent shows as ***."""
    store = web.store
    await make_run(store, "r1", ["db", "api"])
    await store.team_transition("r1", "db", "running", epoch=0, attempt=1)
    await store.append_log("r1", "db", 1, ["hello from db", f"key is {SECRET}"])
    runs = await web.client.get("/")
    assert runs.status_code == 200 and 'href="/runs/r1"' in runs.text
    run = await web.client.get("/runs/r1")
    assert 'id="row-db"' in run.text and 'id="row-api"' in run.text
    assert "running" in run.text
    team = await web.client.get("/runs/r1/teams/db")
    assert "hello from db" in team.text
    assert "key is ***" in team.text
    for page in (runs, run, team):
        assert SECRET not in page.text


async def test_team_stream_resumes_after_the_last_event_id_without_gap_or_duplicate(
    web: Web,
) -> None:
    """A team's stream sends each line with an id; a reconnect that sends that id back
    (Last-Event-ID) gets exactly the lines after it: none lost, none twice. Lines are
    redacted on the way out too."""
    store = web.store
    await make_run(store, "r1", ["db"])
    await store.team_transition("r1", "db", "running", epoch=0, attempt=1)
    await store.append_log("r1", "db", 1, [f"line {i}" for i in range(1, 6)])
    url = "/runs/r1/teams/db/stream?from=0-0|0-0"
    first = await _messages(web.client, url, 3)
    assert [m["data"]["t"] for m in first] == ["line 1", "line 2", "line 3"]
    assert [m["data"]["n"] for m in first] == [1, 2, 3]
    await store.append_log("r1", "db", 1, ["line 6", f"line 7 {SECRET}"])
    rest = await _messages(web.client, url, 4, headers={"Last-Event-ID": first[-1]["id"]})
    assert [m["data"]["t"] for m in rest] == ["line 4", "line 5", "line 6", "line 7 ***"]


async def test_team_stream_sends_state_changes(web: Web) -> None:
    """A team page's stream announces the team's new status as it is recorded."""
    store = web.store
    await make_run(store, "r1", ["db"])
    ev, _ = await store.stream_tails("r1", [])

    async def later() -> None:
        await anyio.sleep(0.3)
        await store.team_transition("r1", "db", "running", epoch=0, attempt=1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        got = await _messages(web.client, f"/runs/r1/teams/db/stream?from={ev}|0-0", 1)
    assert got[0]["event"] == "team"
    assert got[0]["data"]["status"] == "running" and got[0]["data"]["attempt"] == 1


async def test_run_stream_sends_the_board_then_each_change(web: Web) -> None:
    """A run page's stream starts with the board and sends it again when a team changes
    state, with each team's status for the DAG; new log lines come as the team's last line."""
    store = web.store
    await make_run(store, "r1", ["db"])

    async def later() -> None:
        await anyio.sleep(0.3)
        await store.team_transition("r1", "db", "running", epoch=0, attempt=1)
        await store.append_log("r1", "db", 1, ["working"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        got = await _messages(web.client, "/runs/r1/stream", 4)
    kinds = [m["event"] for m in got]
    assert kinds[0] == "board" and got[0]["data"]["status"] == {"db": "pending"}
    boards = [m for m in got if m["event"] == "board"]
    assert boards[-1]["data"]["status"] == {"db": "running"}
    assert "event" in kinds
    lines = [m["data"] for m in got if m["event"] == "line"]
    assert lines == [] or lines == [{"team": "db", "t": "working"}]


async def test_actions_need_the_csrf_token_and_cancel_the_run(web: Web) -> None:
    """Actions are POSTs: without the page's CSRF token, with a wrong one, or from another
    origin they are refused (403) and change nothing; with it the run is cancelled."""
    store = web.store
    await make_run(store, "r1", ["db"])
    page = await web.client.get("/runs/r1")
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert m is not None
    token = m.group(1)
    refused = [
        await web.client.post("/runs/r1/cancel"),
        await web.client.post("/runs/r1/cancel", headers={"X-CSRF-Token": "0" * 64}),
        await web.client.post(
            "/runs/r1/cancel",
            headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
        ),
        await web.client.get("/runs/r1/cancel"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 405]
    assert (await store.get_run("r1")).status == "pending"
    done = await web.client.post("/runs/r1/cancel", headers={"X-CSRF-Token": token})
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    assert (await store.get_run("r1")).status == "cancelled"
    wrong = await web.client.post("/runs/r1/teams/db/retry", headers={"X-CSRF-Token": token})
    assert wrong.status_code == 409 and "only a failed team" in wrong.json()["error"]


async def test_loopback_server_refuses_other_host_names(web: Web) -> None:
    """A loopback dashboard answers only loopback Host names (no DNS rebinding)."""
    got = await web.client.get("/", headers={"Host": "evil.example:8765"})
    assert got.status_code == 421
    ok = await web.client.get("/", headers={"Host": "localhost:8765"})
    assert ok.status_code == 200


async def test_a_bind_beyond_loopback_needs_the_token(store: Store, tmp_path: Path) -> None:
    """With a token (any bind but loopback): no token, a wrong one -> 401; `?token=` once
    sets an HttpOnly cookie and redirects to the clean address; the cookie or a Bearer
    header then work."""
    token = "t0ken-for-the-test-1234567890"
    access = Access(token, loopback=False)
    async with serving(store, StateLayout(tmp_path / ".orchestrate"), access) as w:
        assert (await w.client.get("/")).status_code == 401
        assert (await w.client.get("/?token=wrong-token-value")).status_code == 401
        first = await w.client.get(f"/?token={token}")
        assert first.status_code == 303 and first.headers["location"].endswith("/")
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert (await w.client.get("/")).status_code == 200  # the client kept the cookie
        bare = httpx.AsyncClient(base_url=w.url)
        async with bare:
            bearer = await bare.get("/", headers={"Authorization": f"Bearer {token}"})
            assert bearer.status_code == 200
    assert Access.for_bind("0.0.0.0", None).token is not None
    assert Access.for_bind("127.0.0.1", None).token is None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ORCHESTRATE_REDIS_URL", None)
    return env


def test_ui_on_a_port_in_use_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    """`orchestrate ui --port P` with P taken: one line on stderr, exit 2, no traceback."""
    (tmp_path / "state").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "ui", "--port", str(port),
             "--state-dir", str(tmp_path / "state")],
            env=_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is in use" in lines[0], proc.stderr


def test_ui_without_the_web_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """Without Starlette/uvicorn installed (simulated): one line naming the extra, exit 2."""
    (tmp_path / "state").mkdir()
    code = (
        "import sys; sys.modules['uvicorn'] = None; "
        "sys.argv = ['orchestrate', 'ui', '--state-dir', sys.argv[1]]; "
        "from orchestrator.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "state")],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'orchestrate[web]'" in lines[0], proc.stderr


def test_help_does_not_import_the_web_stack() -> None:
    """`orchestrate --help` stays fast: Starlette, uvicorn and the web package load only
    when the dashboard is asked for."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "ui" in proc.stdout and "cancel-team" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {m for m in imported if m.split(".")[0] in ("starlette", "uvicorn")}
    assert "orchestrator.web" not in imported


async def test_team_page_shows_checks_with_their_output_and_the_retry_feedback(
    web: Web, git_repo: Any, tmp_path: Path
) -> None:
    """A team whose check fails, then passes on the retry: its page shows each attempt's
    checks with their output (secrets redacted), the reason the first attempt did not
    pass, and the prompt of attempt 2 carrying that feedback."""
    from orchestrator.plan.load import load_plan
    from orchestrator.run.engine import EngineOptions, start_run
    from tests.support.engine import files_for, plan_yaml, write_agent

    teams = [("db", [])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams))
    flag = tmp_path / "checked-once"
    check = (
        f"{sys.executable} -c \"import os, pathlib, sys; p = pathlib.Path({str(flag)!r}); "
        f"print('CHECK SAYS', os.environ.get('DEMO_API_KEY')); "
        f"sys.exit(0 if p.exists() else (p.touch() or 3))\""
    )
    text = plan_yaml(command, teams, checks={"db": [check]})
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(text + f"repo: {git_repo.path.name}\n")
    fast = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01)
    result = await start_run(
        load_plan(plan_file), store=web.store, layout=git_repo.state_layout(), options=fast
    )
    assert result.status == "succeeded", result.reason
    page = await web.client.get(f"/runs/{result.run_id}/teams/db")
    assert page.status_code == 200
    html = page.text
    outputs = re.findall(r'<pre class="text out">([^<]*)</pre>', html)
    assert [o.strip() for o in outputs] == ["CHECK SAYS ***"] * 2, outputs  # both attempts
    assert "failed (exit 3)" in html and "passed" in html
    assert "Feedback given on attempt 1" in html
    assert "Attempt 1 ended without the team being done" in html
    assert SECRET not in html


async def test_every_answer_carries_the_security_headers(web: Web) -> None:
    """Pages, streams' refusals and 404s forbid framing and foreign scripts, and send no
    referrer (the first address may carry the token)."""
    for path in ("/", "/runs/nope", "/static/app.js"):
        got = await web.client.get(path)
        csp = got.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp or "'unsafe-inline'" not in csp.split("script-src")[1]
        assert got.headers["referrer-policy"] == "no-referrer"
        assert got.headers["x-frame-options"] == "DENY"
    js = await web.client.get("/static/app.js")
    assert js.status_code == 200 and "EventSource" in js.text
    assert "http://" not in js.text and "https://" not in js.text  # nothing from elsewhere


def test_ui_beyond_loopback_prints_the_token_and_asks_for_it(
    redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate ui --host 0.0.0.0` prints an address with a fresh token and refuses
    requests without it; `--token-file` with a too short token is one line, exit 2."""
    state = tmp_path / "state"
    state.mkdir()
    env = {**_env(), "ORCHESTRATE_REDIS_URL": redis_url}
    short = tmp_path / "token"
    short.write_text("short\n")
    bad = subprocess.run(
        [*_UI, "--token-file", str(short), "--state-dir", str(state)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "too short" in bad.stderr
    with subprocess.Popen(
        [*_UI, "--host", "0.0.0.0", "--port", "0", "--state-dir", str(state)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            m = re.search(r"orchestrate ui: http://\S+:(\d+)/\?token=(\S+)", first)
            assert m, first
            port, token = m.group(1), m.group(2)
            assert "share it only" in proc.stdout.readline()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                assert client.get("/").status_code == 401
                opened = client.get(f"/?token={token}", follow_redirects=True)
                assert opened.status_code == 200 and "Runs" in opened.text
        finally:
            proc.terminate()
            assert proc.wait(20) == 0


def test_run_with_ui_on_a_port_in_use_starts_nothing(
    git_repo: Any, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run plan.yaml --ui` with the dashboard's port taken: one line, exit 2,
    and no run was created (nothing to clean up or resume)."""
    from tests.support.engine import files_for, plan_yaml, write_agent

    teams = [("db", [])]
    command, times = write_agent(tmp_path / "agent", files_for(teams))
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(plan_yaml(command, teams) + f"repo: {git_repo.path.name}\n")
    env = {**_env(), "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": "tuiport"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", str(plan_file), "--ui",
             "--ui-port", str(port)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use" in lines[0], proc.stderr
    assert not times.exists()  # no agent ran
    runs = git_repo.path / ".orchestrate" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run folder was made


_UI = [sys.executable, "-m", "orchestrator", "ui"]


async def test_runs_stream_sends_the_table_when_a_run_changes_or_appears(web: Web) -> None:
    """The runs page's stream sends the table again when a run changes state (at once, from
    its event stream) and when a new run appears."""
    store = web.store
    await make_run(store, "r1", ["db"])

    async def later() -> None:
        await anyio.sleep(0.3)
        await store.run_transition("r1", "running", epoch=0)
        await anyio.sleep(0.3)
        await make_run(store, "r2", ["db"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        got = await _messages(web.client, "/stream", 2)
    assert [m["event"] for m in got] == ["runs", "runs"]
    first, second = (m["data"]["html"] for m in got)
    assert "st-running" in first and "/runs/r2" not in first
    assert "/runs/r2" in second and "/runs/r1" in second


async def test_team_stream_reads_back_from_the_files_what_the_capped_stream_dropped(
    settings: Any, tmp_path: Path
) -> None:
    """A reader that comes back after the capped log stream dropped lines it had not seen
    (a long disconnection) gets them from the attempt's log file, in order, with a note
    saying so: no gap."""
    from orchestrator.state.store import open_store

    small = settings.model_copy(update={"log_stream_cap": 100})
    layout = StateLayout(tmp_path / ".orchestrate")
    async with open_store(small, layout) as store:
        await make_run(store, "r1", ["db"])
        await store.team_transition("r1", "db", "running", epoch=0, attempt=1)
        lines = [f"line {i}" for i in range(1, 401)]
        log = layout.log_file("r1", "db", 1)
        log.parent.mkdir(parents=True)
        log.write_text("\n".join(lines) + "\n")  # what the agent printed
        await store.append_log("r1", "db", 1, lines[:5])
        fifth = (await store.read_log("r1", "db"))[-1].id
        for i in range(5, 400, 50):
            await store.append_log("r1", "db", 1, lines[i : i + 50])
        assert len(await store.read_log("r1", "db")) < 300  # the cap dropped the early ones
        ev, _ = await store.stream_tails("r1", [])
        async with serving(store, layout, Access.for_bind("127.0.0.1", None)) as w:
            got = await _messages(
                w.client, "/runs/r1/teams/db/stream", 396,
                headers={"Last-Event-ID": f"{ev}|{fifth}|1.5"},
            )  # fmt: skip
    texts = [m["data"]["t"] for m in got if m["event"] == "line"]
    notes = [m["data"]["t"] for m in got if m["event"] == "note"]
    assert texts == lines[5:], texts[:5]
    assert len(notes) == 1 and "read back from the log files" in notes[0]
