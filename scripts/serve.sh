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
# The main job on embedded defaults: generate a legacy PAS, register it (over
# the SQLite3 ODBC driver) and the target, run the default contract, reconcile
# and evaluate the pre_production gate, in the demo project.
$PY manage.py run_lifecycle --project demo --rows "${PAS_DEMO_PATIENTS:-2000}" --seed 42 \
  --release-profile pre_production --json "$VAR/lifecycle-report.json" \
  || echo "(the gate did not pass: the reasons are listed above)"
# Review work for the stewards: the source's schema and a mapping set started
# from the default contract, every field proposed (four-eyes in the browser).
$PY manage.py seed_demo --mapping-set \
  || echo "(no mapping set for review was started: the reason is above)"

$PY manage.py qcluster &
QPID=$!
$PY manage.py run_monitor &
MPID=$!
stop_cluster() {
  kill "$MPID" 2>/dev/null || true
  # Give the cluster 15 s to finish its current task, then stop it hard:
  # a killed run resumes from its checkpoint, so nothing is lost.
  kill "$QPID" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$QPID" 2>/dev/null || return 0; sleep 0.5; done
  pkill -9 -P "$QPID" 2>/dev/null || true
  kill -9 "$QPID" 2>/dev/null || true
}
trap stop_cluster EXIT INT TERM

echo
echo "PAS Portal is starting at http://$HOST:$PORT/  (health: http://$HOST:$PORT/healthz)"
echo "Sign in with a demo user printed above. Ctrl-C stops the server and the task cluster."
$PY manage.py runserver "$HOST:$PORT" --noreload
