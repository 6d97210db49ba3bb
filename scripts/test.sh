#!/usr/bin/env bash
# Runs every check of the project: formatting, clippy, build, and all tests on SQLite and
# PostgreSQL. On a fresh Debian machine, run as root, it first installs what the tests need.
#
#   bash scripts/test.sh                 # from anywhere
#   SHADOWAI_TEST_POSTGRES_URL=postgres://user@host:5432/postgres bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# System packages the tests need (Debian names). Later sensors add theirs here.
# The network lab (tests/netlab, tests/tests/e2e/netlab.rs): namespaces, servers and real clients.
# dnsmasq-base is the dnsmasq binary without the `dnsmasq` package's system service (which would
# try to take port 53 of the machine); the lab runs its own dnsmasq inside a namespace.
# The dashboard's browser tests (tests/tests/e2e/browser.rs) drive chromium through chromium-driver.
SYSTEM_PACKAGES=(postgresql
    iproute2 ethtool tcpdump tshark dnsmasq-base dnsutils gnutls-bin openssl curl wget chromium nodejs
    chromium-driver rpm binutils adduser systemd rsyslog poppler-utils gcc-mingw-w64-x86-64
    python3 python3-venv python3-pip python3-aiosmtpd)
# The packaging test (scripts/test-packaging.sh): rpm for rpmbuild, binutils for strip, adduser and
# systemd (systemd-analyze verify) for installing the .deb for real. gcc-mingw-w64-x86-64: ring's C
# code when the Windows agent is checked.
# Reports and SIEM export (collector/tests/reports.rs): a real syslog receiver, and poppler's
# pdftoppm/pdftotext to render and read the PDF report; python3-aiosmtpd, a real SMTP server that
# scheduled reports are mailed to (collector/tests/reports/email.rs).
# The API's OpenAPI check (tests/tests/e2e/openapi.rs): python3 with venv and pip, to install the
# pinned schemathesis from PyPI into target/schemathesis-venv.

started_all=$SECONDS
step_started=$SECONDS
step() {
    if [[ -n "${step_name:-}" ]]; then
        printf '    (%s: %ss)\n' "$step_name" "$((SECONDS - step_started))"
    fi
    step_name=$1
    step_started=$SECONDS
    printf '\n==> %s\n' "$step_name"
}

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_system_packages() {
    local missing=() package
    if ! command -v dpkg-query >/dev/null; then
        echo "not a Debian system: install these yourself if tests need them: ${SYSTEM_PACKAGES[*]}"
        return
    fi
    for package in "${SYSTEM_PACKAGES[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        echo "all present: ${SYSTEM_PACKAGES[*]}"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        # not fatal: a developer may point the tests at servers elsewhere
        echo "warning: missing ${missing[*]}; as root: apt-get install ${missing[*]}" >&2
        return
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

as_postgres() {
    (cd / && su postgres -c "$(printf '%q ' "$@")")
}

postgres_dir=""
stop_throwaway_postgres() {
    if [[ -n "$postgres_dir" ]]; then
        as_postgres "$pg_bin/pg_ctl" -D "$postgres_dir/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$postgres_dir"
    fi
}
on_exit() {
    local status=$?
    stop_throwaway_postgres
    if ((status != 0)); then
        printf '\n==> FAILED in step "%s" (exit %s) after %ss\n' "${step_name:-?}" "$status" \
            "$((SECONDS - started_all))" >&2
    fi
}
trap on_exit EXIT

can_connect() {
    psql "$1" -qtAc 'select 1' >/dev/null 2>&1
}

choose_postgres() {
    local local_url="postgres://postgres@127.0.0.1:5432/postgres"
    if [[ -n "${SHADOWAI_TEST_POSTGRES_URL:-}" ]]; then
        echo "using SHADOWAI_TEST_POSTGRES_URL from the environment"
    elif pg_isready -q -h 127.0.0.1 -p 5432 && can_connect "$local_url"; then
        SHADOWAI_TEST_POSTGRES_URL=$local_url
        echo "using the server on 127.0.0.1:5432"
    else
        # nothing usable (a freshly installed Debian cluster wants a password): start our own
        pg_bin=$(find /usr/lib/postgresql/*/bin -maxdepth 0 2>/dev/null | sort -V | tail -n 1) || true
        if [[ -z "$pg_bin" || $(id -u) -ne 0 ]]; then
            echo "no PostgreSQL usable: set SHADOWAI_TEST_POSTGRES_URL or run as root" >&2
            exit 1
        fi
        postgres_dir=$(mktemp -d /tmp/shadowai-test-pg.XXXXXX)
        chown postgres: "$postgres_dir"
        as_postgres "$pg_bin/initdb" -D "$postgres_dir/data" -U postgres --auth=trust \
            --no-locale -E UTF8 >"$postgres_dir/initdb.log" 2>&1 ||
            { cat "$postgres_dir/initdb.log" >&2; exit 1; }
        as_postgres "$pg_bin/pg_ctl" -D "$postgres_dir/data" -w -l "$postgres_dir/server.log" \
            -o "-p 55432 -k $postgres_dir -c listen_addresses=127.0.0.1" start >/dev/null ||
            { cat "$postgres_dir/server.log" >&2; exit 1; }
        SHADOWAI_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:55432/postgres"
        echo "started a throwaway cluster on 127.0.0.1:55432 ($postgres_dir)"
    fi
    export SHADOWAI_TEST_POSTGRES_URL
    export SHADOWAI_REQUIRE_POSTGRES=1
}

step "system packages"
install_system_packages

# the network lab's test fails (instead of skipping) when this machine cannot run it
export SHADOWAI_REQUIRE_NETLAB=1
# and so do the dashboard's browser tests without chromium and chromedriver
export SHADOWAI_REQUIRE_BROWSER=1

step "PostgreSQL for the tests"
choose_postgres

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo check: the agent for Windows (service mode, MSI payload)"
# The Windows agent is never run here; this keeps it compiling and its clippy lints clean. The
# standard library comes from rustup, the C parts of ring from Debian's MinGW cross compiler.
if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu ||
    rustup target add x86_64-pc-windows-gnu; then
    cargo clippy -p shadowai-agent --lib --bins --locked --target x86_64-pc-windows-gnu -- -D warnings
else
    echo "warning: cannot install the x86_64-pc-windows-gnu standard library (rustup); Windows agent NOT checked" >&2
fi

step "cargo build"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "deployment definitions (Helm chart, compose, Dockerfile, dashboards)"
bash scripts/test-deploy.sh target/debug/shadowai-collector

step "Linux packages (dpkg -i, upgrade, purge; rpm build)"
bash scripts/test-packaging.sh target/debug

step "done"
printf 'all checks passed in %ss\n' "$((SECONDS - started_all))"
