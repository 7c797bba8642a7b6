#!/bin/sh
# Create a private virtualenv with Prefect 3 for bench/throughput.py's Prefect peer.
# Prefect never enters orchestrate's own environment: it lives in its own venv.
#   sh bench/prefect_env.sh            -> bench/.venv-prefect
#   PREFECT_VENV=/tmp/pf sh bench/prefect_env.sh
set -eu
VENV="${PREFECT_VENV:-$(dirname "$0")/.venv-prefect}"
PY="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import prefect, sys; sys.exit(0 if prefect.__version__.startswith("3.") else 1)' 2>/dev/null; then
    echo "prefect venv ready: $VENV ($("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)'))"
    exit 0
fi
"$PY" -m venv "$VENV"
# The repository's pip constraints (if any) pin orchestrate's own dependencies; Prefect
# must resolve on its own, so they are switched off for this venv only.
PIP_CONSTRAINT= "$VENV/bin/pip" install -q --upgrade pip
PIP_CONSTRAINT= "$VENV/bin/pip" install -q 'prefect>=3,<4'
echo "prefect venv ready: $VENV ($("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)'))"
