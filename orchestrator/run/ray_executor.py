"""The ray executor: attempts run by the host actors of a Ray cluster's nodes.

::

    cluster = RayCluster.connect("auto", host_options)   # UsageError: no Ray, no cluster
    cluster.check(plan, plan_file)                       # PlanError: a runs_on no node matches
    executor = RayExecutor(cluster, store=store, loaded=loaded, remote=url)
    outcome = await executor.run_attempt(request, hooks) # the Executor protocol

Placement: a team runs on a live node that offers ``agent_slots`` and carries
every label of its ``runs_on``; among those, the one with the most free
slots (a node's host refuses a new attempt when its slots are taken, and
placement moves on or waits).

Losing a host: the call to a host actor fails when its worker dies (Ray
restarts it: ``max_restarts=-1``) or when its node goes away. The executor
then waits for whichever comes first: the node is marked dead (the attempt
ends with ``host NAME lost``, for the scheduler to retry elsewhere), or the
restarted actor answers (the same attempt is asked for again: the host
re-adopts the agent, which kept running, and nothing starts twice).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from orchestrator.agents.prompts import Feedback
from orchestrator.errors import GitError, OrchestrateError, PlanError, Problem, UsageError
from orchestrator.gitops import BRANCH_PREFIX, Git, team_branch
from orchestrator.gitops import _run as run_git
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import Plan
from orchestrator.run.executor import AgentEnd, AttemptHooks, AttemptOutcome, AttemptRequest
from orchestrator.run.ray_cluster import (
    HostOptions,
    Node,
    check_placement,
    connect,
    eligible,
    format_runs_on,
    host_actor,
    list_nodes,
    load_ray,
)
from orchestrator.settings import Settings
from orchestrator.state.status import TeamStatus
from orchestrator.state.store import Store, new_agent_id

if TYPE_CHECKING:
    from orchestrator.run.runtypes import RunContext

log = structlog.get_logger("orchestrate.ray")

REATTACH_LIMIT = 120.0
"""Seconds to wait for a host actor to come back (or its node to be declared dead)."""
PLACE_POLL = 0.5
"""Seconds between looks for a free slot when every eligible node is busy."""


class NoEligibleNode(Exception):
    """No live node can take the team any more (its message says which labels it needs)."""


class HostLost(Exception):
    """The node of a host went away (``str()``: ``host NAME lost``)."""

    def __init__(self, name: str) -> None:
        self.host = name
        super().__init__(f"host {name} lost")


class ExecutorError(OrchestrateError):
    """A host failed in a way it could not report as an attempt's outcome."""


