"""orchestrate: run teams of AI coding agents from one plan file.

The public surface is the ``orchestrate`` command and the plan format
(``plan.yaml`` version 1, see :mod:`orchestrator.plan`). Everything else in
this package is internal and may change between releases.
"""

__version__ = "0.1.0"
