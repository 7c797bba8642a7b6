"""Plan data + comments -> plan.yaml text, a comment beside every guessed value.

PyYAML writes no comments, so this writer lays the (small, known) shape of a
plan out itself and lets PyYAML quote each scalar. The result is read back and
compared with the data; should the two ever differ, the plain PyYAML dump is
used instead (the comments are lost, the plan is right).
"""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]
_FLOW_LISTS = {"depends_on"}


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    text = text.removesuffix("\n").removesuffix("\n...").strip()
    return text


def _comment(text: str | None) -> str:
    return f"  # {' '.join(text.split())}" if text else ""


def _string(value: str, indent: str, comment: str) -> list[str]:
    if (
        "\n" in value
        and not value.startswith((" ", "\t"))
        and all(ln == ln.rstrip() for ln in value.split("\n"))
    ):
        body = [f"{indent}  {ln}" if ln else "" for ln in value.split("\n")]
        return [f"|-{comment}", *body]
    return [f"{_scalar(value)}{comment}"]


def _value(key: str, value: Any, indent: str, path: Path_, comments: dict[Path_, str]) -> list[str]:
    """Lines for ``key: value`` at ``indent``."""
    comment = _comment(comments.get(path))
    if isinstance(value, dict):
        out = [f"{indent}{key}:{comment}"]
        for k, v in value.items():
            out.extend(_value(k, v, indent + "  ", (*path, k), comments))
        return out
    if isinstance(value, list | tuple):
        if key in _FLOW_LISTS or not value:
            return [f"{indent}{key}: [{', '.join(_scalar(v) for v in value)}]{comment}"]
        out = [f"{indent}{key}:{comment}"]
        for j, item in enumerate(value):
            item_comment = _comment(comments.get((*path, j)))
            if isinstance(item, str):
                first, *rest = _string(item, indent + "  ", item_comment)
                out.extend([f"{indent}  - {first}", *rest])
            else:
                out.append(f"{indent}  - {_scalar(item)}{item_comment}")
        return out
    if isinstance(value, str):
        first, *rest = _string(value, indent, comment)
        return [f"{indent}{key}: {first}", *rest]
    return [f"{indent}{key}: {_scalar(value)}{comment}"]


def to_yaml(data: dict[str, Any], comments: dict[Path_, str], header: list[str]) -> str:
    """The plan as YAML text: ``header`` lines as comments on top, then the data."""
    out = [f"# {h}".rstrip() for h in header]
    for key, value in data.items():
        if key == "teams":
            out.append("teams:")
            for i, team in enumerate(value):
                team_lines: list[str] = []
                for k, v in team.items():
                    team_lines.extend(_value(k, v, "    ", ("teams", i, k), comments))
                team_lines[0] = "  - " + team_lines[0][4:]
                out.extend(team_lines)
        else:
            out.extend(_value(key, value, "", (key,), comments))
    text = "\n".join(out) + "\n"
    try:
        same = yaml.safe_load(text) == data
    except yaml.YAMLError:
        same = False
    if not same:  # never ship a plan that does not say what we meant
        body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        text = "\n".join(f"# {h}".rstrip() for h in header) + "\n" + body
    return text
