#!/bin/sh
# A PostgreSQL cluster for MLflow: made on first start (the `mlflow` role owns
# the tracking and the auth databases; passwords by SCRAM), then served.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
    "$bin/initdb" -D "$data" -U postgres -E UTF8 \
        --auth-local=peer --auth-host=scram-sha-256 > /dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
password_encryption = scram-sha-256
CONF
    echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
    "$bin/pg_ctl" -D "$data" -w -o "-c listen_addresses=''" start > /dev/null
    # The password goes through a psql variable, quoted by psql itself.
    psql -h /tmp -U postgres -v ON_ERROR_STOP=1 -q -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
SQL
    "$bin/pg_ctl" -D "$data" -w stop > /dev/null
fi
unset POSTGRES_PASSWORD
exec "$bin/postgres" -D "$data"
