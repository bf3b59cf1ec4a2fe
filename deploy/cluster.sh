#!/usr/bin/env bash
# Start and stop the pieces of a peftsearch cluster, one machine at a time:
#
#   deploy/cluster.sh tracking   # PostgreSQL + an MLflow server with authentication on it
#   deploy/cluster.sh head       # the Ray head (GCS, dashboard with the Jobs API)
#   deploy/cluster.sh worker     # a Ray worker joining $PEFTSEARCH_HEAD (host:port)
#   deploy/cluster.sh status     # each piece this script started here, and whether it serves
#   deploy/cluster.sh stop       # stop exactly what this script started here (by PID)
#
# tracking, head and worker return only once the piece serves (MLflow's /health; this node in
# Ray's node list). If it dies or is not up within PEFTSEARCH_TIMEOUT, they print one line, stop
# what they started and exit 1. A bad setting: one line, exit 2.
#
# Settings (environment; defaults in brackets):
#   PEFTSEARCH_STATE    PIDs, logs, secrets, PostgreSQL data  [~/.peftsearch-cluster;
#                       as root /var/lib/peftsearch-cluster]
#   PEFTSEARCH_HOST     the address this machine's servers listen on           [127.0.0.1]
#   PEFTSEARCH_SUBNET   who may connect to PostgreSQL   [the subnet of PEFTSEARCH_HOST's interface]
#   PEFTSEARCH_HEAD     the head's GCS address, for `worker`                   [127.0.0.1:6379]
#   PEFTSEARCH_TIMEOUT  seconds a piece may take to come up                    [300]
#   PG_PORT [5432]  MLFLOW_PORT [5000]  MLFLOW_WORKERS [2]
#   MLFLOW_ADMIN_FILE   the MLflow admin's credentials, mode 0600, two lines
#                       MLFLOW_TRACKING_USERNAME=... / MLFLOW_TRACKING_PASSWORD=...
#                       [$PEFTSEARCH_STATE/secrets/mlflow-admin.env, generated]
#   Ray ports (all bound to PEFTSEARCH_HOST where Ray allows it; unset: Ray's default):
#     RAY_PORT (GCS) [6379]  DASHBOARD_PORT [8265]  DASHBOARD_AGENT_PORT  DASHBOARD_AGENT_GRPC_PORT
#     RUNTIME_ENV_AGENT_PORT  RAY_CLIENT_PORT  NODE_MANAGER_PORT  OBJECT_MANAGER_PORT
#     METRICS_EXPORT_PORT  MIN_WORKER_PORT  MAX_WORKER_PORT
#     AUTOSCALER_METRIC_PORT [44217]  DASHBOARD_METRIC_PORT [44227]: the head's autoscaler and
#       dashboard Prometheus endpoints (read-only metrics, no auth); Ray 2.60 binds them to
#       every interface: firewall them, or pick ports your firewall already closes
#   DASHBOARD_HOST      where the dashboard (Jobs API: it runs commands) listens    [127.0.0.1]
#   PEFTSEARCH_RAY_AUTH token | disabled; with token, Ray's RAY_AUTH_MODE=token     [token]
#   RAY_AUTH_TOKEN_PATH the cluster's Ray token, mode 0600; the head generates it, every worker
#                       and submitter needs a copy         [$PEFTSEARCH_STATE/secrets/ray-token]
#   RAY_NUM_CPUS, RAY_NUM_GPUS   resources a node offers                        [Ray's detection]
#   PG_BIN              the directory holding initdb and pg_ctl   [on PATH or /usr/lib/postgresql/*/bin]
# It runs the `ray`, `mlflow` and `python` of the active environment (peftsearch's).
set -euo pipefail

