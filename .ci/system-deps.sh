#!/usr/bin/env bash
# What the test suite needs from the system, installed when missing: the one installer that both
# `.ci/run` and `make test` (its `system-deps` prerequisite) call.
#   chromium                      tests/console browser tests (Playwright drives Debian's chromium)
#   espeak-ng                     voice/synthesize's local speech engine (tests/voice, tests/seeds)
#   node, npm + `npm ci`          tests/conformance/js (the socket.io and seed-004 Node clients)
#   xmlsec1, libxmlsec1-dev       tests/sso (pysaml2 signs with xmlsec1; the xmlsec wheel builds on it)
#   docker-compose                only where docker is and its compose plugin is not: .ci/run's
#                                 `docker-compose config` (without recommends: not Debian's engine)
# pgvector: the embedded PostgreSQL (pgserver) ships it; a server at DATABASE_URL gets it from
# .ci/pgvector.sh (CI calls it). Installs with apt-get as root or through `sudo -n`; otherwise it
# prints what is missing and exits 0 (`--strict`: exits 1), and the tests that need it fail
# with a message naming it. Idempotent: a machine that has everything spends well under a second.
set -uo pipefail
cd "$(dirname "$0")/.."

strict=0; [ "${1:-}" = "--strict" ] && strict=1
say() { echo "[system-deps] $*"; }

missing=()   # Debian packages to install
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
pkg-config --exists xmlsec1 2>/dev/null || missing+=(libxmlsec1-dev pkg-config)

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo_cmd="sudo -n"; else sudo_cmd="none"; fi
  fi
  if [ "$sudo_cmd" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]} — install them (Debian/Ubuntu: apt-get install ${missing[*]});"
    say "the tests that need them fail, each naming what it lacks"
    [ $strict = 1 ] && exit 1
  else
    say "installing ${missing[*]} (apt-get)"
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { say "apt-get failed for: ${missing[*]}"; [ $strict = 1 ] && exit 1; }
  fi
fi

# best effort, never fatal: a CI without it still checks the footprint (test_compose_footprint.py)
if command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 \
    && ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  say "installing docker-compose (apt-get, no recommends)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
    || say "apt-get failed for docker-compose; .ci/run skips its config check"
fi

# the Node test project's locked packages, again only when package-lock.json changed
js=tests/conformance/js
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    say "npm ci in $js"
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || { say "npm ci failed"; [ $strict = 1 ] && exit 1; }
  fi
fi
exit 0
