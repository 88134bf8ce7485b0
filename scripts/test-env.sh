# Sourced by scripts/test and .ci/run: installs what the tests need when it is missing
# (redis-server and redis-cli, openssl, PostgreSQL, Chromium and chromedriver, with apt-get as
# root or through sudo) and starts PostgreSQL, exporting TEST_POSTGRES_URL for the tests.
# shellcheck shell=bash

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else "$@"; fi
}

apt_updated=no
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: $* (install it with your package manager; this script knows apt-get)" >&2
    return 1
  fi
  if [ "$apt_updated" = no ]; then
    as_root apt-get update -qq
    apt_updated=yes
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

log "tools"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 1
fi
# Tests spawn their own redis-server processes (and a cluster joined with redis-cli).
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
# The TLS test makes its certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || apt_install openssl
# The dashboard's browser tests drive headless Chromium (/usr/bin/chromium) through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
  apt_install chromium chromium-driver
fi
redis-server --version

# The SQL origin's and the demo's tests also run against PostgreSQL when one can be started
# here (a TEST_POSTGRES_URL already set is used as it is). pg_isready also comes with the
# client alone: look for the server itself.
if [ -n "${TEST_POSTGRES_URL:-}" ]; then
  echo "PostgreSQL tests use the TEST_POSTGRES_URL given"
elif ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql || echo "WARNING: PostgreSQL could not be installed; its end-to-end tests will be skipped" >&2
fi
if [ -z "${TEST_POSTGRES_URL:-}" ] && command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    for v in $(ls /etc/postgresql 2>/dev/null); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    # A fresh install authenticates TCP clients by password: give the postgres role one.
    as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
    as_root su postgres -c "createdb test" >/dev/null 2>&1 || true
    url="postgres://postgres:postgres@127.0.0.1:5432/test"
    if psql "$url" -qc 'select 1' >/dev/null 2>&1; then
      export TEST_POSTGRES_URL="$url"
      echo "PostgreSQL end-to-end tests use $TEST_POSTGRES_URL"
    fi
  fi
fi
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  echo "WARNING: no PostgreSQL could be started; the PostgreSQL tests will be skipped" >&2
fi

