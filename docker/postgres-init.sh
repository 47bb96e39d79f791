#!/usr/bin/env bash
# Runs once, when the postgres volume is new (docker-entrypoint-initdb.d): one role and one
# database each for Airflow's metadata, totesys and the warehouse. Each role owns its
# database, so it can create the tables and schemas it needs; none is a superuser.
# Local development passwords (docker-compose.yaml uses the same in its URLs).
set -e

create_database() {  # name password (the role and the database share the name)
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$1" -v password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
}

create_database airflow airflow
create_database totesys totesys
create_database warehouse warehouse