if [[ $(id -u) == 0 ]]; then STATE=${PEFTSEARCH_STATE:-/var/lib/peftsearch-cluster}; else STATE=${PEFTSEARCH_STATE:-$HOME/.peftsearch-cluster}; fi
HOST=${PEFTSEARCH_HOST:-127.0.0.1}
HEAD=${PEFTSEARCH_HEAD:-127.0.0.1:6379}
TIMEOUT=${PEFTSEARCH_TIMEOUT:-300}
PG_PORT=${PG_PORT:-5432}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
DASHBOARD_HOST=${DASHBOARD_HOST:-127.0.0.1}
SECRETS=$STATE/secrets
MLFLOW_ADMIN_FILE=${MLFLOW_ADMIN_FILE:-$SECRETS/mlflow-admin.env}
case ${PEFTSEARCH_RAY_AUTH:-token} in
    token) export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$SECRETS/ray-token} ;;
    disabled) export RAY_AUTH_MODE=disabled ;;
    *) echo "cluster.sh: PEFTSEARCH_RAY_AUTH must be token or disabled (got ${PEFTSEARCH_RAY_AUTH})" >&2; exit 2 ;;
esac
export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
# Ray reads these two from the environment only (no `ray start` flag)
[[ -n ${AUTOSCALER_METRIC_PORT:-} ]] && export AUTOSCALER_METRIC_PORT
[[ -n ${DASHBOARD_METRIC_PORT:-} ]] && export DASHBOARD_METRIC_PORT
umask 077
mkdir -p "$STATE" "$SECRETS"

die() { echo "cluster.sh: $*" >&2; exit 2; }
fail() { echo "cluster.sh: $*" >&2; exit 1; }
# A killed piece whose parent is gone may stay a zombie (where PID 1 does not reap): not alive.
pid_alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ -n $st && $st != Z* ]]; }
alive() { [[ -f $STATE/$1.pid ]] && pid_alive "$(cat "$STATE/$1.pid")"; }
secret() { python -c 'import secrets; print(secrets.token_hex(24), end="")'; }

check_mode() {  # a secret someone else can read is refused
    [[ -f $1 ]] || die "$2: $1 does not exist"
    local mode; mode=$(stat -c %a "$1")
    [[ $mode == 600 || $mode == 400 ]] || die "$2: $1 has mode $mode; it must be 0600 (chmod 600 $1)"
}

new_secret_file() {  # path content: written 0600 unless it exists
    [[ -f $1 ]] || (umask 077; printf '%s' "$2" >"$1")
}

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
    local found; found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $found ]] || die "PG_BIN: PostgreSQL's initdb not found; install the server or set PG_BIN"
    echo "$found"
}

pg_tool() { local b; b=$(pg_bin); if [[ -x $b/$1 ]]; then echo "$b/$1"; else command -v "$1" || die "PG_BIN: $1 not found"; fi; }

# PostgreSQL refuses to run as root; run it as `postgres` then.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

subnet() {  # the network of the interface that carries $HOST, e.g. 10.0.0.0/24
    if [[ -n ${PEFTSEARCH_SUBNET:-} ]]; then echo "$PEFTSEARCH_SUBNET"; return; fi
    local cidr; cidr=$(ip -o -4 addr show 2>/dev/null | awk -v h="$HOST" '{split($4, a, "/"); if (a[1] == h) print $4}' | head -1)
    [[ -n $cidr ]] || die "PEFTSEARCH_HOST: no interface here has the address $HOST (or set PEFTSEARCH_SUBNET)"
    python -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$cidr"
}

# Start a foreground server in its own session and wait until `check` says it serves. On death or
# timeout: one line, stop it (and whatever `on_fail` names), exit 1.
spawn() {  # name check command...
    local name=$1 check=$2; shift 2
    if alive "$name"; then echo "$name: already running (pid $(cat "$STATE/$name.pid"))"; return; fi
    setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
    local end=$((SECONDS + TIMEOUT))
    until "$check" 2>/dev/null; do
        if ! alive "$name"; then
            rm -f "$STATE/$name.pid"; ${ON_FAIL:-true}
            fail "$name exited during start-up: $(last_line "$name"); see $STATE/$name.log"
        fi
        if ((SECONDS >= end)); then
            stop_one "$name" >/dev/null; ${ON_FAIL:-true}
            fail "$name did not come up in ${TIMEOUT} s (stopped it): $(last_line "$name"); see $STATE/$name.log"
        fi
        sleep 1
    done
}

