#!/usr/bin/env bash
# Start PAS Portal on embedded defaults: demo users, a legacy PAS source, a
# django-q2 cluster and the web server. Ctrl-C stops both processes.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=.venv/bin/python
VAR=${PAS_VAR_DIR:-var}

$PY manage.py seed_demo
if [ ! -f "$VAR/legacy/manifest.json" ] && $PY manage.py help make_legacy_pas >/dev/null 2>&1; then
  $PY manage.py make_legacy_pas --patients 2000 --seed 42 --defect-rate 0.02 --out "$VAR/legacy"
fi

$PY manage.py qcluster &
QPID=$!
trap 'kill $QPID 2>/dev/null || true; wait $QPID 2>/dev/null || true' EXIT INT TERM

echo
echo "PAS Portal is starting at http://$HOST:$PORT/  (health: http://$HOST:$PORT/healthz)"
echo "Sign in with a demo user printed above. Ctrl-C stops the server and the task cluster."
$PY manage.py runserver "$HOST:$PORT" --noreload
