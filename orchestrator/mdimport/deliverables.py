"""Deliverables: paths in code spans, bare paths, and lines that are acceptance instead."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from orchestrator.mdimport.parse import Line

if TYPE_CHECKING:
    from orchestrator.mdimport.interpret import Unit

_KNOWN_FILES = {
    "dockerfile",
    "makefile",
    "procfile",
    "justfile",
    "gemfile",
    "rakefile",
    "license",
    "readme",
}
# extensions of files people ask for (a name like `fmt.Println` or `example.com` is none)
_EXTENSIONS = frozenset(
    re.findall(
        r"\S+",
        "py pyi ipynb js mjs cjs jsx ts tsx vue svelte astro go rs rb java kt kts scala swift m mm "
        "c h cc cpp cxx hpp cs fs php pl lua r jl dart ex exs erl hrl clj elm hs ml zig nim sol "
        "sh bash zsh fish ps1 bat cmd sql prisma graphql gql proto thrift avsc "
        "html htm css scss sass less md mdx rst txt adoc tex csv tsv json jsonc json5 yaml yml "
        "toml ini cfg conf env xml plist properties gradle lock mod sum tf tfvars hcl nix "
        "dockerfile svg png jpg jpeg gif webp ico pdf wasm so a dll jar war zip gz tgz",
    )
)
_PATH = re.compile(r"^[\w.@~+-][\w./@*?{}\[\]+,-]*$")


def path_of(code: str, *, strict: bool = False) -> str | None:
    """A deliverable path from a code span (leading '/' = repo root), or None.

    ``strict`` (text not in backticks): only a name with an extension or a
    well-known file name counts (``CI/CD`` is no path).
    """
    code = code.strip()
    if not code or " " in code or "://" in code or not _PATH.match(code.lstrip("/")):
        return None
    path = code.lstrip("/")
    path = path.removeprefix("./")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if ".." in path.split("/") or not path:
        return None
    ext = name.rsplit(".", 1)[-1].lower() if "." in name[1:] else ""
    has_ext = ext in _EXTENSIONS or name.lower() in _KNOWN_FILES
    if strict:
        return path if has_ext and not re.fullmatch(r"[\d.]+", name) else None
    if re.fullmatch(r"v?\d+(?:\.\d+)+", name) or re.fullmatch(r"[\d.,:/-]+", path):
        return None  # a version or a number, not a file
    if has_ext or name.startswith(".") or ("/" in path and not ext):
        return path + "**" if path.endswith("/") else path
    if "/" in path and re.fullmatch(r"[A-Za-z0-9_*?-]{1,10}", ext):
        return path  # "src/app.module.whatever": a path with an unusual extension
    return None


def line_paths(ln: Line) -> tuple[list[str], bool]:
    """(paths, guessed) a deliverable line names: its code spans, else a leading bare path."""
    paths = [p for p in (path_of(c) for c in ln.codes) if p]
    if paths:
        return paths, False
    if ln.codes or not ln.text:
        return [], False
    first = ln.text.split()[0].strip(",;")
    bare = [p for p in (path_of(w.strip(",;"), strict=True) for w in ln.text.split(",")) if p]
    if len(bare) > 1 and all(" " not in w.strip() for w in ln.text.split(",")):
        return bare, True
    p = path_of(first, strict=True)
    return ([p], True) if p else ([], False)


def deliverables_of(unit: Unit) -> tuple[list[str], list[str], list[str]]:
    """(paths, guesses, acceptance) from the unit's Deliverables / Files fields and bare paths.

    A line under a deliverables label that names no path ("Frontend builds with 0
    errors") is acceptance, not a file: a wrong path would fail a team that did its
    work. Code-span paths in the unit's prose count when nothing else names a file.
    """
    out: list[str] = []
    guesses: list[str] = []
    acceptance: list[str] = []
    for lines in unit.fields.get("deliverables", []):
        for ln in lines:
            paths, guessed = line_paths(ln)
            if not paths and ln.text:
                acceptance.append(ln.text)
            if guessed:
                guesses.append(f"{', '.join(paths)}: a path not in backticks")
            for p in paths:
                if p not in out:
                    out.append(p)
    for lines in unit.fields.get("bare", []):
        for ln in lines:
            if ln.text not in out:
                out.append(ln.text)
                guesses.append(f"{ln.text}: a bullet that is only a path")
    if not out:
        for text in unit.prose + [ln.text for v in unit.fields.get("task", []) for ln in v]:
            for code in re.findall(r"`([^`]+)`", text):
                found = path_of(code)
                if found and not ("/" in found or found.rsplit(".", 1)[-1].lower() in _EXTENSIONS):
                    continue
                if found and found not in out:
                    out.append(found)
                    guesses.append(f"{found}: a path named in the text")
    if acceptance:
        guesses.append(
            f"{len(acceptance)} line(s) under the deliverables name no path: made acceptance"
        )
    return out, guesses, acceptance
