#!/usr/bin/env bash
# The MLflow server of the KubeRay deployment (deploy/kubernetes/mlflow.yaml runs this script from
# a ConfigMap; tests/deploy run the same script on loopback with the same variables):
# the basic-auth app, runs in PostgreSQL database MLFLOW_DB, users in MLFLOW_AUTH_DB.
#
#   PGHOST PGPORT PGUSER PGPASSWORD   PostgreSQL (libpq's variables; no password on a command line)
#   MLFLOW_SECRETS_DIR   a Secret volume: files MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD
#                        (the admin) and MLFLOW_FLASK_SERVER_SECRET_KEY, readable by no one else
#   MLFLOW_HOST [0.0.0.0]  MLFLOW_PORT [5000]  MLFLOW_WORKERS [2]
#   MLFLOW_DB [mlflow]  MLFLOW_AUTH_DB [mlflow_auth]  MLFLOW_ARTIFACTS [/artifacts]
set -euo pipefail
die() { echo "mlflow-server.sh: $*" >&2; exit 2; }

dir=${MLFLOW_SECRETS_DIR:?MLFLOW_SECRETS_DIR: not set}
read_secret() {
    local f=$dir/$1
    [[ -r $f ]] || die "MLFLOW_SECRETS_DIR: $f is missing"
    local mode; mode=$(stat -L -c %a "$f")
    (( (8#$mode & 8#007) == 0 )) || die "MLFLOW_SECRETS_DIR: $f has mode $mode; others must not read it"
    cat "$f"
}
user=$(read_secret MLFLOW_TRACKING_USERNAME)
pass=$(read_secret MLFLOW_TRACKING_PASSWORD)
export MLFLOW_FLASK_SERVER_SECRET_KEY; MLFLOW_FLASK_SERVER_SECRET_KEY=$(read_secret MLFLOW_FLASK_SERVER_SECRET_KEY)
: "${PGHOST:?PGHOST: not set}" "${PGUSER:?PGUSER: not set}"

# The auth app's configuration holds the admin's password: a private file, gone when we exit.
conf=$(mktemp -d); trap 'rm -rf "$conf"' EXIT
(umask 077; cat >"$conf/auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://$PGUSER@$PGHOST:${PGPORT:-5432}/${MLFLOW_AUTH_DB:-mlflow_auth}
admin_username = $user
admin_password = $pass
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
)
export MLFLOW_AUTH_CONFIG_PATH=$conf/auth.ini
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false   # peftsearch runs none of MLflow's server-side jobs
mlflow server --app-name basic-auth \
    --backend-store-uri "postgresql+psycopg2://$PGUSER@$PGHOST:${PGPORT:-5432}/${MLFLOW_DB:-mlflow}" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" --workers "${MLFLOW_WORKERS:-2}" \
    --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS:-/artifacts}" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; rm -rf "$conf"' TERM INT
wait $pid
