"""The dashboard's Starlette application: pages, streams, actions.

::

    GET  /                                  the runs
    GET  /stream                            their Server-Sent Events (a new run, a run's change)
    GET  /runs/RUN                          a run: DAG, board, timeline, integration, report
    GET  /runs/RUN/stream                   its Server-Sent Events (see streams.py)
    GET  /runs/RUN/report                   the HTML report, as it stands
    GET  /runs/RUN/teams/TEAM               a team: log, prompt, checks, feedback, deliverables
    GET  /runs/RUN/teams/TEAM/stream        its Server-Sent Events
    GET  /runs/RUN/teams/TEAM/detail        its attempts, checks and deliverables (HTML part)
    GET  /runs/RUN/teams/TEAM/files/PATH    a deliverable's content on the team's branch
    POST /runs/RUN/cancel                   `orchestrate cancel RUN`
    POST /runs/RUN/teams/TEAM/cancel        `orchestrate cancel-team RUN TEAM`
    POST /runs/RUN/teams/TEAM/retry         `orchestrate retry-team RUN TEAM`

An unknown run, team or file is a 404 page. Access rules: security.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import OrchestrateError, StoreError, UsageError
from orchestrator.paths import StateLayout
from orchestrator.redact import Redactor
from orchestrator.state.store import Store
from orchestrator.web import streams
from orchestrator.web.dag import dag_svg
from orchestrator.web.security import COOKIE, Access
from orchestrator.web.views import Board, NotFound, Views, duration, statuses

STATIC = Path(__file__).parent / "static"
HEADERS = [
    (k.encode(), v.encode())
    for k, v in {
        # Our own script only; inline styles (the report, progress bars) but no inline script.
        "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",  # the first address may carry the token
        "x-frame-options": "DENY",
    }.items()
]


@dataclass(frozen=True)
class WebConfig:
    """What one dashboard server serves, and to whom."""

    store: Store
    layout: StateLayout
    access: Access
    redis_url: str | None = None
    """Given to a resume the dashboard starts (a retry on a finished run)."""


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = duration
    env.filters["money"] = lambda v: f"${v:.2f}" if v else ""
    env.filters["tokens"] = _tokens
    env.filters["clock"] = _clock
    return env


def _clock(at: float) -> str:
    """``14:05`` today (local time), ``Dec 04 14:05`` on another day."""
    local = time.localtime(at)
    same_day = time.localtime()[:3] == local[:3]
    return time.strftime("%H:%M" if same_day else "%b %d %H:%M", local)


def _tokens(n: int) -> str:
    if n < 1000:
        return str(n) if n else ""
    return f"{n / 1000:.1f}k" if n < 1_000_000 else f"{n / 1_000_000:.1f}M"


class _Guard:
    """Host, token and CSRF rules (security.py) before any route runs (pure ASGI: the
    event streams pass through untouched)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        refusal = await self._refusal(Request(scope, receive))
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _refusal(self, request: Request) -> Response | None:
        access = self.access
        if not access.host_ok(request.headers.get("host", "")):
            return Response("unknown host\n", status_code=421, media_type="text/plain")
        given = request.query_params.get("token")
        if access.token is not None:
            auth = request.headers.get("authorization", "")
            bearer = auth[7:] if auth.lower().startswith("bearer ") else None
            presented = given or bearer or request.cookies.get(COOKIE)
            if not access.token_ok(presented):
                return Response(
                    "this dashboard needs its access token: open the address "
                    "`orchestrate ui` printed (…/?token=…)\n",
                    status_code=401,
                    media_type="text/plain",
                )
            if given and request.method == "GET":  # keep it in a cookie, out of the address
                response: Response = RedirectResponse(
                    str(request.url.remove_query_params("token")), status_code=303
                )
                response.set_cookie(
                    COOKIE, given, httponly=True, samesite="strict", path="/", max_age=7 * 86400
                )
                return response
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin is not None and origin.split("//", 1)[-1] != request.headers.get("host"):
                return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            if not access.csrf_ok(request.headers.get("x-csrf-token")):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        return None


