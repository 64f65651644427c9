#!/usr/bin/env bash
# Installs the pgvector extension into the local PostgreSQL when it lacks it: Debian's
# package when the distribution has one for this server version, else pgvector 0.8.0
# built from the source tarball Debian's archive carries (cached under
# ~/.cache/llama-stack-rs/pgvector). Then enables it in the `test` database.
set -euo pipefail
PGVECTOR_VERSION=0.8.0
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
major=$(pg_config --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/' || true)
[ -n "$major" ] || major=$(ls /etc/postgresql | sort -n | tail -n1)
installed() {
  su postgres -c "psql -h 127.0.0.1 -d test -tAc \"SELECT 1 FROM pg_available_extensions WHERE name='vector'\"" | grep -q 1
}
if ! installed; then
  export DEBIAN_FRONTEND=noninteractive
  if apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1; then
    apt-get install -y -qq "postgresql-$major-pgvector" >/dev/null
  else
    dpkg -s "postgresql-server-dev-$major" >/dev/null 2>&1 \
      || { apt-get update -qq; apt-get install -y -qq "postgresql-server-dev-$major" make gcc >/dev/null; }
    cache="$HOME/.cache/llama-stack-rs/pgvector"
    mkdir -p "$cache"
    tarball="$cache/pgvector_$PGVECTOR_VERSION.orig.tar.gz"
    if [ ! -f "$tarball" ]; then
      curl -fsSL -o "$tarball.part" \
        "http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_$PGVECTOR_VERSION.orig.tar.gz"
      mv "$tarball.part" "$tarball"
    fi
    echo "$PGVECTOR_SHA256  $tarball" | sha256sum -c --quiet
    src=$(mktemp -d)
    tar -xzf "$tarball" -C "$src" --strip-components=1
    # OPTFLAGS="" keeps the build portable (no -march=native).
    make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" OPTFLAGS="" >/dev/null
    make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" install >/dev/null
    rm -rf "$src"
  fi
fi
su postgres -c "psql -h 127.0.0.1 -d test -qc 'CREATE EXTENSION IF NOT EXISTS vector'"
su postgres -c "psql -h 127.0.0.1 -d test -tAc \"SELECT 'pgvector ' || extversion FROM pg_extension WHERE extname='vector'\""
