#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, starts PostgreSQL and
# Redis on loopback when they are not running, and runs the whole suite against them.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_foundation.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[test.sh]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. System packages: PostgreSQL, Redis (also for the Redis Cluster tests), Chromium for the
#    scanner page, wrk for the flash-sale bench's own test, nginx in front of two API
#    instances, Python's venv module.
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)  # scale-out test
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)  # the mini-program stub's tests
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Redis on 127.0.0.1:6379 (no persistence: tests never rely on it).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/haodian-test-redis.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# 3. PostgreSQL on 127.0.0.1:5432, and a role the tests use (it creates one database per run).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$ver" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    say "creating PostgreSQL $ver cluster"
    as_root pg_createcluster "$ver" main >/dev/null
  fi
  say "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
PGUSER_SQL="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'haodian') THEN
    CREATE ROLE haodian LOGIN CREATEDB PASSWORD 'haodian';
  ELSE
    ALTER ROLE haodian LOGIN CREATEDB PASSWORD 'haodian';
  END IF;
END \$\$;"
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
  runuser -u postgres -- psql -q -d postgres -c "$PGUSER_SQL" >/dev/null
else
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "$PGUSER_SQL" >/dev/null
fi

# 4. Python dependencies in ./.venv.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
say "installing Python dependencies"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import server, pytest' # fail here, clearly, if the install did not work

# 5. The mini-program stub's node packages, from its committed lock file.
say "installing the mini-program stub's node packages (npm ci)"
(cd miniapp_stub && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# 6. Lint, then the suite.
say "ruff"
.venv/bin/ruff check server tests
export HAODIAN_TEST_PG="${HAODIAN_TEST_PG:-postgres://haodian:haodian@127.0.0.1:5432}"
export HAODIAN_TEST_REDIS="${HAODIAN_TEST_REDIS:-redis://127.0.0.1:6379}"
export PATH="$PWD/.venv/bin:$PATH"
say "pytest"
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"  # a chosen part, on single-node Redis
fi
.venv/bin/python -m pytest

# 7. The scenario tests again with the whole app on a three-master Redis Cluster that the
#    suite starts on loopback (the job queue on a single-node database, as deployed).
say "pytest on a three-master Redis Cluster (scenario tests)"
HAODIAN_TEST_REDIS_CLUSTER=1 exec .venv/bin/python -m pytest -p no:cacheprovider \
  tests/test_flashsale.py tests/test_coupons.py \
  tests/test_coupons_orders.py tests/test_groupbuy.py tests/test_groupbuy_expiry.py \
  tests/test_takeout.py tests/test_giftcards.py tests/test_membership.py tests/test_share.py \
  tests/test_locator.py tests/test_identity.py tests/test_orders_payments.py \
  tests/test_lifecycle.py tests/test_ledger.py tests/test_scanner.py
