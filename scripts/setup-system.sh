#!/usr/bin/env bash
# Installs what geosession's embedded PostGIS needs from the OS packages, when missing:
# PostgreSQL server binaries, PostGIS for that PostgreSQL, PgBouncer, openssl (the tests
# make certificates with it for a server that requires TLS) and GDAL's tools (the tests
# read exported files back with ogrinfo; benchmarks/ingest.py compares with ogr2ogr).
# With GEOSESSION_DATABASE_URL set nothing is installed: that server is used instead.
set -euo pipefail

say() { printf 'geosession setup: %s\n' "$*" >&2; }

if [ -n "${GEOSESSION_DATABASE_URL:-}" ]; then
  exit 0
fi

pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

postgis_present() {
  local bindir=$1 major
  major=$(basename "$(dirname "$bindir")")
  ls /usr/share/postgresql/"$major"/extension/postgis.control >/dev/null 2>&1
}

bindir=$(pg_bindir)
if [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && postgis_present "$bindir" \
   && command -v pgbouncer >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 \
   && command -v ogrinfo >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "PostgreSQL with PostGIS is missing: install postgresql and postgresql-postgis (e.g. 'sudo apt-get install postgresql postgresql-postgis pgbouncer openssl gdal-bin'), or set GEOSESSION_DATABASE_URL to a PostGIS database."
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "installing PostgreSQL, PostGIS, PgBouncer, openssl and GDAL's tools from the OS packages"
apt-get update -qq
if [ -z "$bindir" ]; then
  apt-get install -y -qq postgresql >/dev/null
  bindir=$(pg_bindir)
fi
major=$(basename "$(dirname "$bindir")")
apt-get install -y -qq "postgresql-$major-postgis-3" pgbouncer openssl gdal-bin >/dev/null
postgis_present "$bindir" || { say "PostGIS did not install for PostgreSQL $major"; exit 1; }