@dataclass
class RayCluster:
    """The driver's view of the cluster: its nodes and their host actors."""

    address: str
    host_options: HostOptions = field(default_factory=HostOptions)
    _actors: dict[str, Any] = field(default_factory=dict)
    _placed: dict[str, int] = field(default_factory=dict)
    """Attempts this orchestrator has running per node (a first guess at free slots)."""
    _programs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Node id -> agent name -> its program there (None: missing), asked once per node."""

    @classmethod
    def connect(cls, address: str = "auto", host_options: HostOptions | None = None) -> RayCluster:
        return cls(connect(address), host_options or HostOptions())

    def nodes(self) -> list[Node]:
        return list_nodes()

    async def nodes_async(self) -> list[Node]:
        return await anyio.to_thread.run_sync(list_nodes)

    def check(self, plan: Plan, plan_file: str) -> None:
        """Refuse (``PlanError``, exit 2) a plan with a team no live node can take."""
        check_placement(plan, self.nodes(), plan_file)

    def actor(self, node: Node) -> Any:
        actor = self._actors.get(node.node_id)
        if actor is None:
            actor = self._actors[node.node_id] = host_actor(node, self.host_options)
        return actor

    async def programs(self, node: Node, plan: Plan) -> dict[str, str | None]:
        """The agent programs found on ``node`` (its host looks on its PATH; asked once)."""
        found = self._programs.get(node.node_id)
        if found is None:
            found = self._programs[node.node_id] = await self.call(node, "programs", plan)
        return found

    async def check_programs(self, plan: Plan, nodes: Sequence[Node], plan_file: str) -> None:
        """Refuse (``PlanError``) a team whose agent program no eligible node has."""
        problems: list[Problem] = []
        for i, team in enumerate(plan.teams):
            agent = plan.agent_name(team)
            candidates = eligible(nodes, plan.runs_on(team))
            have = [n for n in candidates if (await self.programs(n, plan)).get(agent, "?")]
            if candidates and not have:
                where = ", ".join(n.name for n in candidates)
                problems.append(
                    Problem(
                        plan_file,
                        f"teams[{i}].agent",
                        f"team {team.id}: agent {agent!r} is not installed on {where}",
                    )
                )
        if problems:
            raise PlanError(problems)

    async def place(
        self,
        runs_on: Mapping[str, Sequence[str]],
        *,
        avoid: Sequence[str] = (),
        plan: Plan | None = None,
        agent: str | None = None,
    ) -> Node:
        """The eligible live node (with the agent's program, when ``plan`` and ``agent``
        are given) with the most free slots; nodes named in ``avoid`` only when nothing
        else is left. Raises :class:`NoEligibleNode`."""
        nodes = eligible(await self.nodes_async(), runs_on)
        if plan is not None and agent is not None:
            nodes = [n for n in nodes if (await self.programs(n, plan)).get(agent, "?")]
        if not nodes:
            need = format_runs_on(runs_on) if runs_on else "agent_slots"
            raise NoEligibleNode(f"no live node left with {need}")
        preferred = [n for n in nodes if n.name not in avoid] or nodes
        return max(preferred, key=lambda n: (n.slots - self._placed.get(n.node_id, 0), n.name))

    async def call(self, node: Node, method: str, *args: Any) -> Any:
        """``host.<method>(*args)`` on ``node``'s host, through host restarts (asked again:
        every host method is idempotent). Raises :class:`HostLost` when the node goes away
        and :class:`HostBusy` when its slots are taken."""
        load_ray()
        from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

        from orchestrator.run.ray_records import HostBusy

        actor = self.actor(node)
        while True:
            try:
                return await getattr(actor, method).remote(*args)
            except ActorUnschedulableError as exc:  # its node is gone
                raise HostLost(node.name) from exc
            except RayActorError as exc:
                log.info("host call failed", host=node.name, error=type(exc).__name__)
                if not await self._back(node, actor):
                    raise HostLost(node.name) from exc
            except RayTaskError as exc:
                cause = exc.cause
                if isinstance(cause, HostBusy):
                    raise cause from None
                if isinstance(cause, OrchestrateError):
                    raise cause from None
                first = str(cause or exc).strip().splitlines()
                raise ExecutorError(
                    f"host {node.name}: {first[-1] if first else type(exc).__name__}"
                ) from None

    async def _back(self, node: Node, actor: Any) -> bool:
        """Wait until the node is dead (False) or its restarted host answers (True)."""
        ray = load_ray()
        deadline = time.monotonic() + REATTACH_LIMIT
        while time.monotonic() < deadline:
            alive = {n.node_id for n in await self.nodes_async() if n.alive}
            if node.node_id not in alive:
                return False
            try:
                with anyio.fail_after(5):
                    await actor.ping.remote()
                return True
            except ray.exceptions.ActorUnschedulableError:
                return False
            except (TimeoutError, ray.exceptions.RayActorError):
                await anyio.sleep(0.3)
        return False

    async def cancel(self, node: Node, run_id: str, team: str, attempt: int) -> bool:
        """Stop that attempt's agent on its node (best effort: a lost node has none)."""
        ray = load_ray()
        try:
            with anyio.fail_after(15):
                return bool(await self.actor(node).cancel.remote(run_id, team, attempt))
        except (TimeoutError, ray.exceptions.RayError) as exc:
            log.info("could not cancel on host", host=node.name, error=type(exc).__name__)
            return False

    async def host_info(self, node: Node, timeout: float = 10.0) -> dict[str, Any] | None:  # noqa: ASYNC109
        """What the node's host says about itself (None: it does not answer)."""
        ray = load_ray()
        try:
            with anyio.fail_after(timeout):
                return await self.actor(node).info.remote()  # type: ignore[no-any-return]
        except (TimeoutError, ray.exceptions.RayError):
            return None


