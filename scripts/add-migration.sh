#!/usr/bin/env bash
# Adds an EF Core migration for both providers (SQLite and PostgreSQL); each has its own set
# under migrations/<Provider>/ because their SQL differs. Usage: scripts/add-migration.sh Name
set -euo pipefail
name=${1:?usage: scripts/add-migration.sh MigrationName}
cd "$(dirname "$0")/.."
dotnet tool restore >/dev/null
for pair in Sqlite:SqliteCertPortalDbContext Postgres:NpgsqlCertPortalDbContext; do
  dir=${pair%%:*}; ctx=${pair##*:}
  dotnet ef migrations add "$name" --project src/CertPortal --context "$ctx" \
    --output-dir "../../migrations/$dir" --namespace "CertPortal.Migrations.$dir"
done
rm -f src/CertPortal/design-time.db
