#!/bin/sh
# Entrypoint of zenn-sandbox/mariadb, the stand-in for the official mariadb image (and for
# RDS): the same contract for what the sandbox uses. On the first start it initialises
# /var/lib/mysql with root's password from MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD),
# creates MARIADB_DATABASE and MARIADB_USER/MARIADB_PASSWORD when set, then serves on
# 0.0.0.0:3306.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ]; then
  exec "$@"
fi
shift

datadir=/var/lib/mysql
mkdir -p "$datadir" /run/mysqld
chown mysql:mysql "$datadir" /run/mysqld

# Quotes a value for a SQL string literal.
sql_string() {
  printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"
}

root_password="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
if [ ! -d "$datadir/mysql" ]; then
  if [ -z "$root_password" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]; then
    echo "error: the database is uninitialised and MARIADB_ROOT_PASSWORD is not set" >&2
    exit 1
  fi
  echo "entrypoint: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
  socket=/run/mysqld/init.sock
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
  pid=$!
  tries=0
  until mariadb-admin --socket="$socket" --user=root ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
      echo "error: mariadbd did not start during initialisation" >&2
      exit 1
    fi
    sleep 0.1
  done
  # The SQL (passwords included) goes on stdin, never on a command line.
  {
    # install-db's passwordless accounts (anonymous, root@127.0.0.1, root@<hostname>) go.
    echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
    echo "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';"
    echo "FLUSH PRIVILEGES;"
    if [ -n "$root_password" ]; then
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_password");"
      echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$root_password");"
    else
      echo "CREATE USER 'root'@'%';"
    fi
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "${MARIADB_PASSWORD:-}");"
      if [ -n "${MARIADB_DATABASE:-}" ]; then
        echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO $(sql_string "$MARIADB_USER")@'%';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$socket" --user=root
  kill "$pid"
  wait "$pid" || true
  echo "entrypoint: initialised"
fi

exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 \
  --socket=/run/mysqld/mysqld.sock --skip-name-resolve "$@"
