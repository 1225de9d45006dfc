#!/usr/bin/env bash
# `make run`: the sandbox third parties, the demo data and the portal, all on 127.0.0.1.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG=true OUTBOUND_ALLOW_PRIVATE_NETWORKS=true

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

for port in 8000 8101 8102 8103 8104; do
  if ! port_free "$port"; then
    echo "error: port $port on 127.0.0.1 is in use; stop what listens there (is 'make run' already running?)" >&2
    exit 1
  fi
done

# var/staticfiles: STATIC_ROOT, which WhiteNoise expects (DEBUG serves from static/ anyway).
mkdir -p var/staticfiles
echo "==> migrating the embedded SQLite database (var/patchbay.sqlite3)"
$PY manage.py migrate --no-input -v0

echo "==> starting the sandbox servers (Zoho 8101, RingRx 8102, CRM 8103, SMS 8104)"
$PY manage.py sandbox > var/sandbox.log 2>&1 &
SANDBOX_PID=$!
SWEEP_PID=""
trap 'kill "$SANDBOX_PID" $SWEEP_PID 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do port_free 8104 || break; sleep 0.2; done
port_free 8104 && { echo "error: the sandbox servers did not start; see var/sandbox.log" >&2; exit 1; }

$PY manage.py seed_demo
$PY manage.py demo_integrations --crm-url http://127.0.0.1:8103 --sms-url http://127.0.0.1:8104

# Without a broker there is no celery beat: this re-runs what a failure left behind.
$PY manage.py sweep --every 30 > var/sweep.log 2>&1 &
SWEEP_PID=$!

echo "==> serving the portal on http://127.0.0.1:8000  (Ctrl-C to stop)"
$PY manage.py runserver 127.0.0.1:8000
