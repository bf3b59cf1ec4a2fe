#!/usr/bin/env bash
# Start and stop the pieces of a peftsearch cluster, one machine at a time:
#
#   deploy/cluster.sh tracking   # PostgreSQL + an MLflow server on it (the tracking machine)
#   deploy/cluster.sh head       # the Ray head, with its dashboard (Jobs API) on 8265
#   deploy/cluster.sh worker     # a Ray worker joining $PEFTSEARCH_HEAD (host:port)
#   deploy/cluster.sh status     # what this script started here, and whether it is alive
#   deploy/cluster.sh stop       # stop exactly what this script started here (by PID)
#
# Settings (environment; defaults in brackets):
#   PEFTSEARCH_STATE   where PIDs, logs and the PostgreSQL data live        [~/.peftsearch-cluster;
#                      as root /var/lib/peftsearch-cluster]
#   PEFTSEARCH_HOST    the address this machine listens on                   [127.0.0.1]
#   PEFTSEARCH_HEAD    the head's GCS address, for `worker`                  [127.0.0.1:6379]
#   PG_PORT [5432], MLFLOW_PORT [5000], RAY_PORT [6379], DASHBOARD_PORT [8265]
#   RAY_NUM_CPUS, RAY_NUM_GPUS   resources a node offers                     [Ray's detection]
#   PG_BIN             the directory holding initdb and pg_ctl               [found on PATH or
#                      under /usr/lib/postgresql/*/bin]
# It runs the `ray` and `mlflow` of the active environment (the one peftsearch is installed in).
# PostgreSQL trusts connections from the host's network only: set a password and pg_hba rules
# before exposing it further.
set -euo pipefail

# As root, PostgreSQL runs as `postgres`, which must reach its data: keep the state out of /root.
if [[ $(id -u) == 0 ]]; then STATE=${PEFTSEARCH_STATE:-/var/lib/peftsearch-cluster}; else STATE=${PEFTSEARCH_STATE:-$HOME/.peftsearch-cluster}; fi
HOST=${PEFTSEARCH_HOST:-127.0.0.1}
HEAD=${PEFTSEARCH_HEAD:-127.0.0.1:6379}
PG_PORT=${PG_PORT:-5432}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
mkdir -p "$STATE"

die() { echo "cluster.sh: $*" >&2; exit 2; }

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
    local found; found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $found ]] || die "PostgreSQL's initdb not found: install the server or set PG_BIN"
    echo "$found"
}

# PostgreSQL refuses to run as root; run it as `postgres` then.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# Run a foreground server in its own session, remember its PID, and wait until its port answers.
spawn() {  # name port command...
    local name=$1 port=$2; shift 2
    if alive "$name"; then echo "$name: already running (pid $(cat "$STATE/$name.pid"))"; return; fi
    setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE/$name.pid"
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then echo "$name: up on $HOST:$port (log $STATE/$name.log)"; return; fi
        alive "$name" || die "$name exited; see $STATE/$name.log"
        sleep 1
    done
    die "$name did not open $HOST:$port in 120 s; see $STATE/$name.log"
}

alive() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

tracking() {
    local bin; bin=$(pg_bin)
    local data=$STATE/pgdata
    if [[ ! -d $data ]]; then
        mkdir -p "$data"
        if [[ $(id -u) == 0 ]]; then chmod 755 "$STATE"; chown postgres "$data"; fi
        as_pg "$bin/initdb" -A trust -U postgres -D "$data" >"$STATE/initdb.log"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # socket and log inside the data directory, which the server's user owns
        as_pg "$bin/pg_ctl" -D "$data" -l "$data/postgres.log" -w -o "-p $PG_PORT -k $data -c listen_addresses=$HOST" start >/dev/null
    fi
    echo "postgres: up on $HOST:$PG_PORT"
    local uri="postgresql+psycopg2://postgres@$HOST:$PG_PORT/postgres"
    # --serve-artifacts: runs' artifacts (EVP plots, tables, saved models) go through this server
    spawn mlflow "$MLFLOW_PORT" mlflow server --backend-store-uri "$uri" --host "$HOST" --port "$MLFLOW_PORT" \
        --serve-artifacts --artifacts-destination "$STATE/artifacts"
    echo "tracking.uri: http://$HOST:$MLFLOW_PORT   (or $uri for direct database access)"
}

ray_resources() {
    [[ -n ${RAY_NUM_CPUS:-} ]] && printf -- '--num-cpus=%s ' "$RAY_NUM_CPUS"
    [[ -n ${RAY_NUM_GPUS:-} ]] && printf -- '--num-gpus=%s ' "$RAY_NUM_GPUS"
    return 0
}

start_head() {
    # shellcheck disable=SC2046
    spawn ray-head "$DASHBOARD_PORT" ray start --head --block --node-ip-address="$HOST" --port="$RAY_PORT" \
        --dashboard-host="$HOST" --dashboard-port="$DASHBOARD_PORT" --temp-dir="$STATE/ray-head" \
        --disable-usage-stats $(ray_resources)
    echo "submit with: peftsearch submit SPEC --address http://$HOST:$DASHBOARD_PORT"
    echo "workers join with: PEFTSEARCH_HEAD=$HOST:$RAY_PORT deploy/cluster.sh worker"
}

start_worker() {
    local name=ray-worker
    alive "$name" && { echo "$name: already running (pid $(cat "$STATE/$name.pid"))"; return; }
    # shellcheck disable=SC2046
    setsid ray start --block --address="$HEAD" --node-ip-address="$HOST" --temp-dir="$STATE/ray-worker" \
        --disable-usage-stats $(ray_resources) >"$STATE/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE/$name.pid"
    sleep 5
    alive "$name" || die "$name exited; see $STATE/$name.log"
    echo "$name: joining $HEAD (log $STATE/$name.log)"
}

status() {
    for name in mlflow ray-head ray-worker; do
        [[ -f $STATE/$name.pid ]] || continue
        if alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: not running"; fi
    done
    if [[ -d $STATE/pgdata ]]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pgdata" status >/dev/null 2>&1 && echo "postgres: running" || echo "postgres: not running"
    fi
}

stop() {
    for name in ray-worker ray-head mlflow; do
        alive "$name" || continue
        local pid; pid=$(cat "$STATE/$name.pid")
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$STATE/$name.pid"
        echo "$name: stopped"
    done
    if [[ -d $STATE/pgdata ]] && as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pgdata" status >/dev/null 2>&1; then
        as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pgdata" -m fast -w stop >/dev/null
        echo "postgres: stopped"
    fi
}

case ${1:-} in
    tracking|status|stop) "$1" ;;
    head) start_head ;;
    worker) start_worker ;;
    *) die "usage: deploy/cluster.sh tracking|head|worker|status|stop (see the comments at the top)" ;;
esac
