#!/bin/bash
# Runs once when the primary's data directory is created (docker-entrypoint-initdb.d): a role
# for the streaming replica and a pg_hba line that lets it connect.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
