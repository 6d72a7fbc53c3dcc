#!/usr/bin/env bash
# Installs the pgvector extension into the PostgreSQL server at $DATABASE_URL when it lacks it
# (apps/knowledge's migration runs CREATE EXTENSION vector). Tries Debian's binary package
# postgresql-<major>-pgvector first; Debian 12 (bookworm) has none, so it then builds Debian's
# pgvector source package (from the next release's deb-src) against postgresql-server-dev-<major>.
# Needs root (or sudo) and a server on this machine. Idempotent: does nothing when the extension
# is available.
set -euo pipefail
PY_BIN="${PYTHON:-.venv/bin/python}"
sql() { "$PY_BIN" - "$1" <<'PY'
import os, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
    row = c.execute(sys.argv[1]).fetchone()
    print(row[0] if row else "")
PY
}
have=$(sql "select count(*) from pg_available_extensions where name = 'vector'" 2>/dev/null || echo error)
if [ "$have" = "1" ]; then echo "[ci] pgvector: available"; exit 0; fi
major=$(sql "select current_setting('server_version_num')::int / 10000")
sudo_cmd=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo -n"; else
    echo "[ci] FAIL: pgvector missing and this user can't install it (not root, no sudo)" >&2; exit 1; fi
fi
apt() { $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
echo "[ci] pgvector: installing for PostgreSQL $major"
apt update -qq
if apt install -y -qq "postgresql-$major-pgvector" >/dev/null 2>&1; then
  echo "[ci] pgvector: installed postgresql-$major-pgvector"; exit 0
fi
apt install -y -qq "postgresql-server-dev-$major" build-essential dpkg-dev >/dev/null
work=$(mktemp -d); src="$work/trixie.sources"
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$src"
opts=(-o "Dir::Etc::sourcelist=$src" -o "Dir::Etc::sourceparts=-" -o "APT::Get::List-Cleanup=0")
apt "${opts[@]}" update -qq
(cd "$work" && apt-get "${opts[@]}" source -qq pgvector >/dev/null)
dir=$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -1)
pg_config="/usr/lib/postgresql/$major/bin/pg_config"
make -s -C "$dir" PG_CONFIG="$pg_config" OPTFLAGS="" >/dev/null
$sudo_cmd make -s -C "$dir" PG_CONFIG="$pg_config" install >/dev/null
rm -rf "$work"
echo "[ci] pgvector: built $(basename "$dir") from Debian's source package for PostgreSQL $major"
