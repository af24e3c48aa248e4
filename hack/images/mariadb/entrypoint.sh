#!/bin/bash
# Initialises the data directory on first start (root may log in from anywhere with MARIADB_ROOT_PASSWORD, as
# the db-create Job does) and runs mariadbd in the foreground.
set -euo pipefail
: "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD is required}"
data=${MARIADB_DATADIR:-/var/lib/mysql/data}
run=${MARIADB_RUNDIR:-/run/mysqld}
mkdir -p "$data" "$run"
init=()
if [ ! -d "$data/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$data" --auth-root-authentication-method=normal --skip-test-db \
    >/dev/null
  umask 077
  pw=${MARIADB_ROOT_PASSWORD//\\/\\\\}; pw=${pw//\'/\\\'}
  cat > "$run/init.sql" <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  init=(--init-file="$run/init.sql")
fi
exec mariadbd --no-defaults --datadir="$data" --socket="$run/mysqld.sock" --pid-file="$run/mysqld.pid" \
  --bind-address=0.0.0.0 --port=3306 --skip-name-resolve --max-connections=500 "${init[@]}"