async def running_on_hosts(store: Store, run_id: str) -> list[tuple[str, str, int]]:
    """(host, team, attempt) of each attempt of ``run_id`` that runs on a host now."""
    found = []
    for tid, st in (await store.get_teams(run_id)).items():
        if st.status in (TeamStatus.RUNNING, TeamStatus.VERIFYING) and st.attempt and (
            st.fields.get("host")
        ):
            found.append((st.fields.get("node_id") or st.fields["host"], tid, st.attempt))
    return found


async def stop_on_hosts(address: str, attempts: Sequence[tuple[str, str, int]], run_id: str) -> int:
    """Stop those attempts' agents on their hosts (``orchestrate cancel`` of a ray run
    with no orchestrator alive to do it); how many were stopped. Lost hosts are skipped."""
    cluster = RayCluster.connect(address)
    nodes = {key: n for n in await cluster.nodes_async() if n.alive for key in (n.node_id, n.name)}
    stopped = 0
    for host, team, attempt in attempts:
        node = nodes.get(host)
        if node is not None and await cluster.cancel(node, run_id, team, attempt):
            stopped += 1
    return stopped


def connect_cluster(address: str) -> str:
    """Join the cluster from the main thread (Ray wants it); its resolved GCS address.
    ``UsageError`` when Ray is not installed or no cluster answers at ``address``."""
    return connect(address or "auto")


def require_network_store(settings: Settings) -> None:
    """Refuse a store the nodes cannot reach: the embedded server on its unix socket."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    if not url.startswith(("redis://", "rediss://")):
        raise UsageError(
            "the ray executor needs a Redis every node reaches: pass --redis-url "
            "redis://:PASSWORD@HOST:PORT (or rediss://), e.g. from "
            "`orchestrate server start --listen 0.0.0.0:6380`"
        )


async def resolve_remote(loaded: LoadedPlan) -> str:
    """The git URL of the plan's ``remote`` (a URL, a remote's name, a path; default the
    repository's ``origin``) as every node will use it."""
    name = loaded.plan.remote or "origin"
    root = loaded.repo_root
    try:
        out = await run_git(["remote", "get-url", name], cwd=root)
        url = out.stdout.decode().strip()
    except GitError:
        if loaded.plan.remote is None:
            raise UsageError(
                "the ray executor needs a git remote every node reaches: add `remote:` "
                f"to the plan or an `origin` remote to {root}"
            ) from None
        url = name
    if "://" not in url and ":" not in url.split("/")[0]:  # a path: absolute for the nodes
        url = str((root / url).resolve())
    return url


async def prepare_cluster(
    loaded: LoadedPlan, settings: Settings, address: str
) -> tuple[RayCluster, str]:
    """Everything refused before a run starts: Ray missing, no cluster, a store the nodes
    cannot reach, a team no node can take, no remote. The cluster and the remote's URL."""
    if loaded.plan.isolation == "shared":
        raise UsageError(
            "isolation: shared keeps one worktree on one machine; the ray executor needs "
            "isolation: worktree"
        )
    require_network_store(settings)
    cluster = RayCluster.connect(address)  # joined already by the CLI: no wait here
    nodes = await cluster.nodes_async()
    check_placement(loaded.plan, nodes, str(loaded.path))
    await cluster.check_programs(loaded.plan, nodes, str(loaded.path))
    remote = await resolve_remote(loaded)
    try:  # this machine pushes the run's base there and fetches the teams' branches back
        await run_git(["ls-remote", "--heads", remote], cwd=loaded.repo_root)
    except GitError as exc:
        raise UsageError(f"the git remote {remote} cannot be reached from here: {exc}") from exc
    return cluster, remote


