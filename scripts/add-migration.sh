#!/usr/bin/env bash
# Adds an EF Core migration for both providers (SQLite and PostgreSQL); each has its own set
# under migrations/<Provider>/ because their SQL differs. Usage: scripts/add-migration.sh Name
set -euo pipefail
name=${1:?usage: scripts/add-migration.sh MigrationName}
cd "$(dirname "$0")/.."
dotnet tool restore >/dev/null
for pair in Sqlite:SqliteCertPortalDbContext Postgres:NpgsqlCertPortalDbContext; do
  dir=${pair%%:*}; ctx=${pair##*:}
  # EF Core updates the model snapshot only where it looks for it, inside the project directory
  # (by namespace); keep it with the migrations and move it there just for the command.
  snapshot="migrations/$dir/${ctx}ModelSnapshot.cs"
  scratch="src/CertPortal/CertPortal/Migrations/$dir"
  mkdir -p "$scratch"
  [ -f "$snapshot" ] && mv "$snapshot" "$scratch/"
  dotnet ef migrations add "$name" --project src/CertPortal --context "$ctx" \
    --output-dir "../../migrations/$dir" --namespace "CertPortal.Migrations.$dir" || status=$?
  mv "$scratch/${ctx}ModelSnapshot.cs" "$snapshot"
  rm -rf src/CertPortal/CertPortal
  [ -z "${status:-}" ] || exit "$status"
done
rm -f src/CertPortal/design-time.db
