#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1; start them if they are installed but
# stopped; otherwise fail with a message that says what to do.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! command -v pg_isready >/dev/null; then
  echo "error: PostgreSQL client tools are missing; install them with 'apt-get install postgresql'" >&2
  exit 1
fi
if ! pg_up; then
  echo "==> PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "error: PostgreSQL is not running on 127.0.0.1:5432 and could not be started; install and start it (apt-get install postgresql)" >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null; then
  echo "error: Redis is missing; install it with 'apt-get install redis-server'" >&2
  exit 1
fi
if ! redis_up; then
  echo "==> Redis is not answering on 127.0.0.1:6379; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { echo "error: Redis is not running on 127.0.0.1:6379 and could not be started" >&2; exit 1; }
fi
echo "==> PostgreSQL and Redis are up"
