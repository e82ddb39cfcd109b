#!/usr/bin/env bash
# Start the local PostgreSQL and Redis that the test suite uses, when they are installed but
# stopped. Does nothing for a service that already answers (or that DATABASE_URL / REDIS_URL
# point elsewhere).
set -euo pipefail

pg_answers() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_answers() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
wait_until() { for _ in $(seq 1 50); do "$1" && return 0; sleep 0.2; done; return 1; }

if [[ -z "${DATABASE_URL:-}" ]] && ! pg_answers; then
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_until pg_answers || { echo "PostgreSQL did not start" >&2; exit 1; }
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and is not installed here" >&2; exit 1
  fi
fi

rabbit_answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if [[ "${WITH_RABBITMQ:-1}" == 1 ]] && ! rabbit_answers && command -v rabbitmq-server >/dev/null; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
  for _ in $(seq 1 100); do rabbit_answers && break; sleep 0.3; done
fi

if [[ -z "${REDIS_URL:-}" ]] && ! redis_answers; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_until redis_answers || { echo "Redis did not start" >&2; exit 1; }
  else
    echo "Redis is not running on 127.0.0.1:6379 and is not installed here" >&2; exit 1
  fi
fi
