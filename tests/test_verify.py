"""Deliverables and checks: what decides whether a team is done."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.verify import find_deliverables, run_check, run_checks


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_present_file_is_found_with_its_hash(tmp_path: Path) -> None:
    """A deliverable that exists and is non-empty counts, and its content hash is recorded."""
    _write(tmp_path, "src/app.py", "print('hi')\n")
    report = find_deliverables(tmp_path, ["src/app.py"])
    assert report.ok
    assert report.found == {"src/app.py": hashlib.sha256(b"print('hi')\n").hexdigest()}


def test_missing_and_empty_files_are_problems(tmp_path: Path) -> None:
    """A missing file and an empty file both fail the team, each named in the feedback."""
    _write(tmp_path, "empty.txt", "")
    report = find_deliverables(tmp_path, ["nope.py", "empty.txt"])
    assert not report.ok
    assert report.found == {"nope.py": None, "empty.txt": None}
    assert report.problems == ("nope.py: missing", "empty.txt: empty")
    assert report.missing == ["nope.py", "empty.txt"]


def test_glob_needs_one_non_empty_match(tmp_path: Path) -> None:
    """A glob deliverable is met by any non-empty matching file; every match is hashed."""
    _write(tmp_path, "migrations/001.sql", "create table a();")
    _write(tmp_path, "migrations/002.sql", "create table b();")
    report = find_deliverables(tmp_path, ["migrations/*.sql", "docs/**/*.md"])
    assert set(report.found) == {"migrations/001.sql", "migrations/002.sql", "docs/**/*.md"}
    assert report.found["docs/**/*.md"] is None
    assert report.problems == ("docs/**/*.md: no file matches",)


def test_glob_with_only_empty_matches_fails(tmp_path: Path) -> None:
    """Empty files do not satisfy a glob deliverable."""
    _write(tmp_path, "a/x.txt", "")
    report = find_deliverables(tmp_path, ["a/*.txt"])
    assert report.problems == ("a/*.txt: every matching file is empty",)


def test_path_escaping_the_worktree_is_refused(tmp_path: Path) -> None:
    """A deliverable may not point outside the team's worktree, even through a symlink."""
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "link.txt").symlink_to(outside)
    report = find_deliverables(work, ["../outside.txt", "link.txt"])
    assert report.found == {"../outside.txt": None, "link.txt": None}
    assert all("outside the worktree" in p for p in report.problems)


def test_leading_slash_means_repo_relative(tmp_path: Path) -> None:
    """`/src/x.js` as coordination plans write it means src/x.js in the worktree."""
    _write(tmp_path, "src/x.js", "x")
    assert find_deliverables(tmp_path, ["/src/x.js"]).ok


def test_checks_all_run_and_report_output(tmp_path: Path) -> None:
    """Every check runs even after one fails, so the retry prompt lists every failure."""
    marker = tmp_path / "ran"
    checks = [
        "echo first-out; exit 3",
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x'); print('second')"],
        "echo ok",
    ]
    results = anyio.run(lambda: run_checks(tmp_path, checks, time_limit=20))
    assert [r.passed for r in results] == [False, True, True]
    assert results[0].exit_code == 3
    assert "first-out" in results[0].output_tail
    assert results[0].describe() == "check `echo first-out; exit 3` failed (exit 3)"
    assert marker.exists()
    assert "second" in results[1].output_tail


def test_check_runs_in_the_worktree(tmp_path: Path) -> None:
    """A check's working directory is the team's worktree."""
    result = anyio.run(lambda: run_check(tmp_path, "pwd", time_limit=20))
    assert Path(result.output_tail.strip()).resolve() == tmp_path.resolve()


def test_check_output_is_a_bounded_tail(tmp_path: Path) -> None:
    """A chatty check keeps only the end of its output (the part that says what broke)."""
    cmd = [sys.executable, "-c", "print('x' * 100000); print('THE END')"]
    result = anyio.run(lambda: run_check(tmp_path, cmd, time_limit=20, tail_bytes=500))
    assert len(result.output_tail) <= 500
    assert "THE END" in result.output_tail


def test_hanging_check_is_killed_at_its_limit(tmp_path: Path) -> None:
    """A check that hangs fails at its time limit and leaves no process behind."""
    pidfile = tmp_path / "pid"
    script = (
        "import os, subprocess, sys, time;"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid));"
        "time.sleep(60)"
    )
    started = time.monotonic()
    result = anyio.run(lambda: run_check(tmp_path, [sys.executable, "-c", script], time_limit=1.0))
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.passed
    assert "timed out" in result.describe()
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the check's child process survived its timeout")


def test_missing_executable_is_a_failed_check(tmp_path: Path) -> None:
    """A check whose program does not exist fails with a readable reason, not a crash."""
    result = anyio.run(lambda: run_check(tmp_path, ["no-such-program-xyz"], time_limit=5))
    assert not result.passed
    assert result.error
    assert "could not run" in result.describe()


def test_a_cancelled_check_leaves_no_process_behind(tmp_path: Path) -> None:
    """A run stopped (Ctrl-C) while a check runs: the check's whole process group goes,
    its child included, not only the process it started."""
    pidfile = tmp_path / "pid"
    script = (
        "import os, subprocess, sys, time;"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid));"
        "time.sleep(60)"
    )

    async def stopped_midway() -> None:
        with anyio.move_on_after(1.5):
            await run_check(tmp_path, [sys.executable, "-c", script], time_limit=60)

    anyio.run(stopped_midway)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the cancelled check's child process survived")
