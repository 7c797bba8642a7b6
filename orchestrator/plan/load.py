"""Load ``plan.yaml`` into a :class:`~orchestrator.plan.models.Plan`; every problem at once.

One pass collects all that can be known before a run — YAML syntax, types,
unknown keys, duplicate ids, unknown or cyclic dependencies, deliverables
outside the repository, unknown agents and roles, the repository and its base
branch — and raises one :class:`~orchestrator.errors.PlanError` whose problems
each carry ``file:line:col`` and the dotted field (``teams[2].depends_on``).

Positions come from ``yaml.compose``: every pydantic error location and every
semantic finding is mapped back to the YAML node it names. The loader writes
nothing anywhere.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from orchestrator.errors import PlanError, Problem
from orchestrator.plan.graph import find_cycle
from orchestrator.plan.models import BUILTIN_AGENT_KINDS, ID_PATTERN, Plan

MAX_PLAN_BYTES = 2 * 1024 * 1024
"""Plans larger than this are refused unread (2 MiB is thousands of teams)."""
MAX_NODES = 1 << 20
"""Refuse YAML whose aliases expand to more nodes than this (a 'billion laughs' plan).
A plan without aliases cannot reach it within :data:`MAX_PLAN_BYTES` (a node takes at
least two bytes), so it bounds what aliases add, never a large plain plan."""
RESERVED_TEAM_IDS = frozenset({"integration", "run"})
"""Team ids taken by orchestrate's own branches ``orchestrate/<run>/integration`` and
``orchestrate/<run>/run`` (shared isolation); compared without case."""
_GLOB_CHARS = re.compile(r"[*?\[]")
_ID_RE = re.compile(ID_PATTERN)
Loc = tuple[str | int, ...]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


@dataclass(frozen=True)
class LoadedPlan:
    """A validated plan and where it came from."""

    plan: Plan
    path: Path  # the plan file, absolute
    text: str  # the YAML exactly as read (copied into the run)
    sha256: str  # of text
    repo_root: Path  # absolute, resolved git work tree root


def load_plan(path: Path, *, check_repo: bool = True) -> LoadedPlan:
    """Read and validate the plan at ``path``; :class:`PlanError` lists every problem."""
    data = read_plan_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(
            [Problem(str(path), "", f"not UTF-8 text (bad byte at offset {exc.start})")]
        ) from exc
    return load_plan_text(text, path=path, check_repo=check_repo)


def read_plan_file(path: Path, limit: int = MAX_PLAN_BYTES) -> bytes:
    """The bytes of the plan file at ``path`` (YAML or Markdown), at most ``limit`` of them.

    Only a regular file is read, and never more than ``limit + 1`` bytes: a FIFO would
    block forever and ``/dev/zero`` never ends. The file is opened without blocking so
    that even a FIFO with no writer is refused at once.
    """
    shown = str(path)

    def refuse(message: str) -> PlanError:
        return PlanError([Problem(shown, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError as exc:
        raise refuse("is a directory, not a plan file") from exc
    except FileNotFoundError as exc:
        raise refuse("no such file") from exc
    except OSError as exc:
        raise refuse(f"cannot read the plan: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise refuse("is a directory, not a plan file")
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "a special file"
            )
            raise refuse(f"is {kind}, not a regular file: a plan is read from a file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise refuse(f"cannot read the plan: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise refuse(f"the plan is larger than {limit} bytes")
    return b"".join(chunks)


def load_plan_text(text: str, *, path: Path, check_repo: bool = True) -> LoadedPlan:
    """Validate plan ``text`` as if read from ``path`` (relative paths resolve beside it)."""
    shown = str(path)
    abspath = path.absolute()
    if len(text) > MAX_PLAN_BYTES:
        raise PlanError([Problem(shown, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")])
    node, data = _parse_yaml(text, shown)
    checker = _Checker(shown, node, abspath.parent, check_repo)
    plan = checker.run(data)
    if checker.problems or plan is None:
        raise PlanError(checker.sorted_problems())
    return LoadedPlan(
        plan=plan,
        path=abspath,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        repo_root=checker.repo_root,
    )


# --- YAML -------------------------------------------------------------------


def _parse_yaml(text: str, shown: str) -> tuple[yaml.Node, Any]:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PlanError([Problem(shown, "", "not a text file (NUL byte)", line)])
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise PlanError([Problem(shown, "", "the plan is empty", 1, 1)])
            problems = list(_structure_problems(node, shown))
            if problems:
                raise PlanError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        msg = _one_line(f"invalid YAML: {msg}")
        problem = Problem(shown, "", msg)
        if mark is not None:
            problem = Problem(shown, "", msg, mark.line + 1, mark.column + 1)
        raise PlanError([problem]) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        msg = f"invalid YAML: character {char!r} is not allowed"
        raise PlanError([Problem(shown, "", msg, line, col)]) from exc
    except yaml.YAMLError as exc:
        raise PlanError([Problem(shown, "", _one_line(f"invalid YAML: {exc}"))]) from exc
    except RecursionError as exc:
        raise PlanError([Problem(shown, "", "invalid YAML: nested too deeply")]) from exc
    return node, data


def _structure_problems(root: yaml.Node, shown: str) -> Iterator[Problem]:
    """Duplicate mapping keys (YAML keeps the last silently), alias bombs, recursive aliases
    and NUL bytes written as escapes (``"\\0"``: no command, environment or path takes one)."""

    def at(node: yaml.Node, message: str) -> Problem:
        return Problem(shown, "", message, node.start_mark.line + 1, node.start_mark.column + 1)

    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being sized: meeting one again is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order, iterative: a deep plan cannot exhaust the recursion limit
        node, expanded = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            if "\x00" in node.value:
                yield at(node, "a NUL byte ('\\0') is not allowed in a plan")
            continue
        children: list[yaml.Node] = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if not expanded:
            open_.add(id(node))
            stack.append((node, True))
            for c in children:
                if id(c) in open_:
                    yield at(
                        c, "a YAML alias refers to a node that contains it (a recursive alias)"
                    )
                    return
                if id(c) not in sizes:
                    stack.append((c, False))
            continue
        open_.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
        if sizes[id(node)] > MAX_NODES:
            yield at(node, f"the plan expands to more than {MAX_NODES} YAML nodes (aliases?)")
            return
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        yield at(key, f"duplicate key {key.value!r}")
                    seen.add(key.value)


def _child(node: yaml.Node | None, step: str | int, *, key: bool = False) -> yaml.Node | None:
    """The node under ``node`` at ``step`` (a mapping key or a sequence index)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                return k if key else v
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(step, int)
        and 0 <= step < len(node.value)
    ):
        return node.value[step]  # type: ignore[no-any-return]
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def _one_line(text: str) -> str:
    """``text`` with every line break and control character escaped: one problem, one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _where(loc: Loc) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- checks -------------------------------------------------------------------


class _Checker:
    """Collects problems; each is located by the loc path of the field it names."""

    def __init__(self, shown: str, root: yaml.Node, plan_dir: Path, check_repo: bool) -> None:
        self.shown = shown
        self.root = root
        self.plan_dir = plan_dir
        self.check_repo = check_repo
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, int | None, int | None]] = set()
        self.repo_root = plan_dir
        self._roles: dict[str, str | None] = {}
        self._resolved_root: Path | None = None

    def add(self, loc: Loc, message: str, *, key: bool = False, where: Loc | None = None) -> None:
        """Record a problem at the YAML node of ``loc`` (its key node if ``key``)."""
        node: yaml.Node | None = self.root
        for i, step in enumerate(loc):
            nxt = _child(node, step, key=key and i == len(loc) - 1)
            if nxt is None:
                break
            node = nxt
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        shown_where = _where(loc if where is None else where)
        ident = (shown_where, line, col)
        if ident in self._seen:  # one problem per place: union types report each branch
            return
        self._seen.add(ident)
        self.problems.append(
            Problem(self.shown, _one_line(shown_where), _one_line(message), line, col)
        )

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0))

    def run(self, data: Any) -> Plan | None:
        if not isinstance(data, dict):
            kind = type(data).__name__ if data is not None else "nothing"
            self.add((), f"a plan is a mapping of keys (version, name, teams, ...), not {kind}")
            return None
        plan = self._validate_types(data)
        self._check_repo(data)
        teams = data.get("teams")
        if isinstance(teams, list):
            self._check_teams(teams)
        self._check_agents(data)
        self._check_templates(data)
        self._check_copies(data)
        return plan

    # pydantic ----------------------------------------------------------------

    def _validate_types(self, data: dict[str, Any]) -> Plan | None:
        from pydantic import ValidationError

        try:
            return Plan.model_validate(data)
        except ValidationError as exc:
            errors = [(self._real_loc(tuple(e["loc"])), e) for e in exc.errors(include_url=False)]
            # Our own messages first: one problem is kept per place, and for a union (a command
            # is a string or an argv) "an argv list needs a program" beats "not a string".
            errors.sort(key=lambda le: le[1]["type"] != "value_error")
            locs = {loc for loc, _ in errors}
            for loc, err in errors:
                if err["type"] == "too_short" and err.get("input"):
                    continue  # "at least 1 item after validation": its items' errors say more
                if err["type"] not in ("missing", "extra_forbidden") and any(
                    other[: len(loc)] == loc and len(other) > len(loc) for other in locs
                ):
                    continue  # a union branch's shallow error; a deeper one says more
                self._add_pydantic(loc, err)
            return None

    def _add_pydantic(self, loc: Loc, err: Any) -> None:
        kind = err["type"]
        msg: str = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            name = str(loc[-1]) if loc else "?"
            options = _field_names(loc[:-1])
            self.add(loc, f"unknown key {name!r}{_did_you_mean(name, options)}", key=True)
            return
        if kind == "missing":
            self.add(loc[:-1], f"missing required key {loc[-1]!r}", where=loc)
            return
        if kind == "string_pattern_mismatch":
            msg = (
                f"{_short(err.get('input'))} may use only letters, digits, '-' and '_'"
                " (and start with a letter or digit)"
            )
        elif kind in (
            "literal_error",
            "int_parsing",
            "int_type",
            "string_type",
            "float_parsing",
            "greater_than",
            "greater_than_equal",
            "less_than_equal",
            "bool_parsing",
            "too_short",
            "string_too_long",
        ):
            msg = f"{msg} (got {_short(err.get('input'))})"
        self.add(loc, msg)

    def _real_loc(self, loc: Loc) -> Loc:
        """Drop pydantic's union-branch labels (``'str'``, ``'tuple[str, ...]'``) from ``loc``."""
        node: yaml.Node | None = self.root
        out: list[str | int] = []
        for step in loc:
            nxt = _child(node, step)
            if nxt is None and isinstance(node, yaml.SequenceNode | yaml.ScalarNode):
                continue  # a branch label, not a place in the YAML
            if (
                nxt is None
                and isinstance(node, yaml.MappingNode)
                and isinstance(step, str)
                and ("[" in step or step in ("str", "int", "float", "none"))
            ):
                continue
            out.append(step)
            node = nxt
        return tuple(out)

    # the repository ------------------------------------------------------------

    def _check_repo(self, data: dict[str, Any]) -> None:
        repo = data.get("repo", ".")
        if not isinstance(repo, str):
            return  # a type error pydantic reported
        target = (self.plan_dir / repo).resolve()
        self.repo_root = target
        if not self.check_repo:
            return
        if not target.is_dir():
            self.add(("repo",), f"{repo!r}: no such directory ({target})")
            return
        top = _git(target, "rev-parse", "--show-toplevel")
        if top is None and shutil.which("git") is None:
            self.add(("repo",), "git is not installed (no 'git' on PATH)")
            return
        if top is None:
            self.add(("repo",), f"{repo!r} is not a git repository ({target})")
            return
        self.repo_root = Path(top).resolve()
        blocker = _blocking_ref(self.repo_root)
        if blocker is not None:
            self.add(
                ("repo",),
                f"the repository has a ref {blocker!r}: it blocks the branches "
                f"{blocker.removeprefix('refs/heads/')}/<run>/<team> that every run makes; "
                "rename or delete it "
                f"(git branch -m {blocker.removeprefix('refs/heads/')} NEW-NAME)",
            )
        base = data.get("base")
        if base is None:
            if _git(self.repo_root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") is None:
                self.add(("repo",), "the repository has no commit yet: commit something first")
        elif isinstance(base, str) and (
            base.startswith("-")
            or _git(self.repo_root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
            is None
        ):
            self.add(("base",), f"no branch or commit {base!r} in {self.repo_root}")

    # teams -----------------------------------------------------------------------

    def _check_teams(self, teams: list[Any]) -> None:
        ids: dict[str, int] = {}
        folded: dict[str, int] = {}
        for i, team in enumerate(teams):
            if isinstance(team, dict) and isinstance(team.get("id"), str):
                tid = team["id"]
                if tid in ids:
                    self.add(
                        ("teams", i, "id"), f"duplicate team id {tid!r} (also teams[{ids[tid]}])"
                    )
                    continue
                ids[tid] = i
                if tid.casefold() in RESERVED_TEAM_IDS:
                    self.add(
                        ("teams", i, "id"),
                        f"team id {tid!r} is reserved: orchestrate names its own branch "
                        f"orchestrate/<run>/{tid.casefold()}; choose another id",
                    )
                elif tid.casefold() in folded:
                    other = folded[tid.casefold()]
                    self.add(
                        ("teams", i, "id"),
                        f"team id {tid!r} differs from teams[{other}] ({teams[other]['id']!r}) "
                        "only in case: their branches and folders collide on a "
                        "case-insensitive file system",
                    )
                folded.setdefault(tid.casefold(), i)
        deps: dict[str, list[str]] = {}
        for i, team in enumerate(teams):
            if not isinstance(team, dict):
                continue
            tid = team.get("id")
            found: list[str] = []
            raw_deps = team.get("depends_on", [])
            if isinstance(raw_deps, list):
                for j, dep in enumerate(raw_deps):
                    if not isinstance(dep, str) or not _ID_RE.match(dep):
                        continue  # pydantic reported it
                    if dep not in ids:
                        self.add(
                            ("teams", i, "depends_on", j),
                            f"unknown team {dep!r}{_did_you_mean(dep, list(ids))}",
                            where=("teams", i, "depends_on"),
                        )
                    elif dep == tid:
                        self.add(
                            ("teams", i, "depends_on", j),
                            f"team {tid!r} depends on itself",
                            where=("teams", i, "depends_on"),
                        )
                    else:
                        found.append(dep)
            if isinstance(tid, str) and ids.get(tid) == i:
                deps[tid] = found
            self._check_deliverables(i, team.get("deliverables"))
            role = team.get("role")
            if isinstance(role, str):
                self._check_role(("teams", i, "role"), role)
        cycle = find_cycle(deps)
        if cycle:
            first = ids[cycle[0]]
            j = list(teams[first].get("depends_on", [])).index(cycle[1])
            self.add(
                ("teams", first, "depends_on", j),
                "dependency cycle: " + " -> ".join(cycle),
                where=("teams", first, "depends_on"),
            )

    def _check_role(self, loc: Loc, role: str) -> None:
        from orchestrator.errors import RoleError
        from orchestrator.plan.roles import resolve_role

        if role not in self._roles:  # many teams share a role: resolve each once
            try:
                resolve_role(role, self.repo_root)
                self._roles[role] = None
            except RoleError as exc:
                self._roles[role] = str(exc)
        problem = self._roles[role]
        if problem is not None:
            self.add(loc, problem)

    def _check_deliverables(self, i: int, deliverables: Any) -> None:
        if not isinstance(deliverables, list):
            return
        if self._resolved_root is None:  # once: a plan may have thousands of deliverables
            self._resolved_root = self.repo_root.resolve()
        root = self._resolved_root
        for j, item in enumerate(deliverables):
            if not isinstance(item, str):
                continue
            loc: Loc = ("teams", i, "deliverables", j)
            problem = _deliverable_problem(item, root, self.check_repo)
            if problem:
                self.add(loc, problem)

    # agents ------------------------------------------------------------------------

    def _check_agents(self, data: dict[str, Any]) -> None:
        agents = data.get("agents") or {}
        names = set(BUILTIN_AGENT_KINDS)
        if isinstance(agents, dict):
            for name, cfg in agents.items():
                names.add(str(name))
                if not isinstance(cfg, dict):
                    continue
                kind = cfg.get("kind")
                if kind is None and name not in BUILTIN_AGENT_KINDS:
                    self.add(
                        ("agents", name),
                        f"agent {name!r} is not a built-in kind: set kind: "
                        f"(one of {', '.join(BUILTIN_AGENT_KINDS)})",
                    )
                if (kind == "command" or name == "command") and not cfg.get("command"):
                    self.add(("agents", name), "an agent of kind 'command' needs command:")
        options = sorted(names)

        def check(loc: Loc, value: Any) -> None:
            if isinstance(value, str) and value not in names:
                self.add(
                    loc,
                    f"unknown agent {value!r}{_did_you_mean(value, options)}: "
                    f"a built-in kind ({', '.join(BUILTIN_AGENT_KINDS)}) or an agents: entry",
                )

        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            check(("defaults", "agent"), defaults.get("agent"))
        teams = data.get("teams")
        for i, team in enumerate(teams if isinstance(teams, list) else []):
            if isinstance(team, dict):
                check(("teams", i, "agent"), team.get("agent"))
        integration = data.get("integration")
        if isinstance(integration, dict):
            check(("integration", "resolver"), integration.get("resolver"))
            check(("integration", "fixer"), integration.get("fixer"))

    def _check_templates(self, data: dict[str, Any]) -> None:
        places: list[tuple[Loc, Any]] = [(("prompt_template",), data.get("prompt_template"))]
        teams = data.get("teams")
        for i, team in enumerate(teams if isinstance(teams, list) else []):
            if isinstance(team, dict):
                places.append((("teams", i, "prompt_template"), team.get("prompt_template")))
        for loc, value in places:
            if isinstance(value, str):
                problem = _template_problem(value, self.plan_dir, self.repo_root)
                if problem:
                    self.add(loc, problem)

    def _check_copies(self, data: dict[str, Any]) -> None:
        """``copy:`` (top level and per team): paths of the user's checkout, inside the repo."""
        places: list[tuple[Loc, Any]] = [(("copy",), data.get("copy"))]
        teams = data.get("teams")
        for i, team in enumerate(teams if isinstance(teams, list) else []):
            if isinstance(team, dict):
                places.append((("teams", i, "copy"), team.get("copy")))
        for loc, items in places:
            for j, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, str):
                    problem = _deliverable_problem(item, self.repo_root, self.check_repo)
                    if problem:
                        self.add((*loc, j), problem.replace("deliverable", "copied file"))


MAX_TEMPLATE_BYTES = 256 * 1024
"""A prompt template larger than this is refused: it is read whole into every prompt."""


def _template_problem(value: str, plan_dir: Path, repo_root: Path | None) -> str | None:
    """Why ``prompt_template`` ``value`` cannot be used, or ``None``.

    Its text goes to the agent's LLM in every prompt, so it must be a regular file of a
    sane size inside the plan's folder or the repository: a plan from someone else must
    not send ``~/.ssh/id_rsa`` or ``/etc/passwd`` to a model, nor block on a FIFO.
    """
    path = (plan_dir / value).resolve()
    roots = [plan_dir.resolve(), *([repo_root.resolve()] if repo_root is not None else [])]
    if not any(path == root or root in path.parents for root in roots):
        return (
            f"template {_short(value)} is outside the plan's folder and the repository: "
            "its text would be sent to the agent's model"
        )
    try:
        info = path.stat()
    except OSError:
        return f"no such template file {value!r} (relative to the plan)"
    if not stat.S_ISREG(info.st_mode):
        return f"template {_short(value)} is not a regular file"
    if info.st_size > MAX_TEMPLATE_BYTES:
        return f"template {_short(value)} is larger than {MAX_TEMPLATE_BYTES} bytes"
    return None


def _deliverable_problem(item: str, root: Path, check_fs: bool) -> str | None:
    """Why deliverable ``item`` is not a path or glob inside the repository, or ``None``."""
    if not item.strip():
        return "a deliverable must not be empty"
    if "\x00" in item:
        return "a deliverable must not contain a NUL byte"
    if item.startswith(("/", "\\", "~")) or PureWindowsPath(item).drive:
        return f"{_short(item)} is an absolute path: deliverables are relative to the repository"
    parts = PurePosixPath(item.replace("\\", "/")).parts
    if ".." in parts:
        return f"{_short(item)} leads outside the repository ('..')"
    if parts and parts[0] in (".git", ".orchestrate"):
        return f"{_short(item)} is inside {parts[0]}/, which orchestrate manages"
    if not check_fs:
        return None
    literal: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        literal.append(part)
    base = root  # resolved already (the repository's top level)
    try:
        resolved = root.joinpath(*literal).resolve()
    except (OSError, RuntimeError):
        return f"{_short(item)}: cannot resolve the path (a symlink loop?)"
    if not resolved.is_relative_to(base):
        return f"{_short(item)} leads outside the repository through a symlink ({resolved})"
    return None


def _blocking_ref(repo: Path) -> str | None:
    """A ref named ``refs/heads/orchestrate`` (a branch or packed ref), which makes git refuse
    to create any ``orchestrate/...`` branch, or ``None``."""
    from orchestrator.gitops import BRANCH_PREFIX

    ref = f"refs/heads/{BRANCH_PREFIX}"
    found = _git(repo, "for-each-ref", "--format=%(refname)", ref)
    return ref if found and ref in found.splitlines() else None


def _git(cwd: Path, *args: str) -> str | None:
    """Output of a read-only git command, or ``None`` if it failed."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _field_names(loc: Loc) -> list[str]:
    """The keys allowed in the mapping at ``loc`` (for 'did you mean')."""
    import typing

    from pydantic import BaseModel

    model: Any = Plan
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(step))
        if field is None:  # a dict key such as agents.<name>
            continue
        todo = [field.annotation]
        model = None
        while todo:
            ann = todo.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                model = ann
                break
            todo.extend(typing.get_args(ann))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
