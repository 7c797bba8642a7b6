"""orchestrate: run teams of AI coding agents from one plan file.

The public surface is the ``orchestrate`` command and the plan format
(``plan.yaml`` version 1, see :mod:`orchestrator.plan.models`). Everything else in
this package is internal and may change between releases.

Layers, highest first. A module imports from its own layer and the layers
below it, never from one above (CI checks it: ``lint-imports``, with the
contract in pyproject.toml's ``[tool.importlinter]``; ``tests/test_layers.py``
keeps this list and that contract the same, and every module in one layer; the
modules at the top beside the base layer (``supervisor``, ``forkserver``, ``ray_host``,
``ray_spawn``, ``server_watch``, ``redis_tls``) are named by live processes' command
lines or a detached actor: they stay where they are)::

    cli       cli __main__
              the command line: parses, prints, exit codes (typer lives here only)
    web       web
              the live dashboard (``orchestrate ui``, the ``web`` extra)
    mdimport  mdimport
              a Markdown coordination plan -> plan.yaml
    run       run ray_host ray_spawn
              a run: scheduling, attempts, resume and cancel, integration, its end
    views     views
              what a run looks like: the board, log lines, the report (read only)
    agents    agents supervisor forkserver
              one agent process: its argv, prompt, supervisor, output (entry points at the top)
    state     state server_watch redis_tls
              what Redis holds: statuses, runs, teams, attempts, the lease, the server
    plan      plan
              plan.yaml as models, loaded and checked; the team graph; role profiles
    base      errors paths settings redact gitops resources envs verify
              the error tree, the state folder, settings, secrets out, git, bundled files, an
              agent's environment, deliverables and checks

The run layer writes through the state layer and reads the views' report
writer; the views read the state layer only, never drive a run. The agents
layer knows nothing of runs: the executor (run) asks it for one agent process
at a time. ``state`` and ``plan`` know nothing of processes.
"""

__version__ = "0.1.0"
