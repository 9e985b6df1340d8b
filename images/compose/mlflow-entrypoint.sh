#!/bin/sh
# MLflow's basic-auth app reads its admin and database from a file: written
# here from the environment (0600), then the server replaces this shell.
set -eu
umask 077
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
: "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD}"
database="postgresql+psycopg2://mlflow:${POSTGRES_PASSWORD}@${POSTGRES_HOST:-postgres}"
cat > /etc/mlflow/auth.ini <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${database}/mlflow_auth
admin_username = ${MLFLOW_ADMIN_USERNAME:-admin}
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
INI
export MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/auth.ini
# In the environment, not the command line (which `ps` shows).
export MLFLOW_BACKEND_STORE_URI="${database}/mlflow"
# MLflow's GenAI job runners: seven processes FLOps does not use.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
unset POSTGRES_PASSWORD MLFLOW_ADMIN_PASSWORD
# Empty S3 settings are unset ones (boto3 would take an empty endpoint).
for name in MLFLOW_S3_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
    eval "[ -n \"\${$name:-}\" ] || unset $name"
done
exec python3 -m mlflow server --host 0.0.0.0 --port 5000 --workers 1 \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/artifacts}" --serve-artifacts --app-name basic-auth \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:*,127.0.0.1,127.0.0.1:*,mlflow,mlflow:*}"
