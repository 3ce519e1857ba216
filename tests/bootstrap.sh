#!/usr/bin/env bash
# Prepares a fresh machine for the test suite; idempotent, quick when everything is already there.
# Installs the Debian packages the tests drive (curl, jq, slapd, chromium, node, MariaDB, promtool,
# nginx), uv and the locked Python dependencies, and makes sure the real PostgreSQL, MariaDB and Redis
# that the tests talk to are running on 127.0.0.1 (see ../shared/design/TESTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real: curl and jq (the seeds' own scripts), slapd and
# ldap-utils (a real LDAP directory), chromium (Playwright's browser; never `playwright install`),
# nodejs and npm (the real OIDC provider, npm `oidc-provider`), MariaDB (the third database backend),
# promtool (package prometheus; checks and unit-tests deploy/'s Prometheus config and alert rules) and
# nginx (runs deploy/'s load-balancer config); the tests start neither as a service.
missing=()
for pair in curl:curl jq:jq slapd:slapd ldapadd:ldap-utils chromium:chromium node:nodejs npm:npm \
  mariadbd:mariadb-server mysqladmin:mariadb-client promtool:prometheus nginx:nginx; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -m uv --version >/dev/null 2>&1; then
  python3 -m pip install --quiet uv
fi
python3 -m uv sync --locked --quiet

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "bootstrap: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "bootstrap: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! mysqladmin ping -h 127.0.0.1 --silent >/dev/null 2>&1; then
  echo "bootstrap: starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for _ in $(seq 1 100); do
  if pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 \
    && mysqladmin ping -h 127.0.0.1 --silent >/dev/null 2>&1; then
    # The tests sign in to MariaDB as root without a password over TCP (TESTING.md); a fresh Debian
    # install only lets root in over the socket, so allow root@127.0.0.1 once.
    if ! mysql -h 127.0.0.1 -u root -e "SELECT 1" >/dev/null 2>&1; then
      mysql -u root -e "CREATE USER IF NOT EXISTS root@'127.0.0.1';
        GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;"
    fi
    exit 0
  fi
  sleep 0.2
done
echo "bootstrap: PostgreSQL, MariaDB or Redis did not come up on 127.0.0.1" >&2
exit 1