last_line() {  # a traceback's exception line if there is one, else the last line
    local line; line=$(grep -E '^[A-Za-z_.]+(Error|Exception): ' "$STATE/$1.log" 2>/dev/null | tail -1)
    [[ -n $line ]] || line=$(grep -v '^\s*$' "$STATE/$1.log" 2>/dev/null | tail -1)
    echo "${line:0:240}"
}

# ---- tracking: PostgreSQL (scram-sha-256, pg_hba for the subnet) + MLflow with basic auth ----

pg_started_here=
pg_status() { as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pgdata" status >/dev/null 2>&1; }
pg_stop() { as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pgdata" -m fast -w stop >/dev/null; }
stop_pg_if_started() { [[ -z $pg_started_here ]] || pg_stop; }

pg_init() {
    local bin=$1 data=$STATE/pgdata
    new_secret_file "$SECRETS/pg-superuser" "$(secret)"
    new_secret_file "$SECRETS/pg-mlflow" "$(secret)"
    [[ -d $data ]] && return
    if [[ $(id -u) == 0 ]]; then
        chmod 711 "$STATE"
        as_pg test -x "$STATE" || die "PEFTSEARCH_STATE: the postgres user cannot reach $STATE (a parent directory is private)"
    fi
    mkdir -p "$data"; [[ $(id -u) == 0 ]] && chown postgres "$data"
    local pw; pw=$(mktemp); cp "$SECRETS/pg-superuser" "$pw"; [[ $(id -u) == 0 ]] && chown postgres "$pw"
    as_pg "$bin/initdb" -A scram-sha-256 --pwfile="$pw" -U postgres -D "$data" >"$STATE/initdb.log" 2>&1 \
        || { rm -rf "$pw" "$data"; fail "initdb failed: $(tail -1 "$STATE/initdb.log")"; }
    rm -f "$pw"
}

pg_hba() {  # only scram-sha-256 passwords; the mlflow role from the cluster's subnet
    local net; net=$(subnet)
    as_pg tee "$STATE/pgdata/pg_hba.conf" >/dev/null <<EOF
# written by deploy/cluster.sh: passwords (scram-sha-256) only, never trust
local all postgres scram-sha-256
host  mlflow,mlflow_auth mlflow $net scram-sha-256
EOF
}

pg_start() {
    local bin; bin=$(pg_bin)
    pg_init "$bin"
    pg_hba
    if ! pg_status; then
        as_pg "$bin/pg_ctl" -D "$STATE/pgdata" -l "$STATE/pgdata/postgres.log" -w -t "$TIMEOUT" \
            -o "-p $PG_PORT -k $STATE/pgdata -c listen_addresses=$HOST -c password_encryption=scram-sha-256" start >/dev/null \
            || fail "postgres did not start: $(tail -1 "$STATE/pgdata/postgres.log" 2>/dev/null); see $STATE/pgdata/postgres.log"
        pg_started_here=1
    fi
    pg_roles
    echo "postgres: up on $HOST:$PG_PORT (scram-sha-256; role mlflow from $(subnet))"
}

pg_roles() {  # the mlflow role owns the tracking and auth databases
    local pw; pw=$(cat "$SECRETS/pg-mlflow")
    PGPASSWORD=$(cat "$SECRETS/pg-superuser") "$(pg_tool psql)" -qAt -h "$STATE/pgdata" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -v pw="$pw" >/dev/null <<'EOF' || { stop_pg_if_started; fail "postgres: could not create the mlflow role and databases"; }
SELECT 'CREATE ROLE mlflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') \gexec
ALTER ROLE mlflow PASSWORD :'pw';
SELECT 'CREATE DATABASE mlflow OWNER mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') \gexec
SELECT 'CREATE DATABASE mlflow_auth OWNER mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth') \gexec
EOF
}

