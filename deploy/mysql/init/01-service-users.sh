#!/usr/bin/env bash
# One database and one user per service, each user allowed into its own database only:
# `mall_<service>` / `mall_<service>`@'%' with every privilege on `mall_<service>`.* (the
# service creates and migrates its tables) and none anywhere else, not even GRANT OPTION.
#
# The official MySQL image runs this once, when it initialises an empty data volume (files in
# /docker-entrypoint-initdb.d; keep it executable so it runs in its own shell). The passwords
# come from the container's environment (MALL_DB_PASSWORD_<SERVICE>, from deploy/.env through
# docker-compose.yaml) and reach the server on stdin, never on a command line. They must be
# URL-safe (letters, digits, `.`, `_`, `~`, `-`): the services put them in their database URLs.
#
# MYSQL_CLIENT names the client (default `mysql`; scripts/check-deploy.sh runs the script
# against a stand-in that keeps the SQL).
#
# The data volume outlives this script: to change a password later, ALTER USER by hand, or
# start over with `docker compose ... down -v` (which deletes the data).
set -euo pipefail

SERVICES=(auth user cart product order payment checkout notification)

die() { printf '01-service-users.sh: %s\n' "$*" >&2; exit 1; }

[ -n "${MYSQL_ROOT_PASSWORD:-}" ] || die "MYSQL_ROOT_PASSWORD is not set"

sql=""
for service in "${SERVICES[@]}"; do
  var="MALL_DB_PASSWORD_${service^^}"
  password="${!var:-}"
  [ -n "$password" ] || die "$var is not set (see deploy/.env.example)"
  [[ "$password" =~ ^[A-Za-z0-9._~-]+$ ]] \
    || die "$var must hold only letters, digits, '.', '_', '~' and '-' (it goes into a URL)"
  [ "${#password}" -ge 16 ] || die "$var must be at least 16 characters long"
  db="mall_${service}"
  # In GRANT a database name's `_` is a wildcard; `\_` is the literal underscore.
  sql+="CREATE DATABASE IF NOT EXISTS \`${db}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '${db}'@'%' IDENTIFIED BY '${password}';
ALTER USER '${db}'@'%' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON \`${db//_/\\_}\`.* TO '${db}'@'%';
"
  echo "01-service-users.sh: database ${db}, user ${db}"
done

MYSQL_PWD="$MYSQL_ROOT_PASSWORD" "${MYSQL_CLIENT:-mysql}" --protocol=socket -uroot <<<"$sql"
