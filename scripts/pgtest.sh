#!/bin/sh
# A throw-away PostgreSQL 15 server for the tests (unit, blackbox, cluster).
#
#   sh scripts/pgtest.sh start DIR   initdb into DIR/data, start on a free
#                                    loopback port; prints the DSN (without
#                                    dbname) on stdout
#   sh scripts/pgtest.sh stop DIR    fast shutdown
#
# PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` user (runuser) and DIR is handed to it. PGTEST_OPTIONS adds
# server options ("-c shared_preload_libraries=pg_stat_statements" for
# bench/cluster.sh). No system service is
# used or needed. A missing PostgreSQL is an error (make deps installs it),
# never a reason to skip.
set -eu
cmd=${1:?usage: pgtest.sh start|stop DIR}
dir=${2:?usage: pgtest.sh start|stop DIR}
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/pg_ctl" ] || { echo "pgtest: PostgreSQL 15 is not installed ($bin/pg_ctl); run make deps" >&2; exit 1; }
as_pg=""
if [ "$(id -u)" = 0 ]; then
  as_pg="runuser -u postgres --"
fi
case "$cmd" in
start)
  mkdir -p "$dir"
  if [ -n "$as_pg" ]; then
    chown postgres "$dir"
    $as_pg test -w "$dir" || { echo "pgtest: user postgres cannot reach $dir (a parent is not searchable)" >&2; exit 1; }
  fi
  $as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  for try in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if $as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on ${PGTEST_OPTIONS:-}" \
        start >/dev/null 2>&1; then
      echo "host=127.0.0.1 port=$port user=postgres"
      exit 0
    fi
  done
  echo "pgtest: PostgreSQL did not start:" >&2
  tail -20 "$dir/server.log" >&2 || true
  exit 1
  ;;
stop)
  $as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: pgtest.sh start|stop DIR" >&2
  exit 2
  ;;
esac
