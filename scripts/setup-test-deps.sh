#!/usr/bin/env bash
# Installs what the test suite needs beyond the virtualenv: dcmtk's command-line
# tools, strace (tests/test_durable_order.py) and Chromium for the web application's
# browser tests (Debian packages; Playwright drives /usr/bin/chromium, it never
# downloads a browser) and a
# reachable PostgreSQL server.
set -euo pipefail

need_apt=()
command -v storescu >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian's packages"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

url="${NOCTIS_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/noctis_test}"
admin_url="${url%/*}/postgres"
if ! pg_isready -q -d "$admin_url" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "setup: starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -d "$admin_url" && break; sleep 1; done
  fi
fi
if ! pg_isready -q -d "$admin_url" 2>/dev/null; then
  echo "setup: PostgreSQL at $admin_url is not reachable; the PostgreSQL tests will fail." >&2
  echo "setup: start it (pg_ctlcluster ... main start) or set NOCTIS_TEST_PG_URL." >&2
  exit 0
fi
# A throw-away database for this run (each test archive uses its own schema inside it).
db="${url##*/}"; db="${db%%\?*}"
psql -q -d "$admin_url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
psql -q -d "$admin_url" -c "CREATE DATABASE \"$db\"" >/dev/null
echo "setup: created the throw-away PostgreSQL database $db"