admin_file() {  # the admin's credentials: generated once, refused if others can read them
    new_secret_file "$MLFLOW_ADMIN_FILE" "$(printf 'MLFLOW_TRACKING_USERNAME=admin\nMLFLOW_TRACKING_PASSWORD=%s\n' "$(secret)")"
    check_mode "$MLFLOW_ADMIN_FILE" MLFLOW_ADMIN_FILE
    ADMIN_USER=$(sed -n 's/^MLFLOW_TRACKING_USERNAME=//p' "$MLFLOW_ADMIN_FILE")
    ADMIN_PASS=$(sed -n 's/^MLFLOW_TRACKING_PASSWORD=//p' "$MLFLOW_ADMIN_FILE")
    [[ -n $ADMIN_USER && -n $ADMIN_PASS ]] || die "MLFLOW_ADMIN_FILE: $MLFLOW_ADMIN_FILE needs MLFLOW_TRACKING_USERNAME= and MLFLOW_TRACKING_PASSWORD= lines"
}

mlflow_config() {  # the pgpass file (no password on a command line) and the auth app's config
    new_secret_file "$SECRETS/flask-secret" "$(secret)"  # the auth app's CSRF key
    printf '%s:%s:*:mlflow:%s\n' "$HOST" "$PG_PORT" "$(cat "$SECRETS/pg-mlflow")" >"$SECRETS/pgpass"
    cat >"$SECRETS/mlflow-auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://mlflow@$HOST:$PG_PORT/mlflow_auth
admin_username = $ADMIN_USER
admin_password = $ADMIN_PASS
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
}

mlflow_health() { curl -fsS -o /dev/null --max-time 5 "http://$HOST:$MLFLOW_PORT/health"; }

tracking() {
    admin_file
    pg_start
    mlflow_config
    echo "MLFLOW_URL=http://$HOST:$MLFLOW_PORT" >"$STATE/mlflow.env"
    # No MLflow job consumers: peftsearch runs none of MLflow's server-side jobs.
    ON_FAIL=stop_pg_if_started spawn mlflow mlflow_health \
        env PGPASSFILE="$SECRETS/pgpass" MLFLOW_AUTH_CONFIG_PATH="$SECRETS/mlflow-auth.ini" \
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$SECRETS/flask-secret")" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        mlflow server --app-name basic-auth --backend-store-uri "postgresql+psycopg2://mlflow@$HOST:$PG_PORT/mlflow" \
        --host "$HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
        --serve-artifacts --artifacts-destination "$STATE/artifacts"
    echo "mlflow: serving http://$HOST:$MLFLOW_PORT (basic auth, $MLFLOW_WORKERS workers; log $STATE/mlflow.log)"
    echo "tracking.uri: http://$HOST:$MLFLOW_PORT   credentials: set -a; . $MLFLOW_ADMIN_FILE; set +a"
}

# ---- Ray: head and workers, token authentication, every port settable ----

