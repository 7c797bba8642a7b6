"""Role profiles: Markdown files with YAML front matter (``name``, ``description``).

The format is that of Claude Code's subagent files, so a repository's
``.claude/agents/*.md`` work as roles unchanged::

    ---
    name: backend-architect
    description: Designs and builds server-side services.
    ---
    You are a backend architect working on one team's task ...

A role named ``X`` is looked up, first found wins, in the repository's
``.claude/agents/``, the repository's ``agents/``, then the built-in
profiles. Within a folder a file ``X.md`` wins over another file whose front
matter says ``name: X``. Other front-matter keys (``tools``, ``model``, ...)
are allowed and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import RoleError
from orchestrator.resources import roles_dir

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
_MAX_PROFILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class RoleProfile:
    """One role: its name, one-line description, standing instructions, and file."""

    name: str
    description: str
    body: str
    path: Path


def role_dirs(repo_root: Path) -> list[Path]:
    """The folders searched for roles, first wins."""
    dirs = [repo_root / ".claude" / "agents", repo_root / "agents"]
    try:
        dirs.append(roles_dir())
    except FileNotFoundError:
        pass
    return dirs


def parse_profile(path: Path) -> RoleProfile:
    """Read one profile file; :class:`RoleError` if it is not Markdown with front matter."""
    import yaml

    try:
        raw = path.read_bytes()[: _MAX_PROFILE_BYTES + 1]
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoleError(f"role profile {path}: cannot read it ({exc})") from exc
    if len(raw) > _MAX_PROFILE_BYTES:
        raise RoleError(f"role profile {path}: larger than {_MAX_PROFILE_BYTES // 1024} KiB")
    m = _FRONT_MATTER.match(text)
    if m is None:
        raise RoleError(f"role profile {path}: no YAML front matter (--- name/description ---)")
    try:
        meta = yaml.load(m.group(1), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RoleError(f"role profile {path}: front matter is not valid YAML") from exc
    if not isinstance(meta, dict):
        raise RoleError(f"role profile {path}: front matter must be a mapping")
    name = meta.get("name", path.stem)
    description = meta.get("description", "")
    if not isinstance(name, str) or not name.strip():
        raise RoleError(f"role profile {path}: 'name' must be a non-empty string")
    if not isinstance(description, str):
        raise RoleError(f"role profile {path}: 'description' must be a string")
    return RoleProfile(
        name=name.strip(), description=description.strip(), body=m.group(2).strip(), path=path
    )


def _find_in(folder: Path, name: str) -> Path | None:
    if not folder.is_dir():
        return None
    direct = folder / f"{name}.md"
    if direct.is_file():
        return direct
    for candidate in sorted(folder.glob("*.md")):
        try:
            if parse_profile(candidate).name == name:
                return candidate
        except RoleError:
            continue
    return None


def available_roles(repo_root: Path) -> list[str]:
    """Every role name that :func:`resolve_role` would find for this repository."""
    names: set[str] = set()
    for folder in role_dirs(repo_root):
        if folder.is_dir():
            for candidate in folder.glob("*.md"):
                names.add(candidate.stem)
    return sorted(names)


def builtin_roles() -> list[str]:
    """The names of the role profiles shipped with orchestrate."""
    try:
        folder = roles_dir()
    except FileNotFoundError:
        return []
    return sorted(p.stem for p in folder.glob("*.md"))


def resolve_role(name: str, repo_root: Path) -> RoleProfile:
    """The profile of role ``name`` for a plan whose repository is ``repo_root``.

    Raises :class:`RoleError` naming the folders searched (and a close match)
    when there is none, or when the file found is malformed.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise RoleError(f"role {name!r}: a role is a profile name such as 'backend-architect'")
    for folder in role_dirs(repo_root):
        found = _find_in(folder, name)
        if found is not None:
            return parse_profile(found)
    import difflib

    close = difflib.get_close_matches(name, available_roles(repo_root), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RoleError(
        f"unknown role {name!r}{hint}: "
        f"no {name}.md in .claude/agents/, agents/ or the built-in roles"
    )
