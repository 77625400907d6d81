#!/usr/bin/env bash
# Start a local PostgreSQL for the multi-worker tests and print the URL to use.
#
#   eval "$(.ci/postgres.sh)"     # exports EXPLORER_TEST_PG_URL=postgresql://...
#
# For a fresh Debian machine where `apt-get install postgresql` has been done; runs as
# root and acts as the `postgres` system user. Idempotent: running it twice starts
# nothing new and resets the role's password to the same value. Listens on 127.0.0.1
# only. Progress goes to stderr; stdout is the one `export` line.
# Settings (environment): EXPLORER_PG_USER, EXPLORER_PG_DB (default explorer),
# EXPLORER_PG_PASSWORD (default explorer-ci), EXPLORER_PG_PORT (default: the cluster's).
set -euo pipefail

user="${EXPLORER_PG_USER:-explorer}"
db="${EXPLORER_PG_DB:-explorer}"
password="${EXPLORER_PG_PASSWORD:-explorer-ci}"
cluster="main"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }

[ "$(id -u)" -eq 0 ] || die "run as root (it acts as the postgres system user)"
command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not installed: apt-get install -y postgresql"
case "$user$db" in *[!a-z0-9_]*) die "EXPLORER_PG_USER / EXPLORER_PG_DB: use a-z, 0-9 and _ only";; esac
case "$password" in *"'"*|*@*|*/*|*:*|*%*) die "EXPLORER_PG_PASSWORD: avoid ' @ / : and % (it goes into a URL)";; esac

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
[ -n "$version" ] || die "no PostgreSQL server under /usr/lib/postgresql"
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {f = 1} END {exit !f}'; then
  log "creating cluster $version/$cluster"
  pg_createcluster "$version" "$cluster" >&2
fi

conf="/etc/postgresql/$version/$cluster/conf.d/explorer.conf"
want="listen_addresses = '127.0.0.1'"
if [ -n "${EXPLORER_PG_PORT:-}" ]; then want="$want"$'\n'"port = $EXPLORER_PG_PORT"; fi
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" > "$conf"
  # a changed listen address or port needs a restart; a stopped cluster just starts below
  if pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1; then
    log "restarting $version/$cluster for the new settings"
    pg_ctlcluster "$version" "$cluster" restart >&2
  fi
fi
if ! pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1; then
  log "starting $version/$cluster"
  pg_ctlcluster "$version" "$cluster" start >&2
fi
port="$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')"

for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || die "server on 127.0.0.1:$port did not become ready"

as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -d postgres >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN
    CREATE ROLE $user LOGIN;
  END IF;
END \$\$;
ALTER ROLE $user WITH LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE $db OWNER $user' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')
\\gexec
SQL

url="postgresql://$user:$password@127.0.0.1:$port/$db"
# prove the URL works over TCP with the password, as the tests will use it
PGPASSWORD="$password" psql -q -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -c 'SELECT 1' >/dev/null \
  || die "cannot log in as $user over TCP on 127.0.0.1:$port"
log "ready: postgresql://$user:***@127.0.0.1:$port/$db"
echo "export EXPLORER_TEST_PG_URL=$url"