class RayExecutor:
    """The :class:`~orchestrator.run.executor.Executor` that runs attempts on the cluster's nodes.

    Per attempt: place it (``runs_on``, free slots; a team whose host was lost
    goes elsewhere), then ``begin`` / ``follow`` / ``finish`` on that node's host
    with the scheduler's hooks in between. A lost node ends the attempt as
    ``lost`` with the reason ``host NAME lost``; when no eligible node is left
    the next attempt of that team cannot begin (``setup_error``). A passed
    attempt's branch is fetched from the remote into the local repository (the
    integration merges it there).
    """

    name = "ray"

    @classmethod
    async def for_run(cls, ctx: RunContext) -> RayExecutor:
        """The executor of ``ctx``'s run on the cluster at ``ctx.options.ray_address``."""
        cluster, remote = await prepare_cluster(
            ctx.loaded, ctx.store.settings, ctx.options.ray_address
        )
        return cls(
            cluster,
            store=ctx.store,
            loaded=ctx.loaded,
            remote=remote,
            kill_grace=ctx.options.kill_grace,
        )

    def __init__(
        self,
        cluster: RayCluster,
        *,
        store: Store,
        loaded: LoadedPlan,
        remote: str,
        kill_grace: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.settings: Settings = store.settings
        self.loaded = loaded
        self.plan = loaded.plan
        self.remote = remote
        self.secrets = tuple(store.secrets)
        self.kill_grace = kill_grace
        self.git = Git(loaded.repo_root)
        self._bases: dict[str, anyio.Lock] = {}
        self._based: set[str] = set()
        self._lost: dict[str, list[str]] = {}
        """Team -> hosts lost under it (a retry goes elsewhere first)."""

    async def aclose(self) -> None:
        return None

    async def _push_base(self, run_id: str, base_commit: str) -> str:
        """The run's base on the remote as ``orchestrate/<run>/base`` (once per run): every
        node starts from it, whatever branch the user has or has not pushed."""
        branch = f"{BRANCH_PREFIX}/{run_id}/base"
        lock = self._bases.setdefault(run_id, anyio.Lock())
        async with lock:
            if run_id not in self._based:
                await run_git(
                    [
                        "push",
                        "--quiet",
                        "--force",
                        self.remote,
                        f"{base_commit}:refs/heads/{branch}",
                    ],
                    cwd=self.loaded.repo_root,
                )
                self._based.add(run_id)
        return branch

    async def _fetch_branch(self, branch: str) -> None:
        await run_git(
            ["fetch", "--quiet", self.remote, f"+refs/heads/{branch}:refs/heads/{branch}"],
            cwd=self.loaded.repo_root,
        )

    async def _node_of(self, request: AttemptRequest, runs_on: Mapping[str, Sequence[str]]) -> Node:
        """Where the attempt runs: its recorded host for an attach, else a placement."""
        if request.attach is not None:
            host = await self._recorded_host(request)
            for node in await self.cluster.nodes_async():
                if node.name == host or node.node_id == host:
                    if not node.alive:
                        raise HostLost(node.name)
                    return node
            raise HostLost(host or "?")
        return await self.cluster.place(
            runs_on,
            avoid=self._lost.get(request.team_id, ()),
            plan=self.plan,
            agent=self.plan.agent_name(self.plan.team(request.team_id)),
        )

    async def _recorded_host(self, request: AttemptRequest) -> str | None:
        from orchestrator.paths import StateLayout
        from orchestrator.state.store import open_store

        async with open_store(
            self.settings, StateLayout(self.loaded.repo_root / ".orchestrate")
        ) as store:
            for a in await store.get_attempts(request.run_id, request.team_id):
                if a.attempt == request.attempt:
                    return a.fields.get("node_id") or a.fields.get("host")
        return None

    async def run_attempt(self, request: AttemptRequest, hooks: AttemptHooks) -> AttemptOutcome:
        from orchestrator.run.ray_records import HostBusy, HostRequest

        team = self.plan.team(request.team_id)
        runs_on = self.plan.runs_on(team)
        base_branch = await self._push_base(request.run_id, request.base_commit)
        agent_id = request.attach.agent_id if request.attach else new_agent_id()
        node: Node | None = None
        began = time.monotonic()
        try:
            while True:
                try:
                    node = await self._node_of(request, runs_on)
                except NoEligibleNode as exc:
                    lost = self._lost.get(request.team_id)
                    why = f"{exc} (host {', '.join(lost)} lost)" if lost else str(exc)
                    return self._failed(request, agent_id, why, setup=True)
                req = HostRequest(
                    request=request,
                    agent_id=agent_id,
                    settings=self.settings,
                    remote=self.remote,
                    base_branch=base_branch,
                    branch=team_branch(request.run_id, request.team_id),
                    upstream_branches=tuple(
                        team_branch(request.run_id, d) for d in team.depends_on
                    ),
                    slots=node.slots,
                    secrets=self.secrets,
                    kill_grace=self.kill_grace,
                )
                try:
                    begun = await self.cluster.call(node, "begin", req)
                except HostBusy:
                    await anyio.sleep(PLACE_POLL)
                    continue
                break
            if isinstance(begun, AttemptOutcome):
                return begun
            marks = [("begin", time.monotonic())]
            if request.attach is not None:
                await hooks.attached(request.attach, running=True)
            else:
                await hooks.starting(begun)
            marks.append(("starting", time.monotonic()))
            end: AgentEnd = await self.cluster.call(node, "follow", req)
            marks.append(("follow", time.monotonic()))
            await hooks.ended(end)
            marks.append(("ended", time.monotonic()))
            outcome: AttemptOutcome = await self.cluster.call(node, "finish", req)
            marks.append(("finish", time.monotonic()))
            if outcome.ok:
                await self._fetch_branch(req.branch)
            marks.append(("fetch", time.monotonic()))
            log.debug(
                "attempt on host",
                host=node.name,
                team=request.team_id,
                ms={b[0]: round((b[1] - a[1]) * 1000, 1) for a, b in itertools.pairwise(marks)},
                begin_ms=round((marks[0][1] - began) * 1000, 1),
            )
            return outcome
        except HostLost as exc:
            self._lost.setdefault(request.team_id, []).append(exc.host)
            if node is not None:  # the host cannot say it any more: the attempt's record does
                await self.store.update_attempt(
                    request.run_id,
                    request.team_id,
                    request.attempt,
                    {"reason": str(exc), "host": exc.host},
                    epoch=request.epoch,
                )
            return self._failed(request, agent_id, str(exc), host=exc.host, lost=True)
        except BaseException:
            if node is not None and not hooks.leave_running():
                with anyio.CancelScope(shield=True):
                    await self.cluster.cancel(
                        node, request.run_id, request.team_id, request.attempt
                    )
            raise

    def _failed(
        self,
        request: AttemptRequest,
        agent_id: str,
        reason: str,
        *,
        host: str = "",
        setup: bool = False,
        lost: bool = False,
    ) -> AttemptOutcome:
        return AttemptOutcome(
            run_id=request.run_id,
            team_id=request.team_id,
            attempt=request.attempt,
            host=host or "-",
            agent_id=agent_id,
            setup_error=reason if setup else None,
            lost=lost,
            reason=reason,
            feedback=None if setup else Feedback(attempt=request.attempt, reason=reason),
        )
