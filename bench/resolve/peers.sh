# Private peers for the resolution benchmark, sourced by run.sh: a PostgreSQL 15 cluster
# with PostGIS 3 and a redis-server, each on a loopback port under one work directory,
# stopped by PID when the caller exits. Idempotent: installs PostGIS only if missing.
#
# Functions: peers_install, peers_start WORKDIR, peers_stop. After peers_start:
# PG_PORT, REDIS_PORT (and PG_PID, REDIS_PID).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PID="" REDIS_PID="" PG_DATA=""

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

peers_install() {
  if ! dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1; then
    echo "peers: installing postgresql-15-postgis-3" >&2
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo apt-get install -y --no-install-recommends postgresql-15-postgis-3 >&2
  fi
  command -v redis-server >/dev/null || { echo "peers: redis-server is not installed" >&2; return 1; }
  [[ -x $PG_BIN/postgres ]] || { echo "peers: $PG_BIN/postgres not found" >&2; return 1; }
}

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

peers_start() {
  local work=$1
  mkdir -p "$work/redis" "$work/pg"
  REDIS_PORT=${REDIS_PORT:-$(free_port)}
  # No persistence: the data set is regenerated each run.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
    --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!

  PG_PORT=${PG_PORT:-$(free_port)}
  PG_DATA=$work/pg/data
  if [[ $(id -u) -eq 0 ]]; then
    chmod 755 "$work"  # mktemp -d makes it 0700: the postgres user must reach pg/
    chown -R postgres "$work/pg"
  fi
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >"$work/pg/initdb.log" 2>&1 ||
    { echo "peers: initdb failed, see $work/pg/initdb.log" >&2; return 1; }
  # Read-query tuning as a DBA would set it on this 2-core, 23 GB machine: everything
  # cached in shared_buffers, parallel bitmap heap scans on both cores, no JIT. The
  # durability settings (fsync, WAL) only speed up the load; queries do not write.
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$work/pg/postgres.log" -w -t 60 start -o \
    "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1 -c shared_buffers=4GB -c work_mem=256MB \
     -c effective_cache_size=12GB -c random_page_cost=1.1 -c max_worker_processes=4 \
     -c max_parallel_workers=2 -c max_parallel_workers_per_gather=2 -c jit=off \
     -c maintenance_work_mem=2GB -c max_wal_size=16GB -c fsync=off -c synchronous_commit=off \
     -c full_page_writes=off" >/dev/null ||
    { echo "peers: postgres did not start, see $work/pg/postgres.log" >&2; return 1; }
  PG_PID=$(head -1 "$PG_DATA/postmaster.pid")

  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "peers: PostgreSQL (pid $PG_PID) on 127.0.0.1:$PG_PORT, Redis (pid $REDIS_PID) on 127.0.0.1:$REDIS_PORT" >&2
}

# Stops by PID what peers_start started: SIGINT is PostgreSQL's fast shutdown.
stop_pid() {
  local pid=$1 sig=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

peers_stop() {
  stop_pid "$REDIS_PID" TERM
  stop_pid "$PG_PID" INT
  REDIS_PID="" PG_PID=""
}
