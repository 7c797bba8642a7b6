"""The live web dashboard (``orchestrate ui``): Starlette on uvicorn, Jinja2, our own script.

Layers, each importing only those above it::

    security.py   who may see and act (loopback, token, CSRF)
    dag.py        the team DAG as SVG
    views.py      what the pages show, read from the store and disk, redacted
    streams.py    Server-Sent Events from the run's Redis streams (XREAD BLOCK)
    app.py        the routes, templates/ and static/
    server.py     binding and serving (uvicorn), beside a run or alone

Only ``orchestrator.cli._ui`` imports this package, when the dashboard is asked
for: Starlette and uvicorn are the optional ``web`` extra.
"""