def create_app(config: WebConfig) -> Starlette:
    """The dashboard for the runs in ``config.store``."""
    env = _env()
    redactor = Redactor.from_env(extra=config.store.secrets)
    views = Views(config.store, config.layout, redactor)
    csrf = config.access.csrf()

    def page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(csrf=csrf, **values)
        return HTMLResponse(html, status_code=status_code)

    def board_payload(board: Board) -> dict[str, Any]:
        if board.payload is not None:
            return board.payload
        from orchestrator.views.timeline import timeline_svg

        s = board.snapshot
        data = board.report
        if not s.done:  # running attempts' bars reach the present
            data = {**data, "finished": max(data["finished"], s.at)}
        plan = board.plan
        agents = {t.id: plan.agent_name(t) for t in plan.teams} if plan is not None else {}
        html = env.get_template("_board.html").render(
            s=s,
            agents=agents,
            host=board.host,
            report=data,
            integration=_integration(data),
            timeline=timeline_svg(data) if data.get("teams") else "",
        )
        board.payload = {
            "html": html,
            "status": dict(statuses(s)),
            "run": {"status": s.status, "reason": s.reason or "", "done": s.done},
        }
        return board.payload

    async def runs(request: Request) -> Response:
        return page("runs.html", runs=await views.runs(), where=config.store.where)

    def runs_table(rows: list[dict[str, Any]]) -> str:
        return env.get_template("_runs.html").render(runs=rows)

    async def runs_events(request: Request) -> Response:
        return _sse(streams.runs_stream(views, runs_table))

    async def run(request: Request) -> Response:
        run_id = request.path_params["run"]
        board = await views.board(run_id)
        plan = board.plan
        status = statuses(board.snapshot)
        dag = dag_svg(plan, status) if plan is not None else ""
        return page(
            "run.html",
            s=board.snapshot,
            payload=board_payload(board),
            dag=dag,
            run_id=run_id,
            events=await views.events(run_id),
        )

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run"]
        await views.run(run_id)
        last = request.headers.get("last-event-id") or request.query_params.get("last")
        return _sse(streams.run_stream(views, run_id, board_payload, last))

    async def report(request: Request) -> Response:
        from orchestrator.views.report_html import render_html

        board = await views.board(request.path_params["run"])
        return HTMLResponse(render_html(board.report))

    async def team(request: Request) -> Response:
        from orchestrator.views.logs import adapter_of, history

        run_id, tid = request.path_params["run"], request.path_params["team"]
        data = await views.team(run_id, tid)
        run_state = await views.run(run_id)
        plan = await views.plan(run_state)
        ev_tail, _ = await config.store.stream_tails(run_id, [])
        got = await history(
            config.store, config.layout, run_id, tid, adapter=adapter_of(plan, tid)
        )
        position = streams.Position(ev_tail, got.last_id, got.last_pos or None)
        lines = [
            {"a": line.attempt, "t": _clean(line.text, redactor)} for line in got.lines
        ]
        return page(
            "team.html",
            run_id=run_id,
            t=data,
            lines=lines,
            position=str(position),
        )

    async def team_detail(request: Request) -> Response:
        run_id, tid = request.path_params["run"], request.path_params["team"]
        data = await views.team(run_id, tid)
        return page("_team_detail.html", run_id=run_id, t=data)

    async def team_events(request: Request) -> Response:
        run_id, tid = request.path_params["run"], request.path_params["team"]
        run_state = await views.run(run_id)
        if tid not in run_state.team_ids:
            raise NotFound(f"run {run_id} has no team {tid!r}")
        from orchestrator.views.logs import adapter_of

        start = streams.parse_position(
            request.headers.get("last-event-id") or request.query_params.get("from")
        )
        if start is None:  # no position: from now on
            ev, logs = await config.store.stream_tails(run_id, [tid])
            start = streams.Position(ev, logs[tid])
        plan = await views.plan(run_state)
        return _sse(
            streams.team_stream(views, run_id, tid, start, lambda team: adapter_of(plan, team))
        )

    async def team_file(request: Request) -> Response:
        run_id, tid = request.path_params["run"], request.path_params["team"]
        path = request.path_params["path"]
        branch, text = await views.file(run_id, tid, path)
        return page("file.html", run_id=run_id, team=tid, path=path, branch=branch, text=text)

    async def cancel(request: Request) -> Response:
        from orchestrator.run.resume import cancel_run

        run_id = request.path_params["run"]
        await views.run(run_id)
        done = await cancel_run(run_id, store=config.store, grace=5.0, wait=10.0)
        views.forget(run_id)
        return JSONResponse({"run": run_id, "status": done.status, "teams": done.teams})

    async def cancel_team(request: Request) -> Response:
        from orchestrator.run.control import cancel_team as cancel

        return await _act(request, cancel)

    async def retry_team(request: Request) -> Response:
        from orchestrator.run.control import retry_team as retry

        async def go(store: Store, run_id: str, tid: str) -> Any:
            done = await retry(store, run_id, tid)
            if not done.live:
                _start_resume(config, run_id)
            return done

        return await _act(request, go)

    async def _act(request: Request, fn: Callable[[Store, str, str], Awaitable[Any]]) -> Response:
        run_id, tid = request.path_params["run"], request.path_params["team"]
        run_state = await views.run(run_id)
        if tid not in run_state.team_ids:
            raise NotFound(f"run {run_id} has no team {tid!r}")
        try:
            done = await fn(config.store, run_id, tid)
        except UsageError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        views.forget(run_id)
        return JSONResponse(
            {"run": run_id, "team": tid, "status": done.status, "live": done.live}
        )

    async def favicon(request: Request) -> Response:  # pages without the icon link (the report)
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("404.html", status_code=404, message=str(exc) or "not found")

    async def store_down(request: Request, exc: Exception) -> Response:
        return page("error.html", status_code=503, message=str(exc))

    async def failed(request: Request, exc: Exception) -> Response:
        return page("error.html", status_code=500, message=str(exc))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    routes = [
        Route("/", runs),
        Route("/stream", runs_events),
        Route("/runs/{run}", run),
        Route("/runs/{run}/stream", run_events),
        Route("/runs/{run}/report", report),
        Route("/runs/{run}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run}/teams/{team}", team),
        Route("/runs/{run}/teams/{team}/stream", team_events),
        Route("/runs/{run}/teams/{team}/detail", team_detail),
        Route("/runs/{run}/teams/{team}/files/{path:path}", team_file),
        Route("/runs/{run}/teams/{team}/cancel", cancel_team, methods=["POST"]),
        Route("/runs/{run}/teams/{team}/retry", retry_team, methods=["POST"]),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        NotFound: not_found,
        StoreError: store_down,
        OrchestrateError: failed,
    }
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, access=config.access)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


def _clean(text: str, redactor: Redactor) -> str:
    from orchestrator.web.views import clean

    return clean(text, redactor)


def _integration(report: dict[str, Any]) -> list[str]:
    """The integration section as HTML sentences (the report's, Markdown rendered)."""
    from markdown_it import MarkdownIt

    from orchestrator.views.report import integration_lines

    md = MarkdownIt("commonmark", {"html": False})
    return [md.renderInline(line) for line in integration_lines(report)]


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _start_resume(config: WebConfig, run_id: str) -> None:
    """Start ``orchestrate resume RUN`` in the background (its output in the run's folder):
    a retry asked for on a run no orchestrator drives any more."""
    import subprocess

    env = dict(os.environ)
    if config.redis_url:
        env["ORCHESTRATE_REDIS_URL"] = config.redis_url
    log = config.layout.run_dir(run_id) / "resume.log"
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.Popen(
            [
                sys.executable, "-m", "orchestrator", "resume", run_id,
                "--state-dir", str(config.layout.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )  # fmt: skip
