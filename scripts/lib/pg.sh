# A throwaway PostgreSQL cluster (sourced, not run), shared by scripts/test and
# scripts/bench-state: `pg_start` initialises one in a temp folder on a free port and sets
# DATABASE_URL; `pg_stop` stops and removes it. initdb and postgres refuse to run as root,
# so as root they run as the postgres user, in a folder it owns.

pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
pg_dir=""
as_pg=()

pg_start() {
  pg_dir=$(mktemp -d /tmp/s3-importd-pg.XXXXXX)
  local pg_port
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$pg_dir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust >"$pg_dir/initdb.log" 2>&1 \
    || { echo "postgres: initdb failed; see $pg_dir/initdb.log" >&2; return 1; }
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 ${PG_OPTIONS:--c fsync=off}" start >/dev/null \
    || { echo "postgres: did not start; see $pg_dir/postgres.log" >&2; return 1; }
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
}

pg_stop() {
  if [[ -n $pg_dir ]]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
    pg_dir=""
  fi
}
