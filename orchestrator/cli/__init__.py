"""The ``orchestrate`` command line.

One typer app; each ``_*.py`` module beside this one registers the commands of
one area on it. Heavy imports (pydantic, redis, anyio, rich) happen inside the
command functions, so ``orchestrate --help`` stays fast. Every
:class:`~orchestrator.errors.OrchestrateError` reaches the user as one line
(one line per problem for a bad plan) and its exit code; never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

app = typer.Typer(
    name="orchestrate",
    help="Run teams of AI coding agents from one plan file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from orchestrator import __version__

        typer.echo(f"orchestrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run teams of AI coding agents from one plan file.

    Exit codes: 0 done (and the tests passed), 1 the run failed, 2 bad usage or
    a bad plan, 130 interrupted.
    """


# Registration order is the order of `orchestrate --help`.
from orchestrator.cli import _plan, _run, _resume, _watch, _report, _clean, _import, _server, _ui  # noqa: E402, F401, I001
from orchestrator.cli import _hosts  # noqa: E402, F401
from orchestrator.cli import _gates  # noqa: E402, F401


def main() -> None:
    """Entry point of the ``orchestrate`` script."""
    from orchestrator.errors import OrchestrateError, PlanError

    try:
        app()
    except PlanError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.stderr.write(f"orchestrate: the plan has {len(exc.problems)} problem(s)\n")
        sys.exit(exc.exit_code)
    except OrchestrateError as exc:
        sys.stderr.write(f"orchestrate: error: {exc}\n")
        sys.exit(exc.exit_code)
    except ValueError as exc:  # pydantic's ValidationError: a setting no command checked first
        pydantic = sys.modules.get("pydantic")  # not imported here: `--help` stays fast
        if pydantic is None or not isinstance(exc, pydantic.ValidationError):
            raise
        from orchestrator.cli._common import settings_error

        sys.stderr.write(f"orchestrate: error: {settings_error(exc)}\n")
        sys.exit(2)
    except BrokenPipeError:  # `orchestrate runs | head`: the reader has gone, nothing to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as exc:  # a file or folder in the way (a damaged state folder, a bad path)
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"orchestrate: error: {exc.strerror or exc}{where}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("orchestrate: interrupted\n")
        sys.exit(130)
