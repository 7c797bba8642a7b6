#!/bin/sh
# Create a private virtualenv with Prefect 3 for bench/throughput.py's Prefect peer.
# Prefect never enters orchestrate's own environment: it lives in its own venv.
#   sh bench/prefect_env.sh            -> bench/.venv-prefect
#   PREFECT_VENV=/tmp/pf sh bench/prefect_env.sh
set -eu
VENV="${PREFECT_VENV:-$(dirname "$0")/.venv-prefect}"
PY="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import prefect, prefect.server.api.server, sys; sys.exit(0 if prefect.__version__.startswith("3.") else 1)' 2>/dev/null; then
    echo "prefect venv ready: $VENV ($("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)'))"
    exit 0
fi
"$PY" -m venv "$VENV"
# The repository's pip constraints (if any) pin orchestrate's own dependencies; Prefect
# must resolve on its own, so they are switched off for this venv only.
PIP_CONSTRAINT= "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# fastapi >= 0.150 dropped Body(min_items=...), which prefect 3.8's server still uses
# (TypeError at import of prefect.server); keep it inside prefect's own range.
PIP_CONSTRAINT= "$VENV/bin/pip" install -q 'prefect>=3,<4' 'fastapi>=0.139,<0.150' 2>&1 \
    | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import prefect.server.api.server' \
    || { echo "prefect installed but its server does not import" >&2; exit 1; }
echo "prefect venv ready: $VENV ($("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)'))"