ray_flags() {  # name=flag pairs for the ports that are set, plus the resources
    local var flag
    for pair in DASHBOARD_AGENT_PORT=dashboard-agent-listen-port DASHBOARD_AGENT_GRPC_PORT=dashboard-agent-grpc-port \
                RUNTIME_ENV_AGENT_PORT=runtime-env-agent-port NODE_MANAGER_PORT=node-manager-port \
                OBJECT_MANAGER_PORT=object-manager-port METRICS_EXPORT_PORT=metrics-export-port \
                MIN_WORKER_PORT=min-worker-port MAX_WORKER_PORT=max-worker-port RAY_NUM_CPUS=num-cpus RAY_NUM_GPUS=num-gpus; do
        var=${pair%%=*} flag=${pair#*=}
        [[ -n ${!var:-} ]] && printf -- '--%s=%s\n' "$flag" "${!var}"
    done
    return 0
}

ray_token() {  # head: generate the cluster's token once; worker: it must have been copied here
    [[ $RAY_AUTH_MODE == token ]] || return 0
    if [[ $1 == head ]]; then new_secret_file "$RAY_AUTH_TOKEN_PATH" "$(python -c 'import secrets; print(secrets.token_hex(32), end="")')"; fi
    check_mode "$RAY_AUTH_TOKEN_PATH" RAY_AUTH_TOKEN_PATH
}

# This node (by its temp dir) is ALIVE in the GCS's node list.
ray_node_up() { python -m search.jobs nodes --address "$GCS" --temp-dir "$RAY_TEMP" --quiet; }

ray_piece() {  # name gcs-address extra-args...
    local name=$1; GCS=$2; RAY_TEMP=$STATE/$name; shift 2
    printf 'GCS=%s\nRAY_TEMP=%s\n' "$GCS" "$RAY_TEMP" >"$STATE/$name.env"
    local flags; mapfile -t flags < <(ray_flags)
    spawn "$name" ray_node_up ray start --block --node-ip-address="$HOST" --temp-dir="$RAY_TEMP" \
        --disable-usage-stats "${flags[@]}" "$@"
}

start_head() {
    ray_token head
    local client=(); [[ -n ${RAY_CLIENT_PORT:-} ]] && client=(--ray-client-server-port="$RAY_CLIENT_PORT")
    printf 'DASHBOARD=http://%s:%s\n' "$DASHBOARD_HOST" "$DASHBOARD_PORT" >"$STATE/ray-head.url"
    ray_piece ray-head "$HOST:$RAY_PORT" --head --port="$RAY_PORT" --dashboard-host="$DASHBOARD_HOST" \
        --dashboard-port="$DASHBOARD_PORT" "${client[@]}"
    echo "ray-head: in Ray's node list; GCS $HOST:$RAY_PORT, dashboard http://$DASHBOARD_HOST:$DASHBOARD_PORT (auth: $RAY_AUTH_MODE)"
    echo "workers: copy $RAY_AUTH_TOKEN_PATH, then PEFTSEARCH_HEAD=$HOST:$RAY_PORT deploy/cluster.sh worker"
    echo "submit: RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH peftsearch submit SPEC --address http://$DASHBOARD_HOST:$DASHBOARD_PORT"
}

start_worker() {
    ray_token worker
    ray_piece ray-worker "$HEAD" --address="$HEAD"
    echo "ray-worker: in Ray's node list of $HEAD (log $STATE/ray-worker.log)"
}

# ---- status and stop ----

piece_health() {  # name: one line
    local name=$1 pid=; [[ -f $STATE/$name.pid ]] && pid=$(cat "$STATE/$name.pid")
    if ! alive "$name"; then echo "$name: not running"; return 1; fi
    local ok
    case $name in
        mlflow) . "$STATE/mlflow.env"; ok=$(curl -fsS --max-time 5 "$MLFLOW_URL/health" 2>/dev/null && echo y || true) ;;
        ray-*) . "$STATE/$name.env"; ok=$(ray_node_up 2>/dev/null && echo y || true) ;;
    esac
    if [[ -n $ok ]]; then echo "$name: healthy (pid $pid)"; else echo "$name: running but not serving (pid $pid); see $STATE/$name.log"; return 1; fi
}

status() {
    local bad=0 name
    for name in mlflow ray-head ray-worker; do
        [[ -f $STATE/$name.pid || -f $STATE/$name.env ]] || continue
        piece_health "$name" || bad=1
    done
    if [[ -d $STATE/pgdata ]]; then
        if pg_status && "$(pg_tool pg_isready)" -q -h "$HOST" -p "$PG_PORT"; then echo "postgres: healthy ($HOST:$PG_PORT)"
        else echo "postgres: not running"; bad=1; fi
    fi
    return $bad
}

stop_one() {
    alive "$1" || { rm -f "$STATE/$1.pid"; return 0; }
    local pid; pid=$(cat "$STATE/$1.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 30); do pid_alive "$pid" || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$STATE/$1.pid"
    echo "$1: stopped"
}

stop() {
    for name in ray-worker ray-head mlflow; do stop_one "$name"; done
    rm -f "$STATE"/*.env "$STATE/ray-head.url"
    if [[ -d $STATE/pgdata ]] && pg_status; then pg_stop; echo "postgres: stopped"; fi
}

case ${1:-} in
    tracking|status|stop) "$1" ;;
    head) start_head ;;
    worker) start_worker ;;
    *) die "usage: deploy/cluster.sh tracking|head|worker|status|stop (see the comments at the top)" ;;
esac
