#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is running and has the database `test`
# (127.0.0.1:5432, trust auth, user postgres), and that Redis answers on 127.0.0.1:6379.
# Installs and starts them when missing (needs root).
set -euo pipefail

host=127.0.0.1
port=5432

pg_up() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "services: installing PostgreSQL" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
fi

if ! pg_up; then
  echo "services: starting PostgreSQL" >&2
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
fi
pg_up || { echo "services: PostgreSQL is not answering on $host:$port" >&2; exit 1; }

if ! psql -h "$host" -p "$port" -U postgres -d test -c "select 1" >/dev/null 2>&1; then
  # A fresh cluster: allow trust auth on loopback and create the test database.
  if ! psql -h "$host" -p "$port" -U postgres -d postgres -c "select 1" >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  psql -h "$host" -p "$port" -U postgres -d postgres -c "create database test" >/dev/null
fi
echo "services: PostgreSQL ready on $host:$port" >&2

# Redis for the tests' counters at 127.0.0.1:6379 (tests/ops/test_redis.py also starts private ones with
# the same binary, on ports of their own).
redis_port=6379
redis_up() { redis-cli -h "$host" -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "services: installing Redis" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
fi

if ! redis_up; then
  echo "services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
fi
redis_up || { echo "services: Redis is not answering on $host:$redis_port" >&2; exit 1; }
echo "services: Redis ready on $host:$redis_port" >&2

# Node.js and npm run the JavaScript SDKs' own encryption packages (jsencrypt, sm-crypto) for the
# transport tests; tests/support/js.py installs those packages from tests/js/package-lock.json.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "services: installing Node.js and npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq nodejs npm >/dev/null
fi
echo "services: Node.js $(node --version) ready" >&2
