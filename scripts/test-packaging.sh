#!/usr/bin/env bash
# The Linux packages, installed for real on this machine (Debian, root): builds the .deb of the
# agent from the binaries the tests use, installs it with dpkg -i, checks files, permissions, the
# system user, the units (systemd-analyze verify), `run --check` with the shipped config, first-start
# enrollment from an MDM-placed token file as the service user with only the unit's capabilities,
# an upgrade that keeps local config and identity, and that purge leaves nothing behind. Then the
# .rpm is built and inspected (rpm cannot be installed on Debian).
#
#   bash scripts/test-packaging.sh [BIN_DIR]     # BIN_DIR default target/debug (cargo build --bins)
#
# Not root: skipped with a message, or a failure when SHADOWAI_REQUIRE_NETLAB=1 (as scripts/test.sh
# sets: the machine is expected to run every root test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
bin_dir=${1:-target/debug}
passed=0 failed=0

if [[ $(id -u) -ne 0 ]] || ! command -v dpkg >/dev/null; then
    message="packaging test needs root on a Debian machine (dpkg -i)"
    if [[ ${SHADOWAI_REQUIRE_NETLAB:-} == 1 ]]; then
        echo "FAILED: $message, and SHADOWAI_REQUIRE_NETLAB=1" >&2
        exit 1
    fi
    echo "skipped: $message"
    exit 0
fi
for package in shadowai-agent shadowai-collector; do
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q installed; then
        echo "FAILED: $package is already installed on this machine; the test would replace it" >&2
        exit 1
    fi
done
if getent passwd shadowai >/dev/null || getent passwd shadowai-collector >/dev/null ||
    [[ -e /etc/shadowai || -e /var/lib/shadowai || -e /var/lib/shadowai-collector ]]; then
    echo "FAILED: a shadowai user, /etc/shadowai or /var/lib/shadowai* exists; the test would remove it" >&2
    exit 1
fi

work=$(mktemp -d /tmp/shadowai-packaging.XXXXXX)
collector_pid=""
cleanup() {
    local status=$?
    [[ -n $collector_pid ]] && kill "$collector_pid" 2>/dev/null
    for package in shadowai-agent shadowai-collector; do
        if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok'; then
            dpkg --purge "$package" >/dev/null 2>&1 || true
        fi
    done
    [[ -n ${collector_data_made:-} ]] && rm -rf /var/lib/shadowai-collector
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
mode_owner() { stat -c '%a %U:%G' "$1"; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
started=$SECONDS
deb=$(deploy/linux/build-packages.sh --bin-dir "$bin_dir" --out "$work/dist" --deb --package agent --fast)
echo "built $(basename "$deb") ($(du -h "$deb" | cut -f1)) in $((SECONDS - started)) s"

# --------------------------------------------------------------------------- the package itself
contents=$(dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}' | sed 's#\./#/#' | sort -k3)
expect_entry() { # expect_entry MODE PATH
    grep -qE "^$1 root/root $2\$" <<<"$contents"
}
check "binary 0755 root" expect_entry '-rwxr-xr-x' /usr/bin/shadowai-agent
check "service unit 0644" expect_entry '-rw-r--r--' /lib/systemd/system/shadowai-agent.service
check "path unit 0644" expect_entry '-rw-r--r--' /lib/systemd/system/shadowai-agent.path
check "config 0644" expect_entry '-rw-r--r--' /etc/shadowai/agent.toml
check "copyright" expect_entry '-rw-r--r--' /usr/share/doc/shadowai-agent/copyright
check "conffile declared" grep -qx /etc/shadowai/agent.toml <(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
outside=$(awk '$1 !~ /^d/ {print $3}' <<<"$contents" |
    grep -vE '^/(usr/bin|usr/share/doc/shadowai-agent|lib/systemd/system|etc/shadowai)/' || true)
check "no file outside the expected directories" test -z "$outside"

# --------------------------------------------------------------------------- install
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }
check "dpkg status installed" bash -c "dpkg-query -W -f='\${Status}' shadowai-agent | grep -qx 'install ok installed'"
check "system user shadowai" bash -c '
    IFS=: read -r _ _ uid _ _ home shell < <(getent passwd shadowai)
    ((uid < 1000)) && [[ $home == /var/lib/shadowai && $shell == /usr/sbin/nologin ]]'
check "group shadowai" bash -c 'getent group shadowai >/dev/null'
check "state dir 0700 shadowai" test "$(mode_owner /var/lib/shadowai)" = "700 shadowai:shadowai"
check "installed binary 0755 root" test "$(mode_owner /usr/bin/shadowai-agent)" = "755 root:root"
check "installed config 0644 root" test "$(mode_owner /etc/shadowai/agent.toml)" = "644 root:root"
check "installed binary is the tested one" cmp -s <(/usr/bin/shadowai-agent --version) <("$bin_dir/shadowai-agent" --version)
check "service enabled for boot (deb-systemd-helper)" \
    test -L /etc/systemd/system/multi-user.target.wants/shadowai-agent.service
check "path unit enabled (starts the agent when the token appears)" \
    test -L /etc/systemd/system/multi-user.target.wants/shadowai-agent.path

if systemd-analyze verify /lib/systemd/system/shadowai-agent.service \
    /lib/systemd/system/shadowai-agent.path >"$work/verify.log" 2>&1; then
    ok "systemd-analyze verify"
else
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify"
fi
if systemd-analyze security --offline=true /lib/systemd/system/shadowai-agent.service \
    >"$work/security.log" 2>&1; then
    echo "    $(grep -i 'overall exposure' "$work/security.log" || tail -n 1 "$work/security.log")"
fi
check "unit grants exactly the four capabilities" grep -qx \
    'AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH' \
    /lib/systemd/system/shadowai-agent.service
for setting in NoNewPrivileges=yes ProtectSystem=strict StateDirectory=shadowai ProtectHome=read-only; do
    check "unit has $setting" grep -qx "$setting" /lib/systemd/system/shadowai-agent.service
done

check "run --check accepts the shipped config" \
    bash -c '/usr/bin/shadowai-agent run --check --config /etc/shadowai/agent.toml >/dev/null'
set +e
/usr/bin/shadowai-agent run --check --config <(printf 'colector = "x"\n') >/dev/null 2>"$work/bad.log"
bad_status=$?
set -e
check "run --check refuses a bad config with exit 2 and names the key" \
    bash -c "[[ $bad_status == 2 ]] && grep -q colector '$work/bad.log'"

# ----------------------------------------------- first start: enrollment from an MDM-placed token
# A real collector on loopback; the MDM places the token and the config; the agent runs as the unit
# would: user shadowai, only the unit's capabilities, no new privileges.
collector_data=$work/collector
mkdir -p "$collector_data"
"$bin_dir/shadowai-collector" serve --data-dir "$collector_data" \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$work/collector.log" 2>&1 &
collector_pid=$!
grpc=""
for _ in $(seq 1 120); do
    grpc=$(sed -n 's#.*agents: https://\([0-9.:]*\) .*#\1#p' "$work/collector.log" | head -n 1)
    [[ -n $grpc ]] && break
    sleep 0.25
done
[[ -n $grpc ]] || { cat "$work/collector.log" >&2; echo "collector did not start" >&2; exit 1; }
token=$("$bin_dir/shadowai-collector" token create --group linux-fleet --data-dir "$collector_data")
install -m 0600 /dev/null /etc/shadowai/enrollment-token
printf '%s\n' "$token" >/etc/shadowai/enrollment-token
sed -i "s|^# collector = .*|collector = \"https://$grpc\"|" /etc/shadowai/agent.toml
caps=net_raw,net_admin,sys_ptrace,dac_read_search
setpriv --reuid=shadowai --regid=shadowai --init-groups --no-new-privs \
    --inh-caps="+${caps//,/,+}" --ambient-caps="+${caps//,/,+}" --bounding-set="-all,+${caps//,/,+}" \
    env SHADOWAI_LOG=info /usr/bin/shadowai-agent run --config /etc/shadowai/agent.toml \
    >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 120); do
    [[ -f /var/lib/shadowai/agent.crt ]] && break
    sleep 0.25
done
check "agent enrolled from the token file as user shadowai" test -f /var/lib/shadowai/agent.crt
check "agent key 0600 owned by shadowai" test "$(mode_owner /var/lib/shadowai/agent.key 2>/dev/null)" = "600 shadowai:shadowai"
check "collector lists the agent in the token's group" \
    bash -c "'$bin_dir/shadowai-collector' agent list --data-dir '$collector_data' | grep -q 'linux-fleet'"
kill "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true
check "status as root reads the service's state" \
    bash -c "/usr/bin/shadowai-agent status --config /etc/shadowai/agent.toml >/dev/null"
kill "$collector_pid" 2>/dev/null || true
wait "$collector_pid" 2>/dev/null || true
collector_pid=""

# --------------------------------------------------------------------------- upgrade
uid_before=$(id -u shadowai)
cert_before=$(sha256sum /var/lib/shadowai/agent.crt | cut -d' ' -f1)
deb2=$(deploy/linux/build-packages.sh --bin-dir "$bin_dir" --out "$work/dist2" --deb --package agent \
    --fast --version "$version+upgrade1")
dpkg -i --force-confold "$deb2" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; exit 1; }
check "upgraded to the new version" test "$(dpkg-query -W -f='${Version}' shadowai-agent)" = "$version+upgrade1"
check "upgrade keeps the local config (conffile)" grep -q "^collector = \"https://$grpc\"" /etc/shadowai/agent.toml
check "upgrade keeps the identity" test "$(sha256sum /var/lib/shadowai/agent.crt | cut -d' ' -f1)" = "$cert_before"
check "upgrade keeps the user" test "$(id -u shadowai)" = "$uid_before"
check "state dir still 0700 shadowai" test "$(mode_owner /var/lib/shadowai)" = "700 shadowai:shadowai"

# --------------------------------------------------------------------------- remove, then purge
dpkg --remove shadowai-agent >/dev/null 2>&1
check "remove keeps the conffile" test -f /etc/shadowai/agent.toml
check "remove deletes the binary" test ! -e /usr/bin/shadowai-agent
dpkg --purge shadowai-agent >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; exit 1; }
leftovers=$(find /etc /lib/systemd /usr/lib/systemd /usr/bin /usr/share/doc /var/lib -xdev \
    -name '*shadowai*' 2>/dev/null | grep -v -e '^/var/lib/dpkg/' || true)
check "purge leaves no file behind" test -z "$leftovers"
[[ -n $leftovers ]] && echo "$leftovers" >&2
check "purge removes the user" bash -c '! getent passwd shadowai'
check "purge removes the group" bash -c '! getent group shadowai'
check "dpkg forgets the package" bash -c "! dpkg-query -W -f='\${Status}' shadowai-agent 2>/dev/null | grep -q installed"

# --------------------------------------------------------------------------- the collector package
collector_deb=$(deploy/linux/build-packages.sh --bin-dir "$bin_dir" --out "$work/dist" --deb \
    --package collector --fast)
dpkg -i "$collector_deb" >"$work/collector-install.log" 2>&1 ||
    { cat "$work/collector-install.log" >&2; exit 1; }
collector_data_made=1
check "collector: system user shadowai-collector" bash -c 'getent passwd shadowai-collector >/dev/null'
check "collector: data dir 0700" \
    test "$(mode_owner /var/lib/shadowai-collector)" = "700 shadowai-collector:shadowai-collector"
check "collector: config 0640 readable by the service only" \
    test "$(mode_owner /etc/shadowai/collector.toml)" = "640 root:shadowai-collector"
if systemd-analyze verify /lib/systemd/system/shadowai-collector.service >"$work/verify-collector.log" 2>&1; then
    ok "collector: systemd-analyze verify"
else
    cat "$work/verify-collector.log" >&2
    fail "collector: systemd-analyze verify"
fi
if systemd-analyze security --offline=true /lib/systemd/system/shadowai-collector.service \
    >"$work/security-collector.log" 2>&1; then
    echo "    $(grep -i 'overall exposure' "$work/security-collector.log" || true)"
fi
# the shipped config, as the service user, serves and answers /healthz (then stops)
setpriv --reuid=shadowai-collector --regid=shadowai-collector --init-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all \
    /usr/bin/shadowai-collector serve --config /etc/shadowai/collector.toml \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$work/collector-serve.log" 2>&1 &
serve_pid=$!
http=""
for _ in $(seq 1 120); do
    http=$(sed -n 's#.*dashboard: http://\([0-9.:]*\)/.*#\1#p' "$work/collector-serve.log" | head -n 1)
    [[ -n $http ]] && break
    sleep 0.25
done
check "collector: the shipped config serves as the service user" \
    bash -c "[[ -n '$http' ]] && exec 3<>/dev/tcp/${http%:*}/${http##*:} && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && grep -q ready <&3"
kill "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
check "collector: CA key 0600 in the data dir" \
    test "$(mode_owner /var/lib/shadowai-collector/ca.key 2>/dev/null)" = "600 shadowai-collector:shadowai-collector"
dpkg --purge shadowai-collector >"$work/collector-purge.log" 2>&1
check "collector: purge keeps the evidence and the CA" test -f /var/lib/shadowai-collector/ca.key
check "collector: purge removes program, config and user" \
    bash -c '[[ ! -e /usr/bin/shadowai-collector && ! -e /etc/shadowai ]] && ! getent passwd shadowai-collector >/dev/null'
rm -rf /var/lib/shadowai-collector
collector_data_made=""

# --------------------------------------------------------------------------- rpm (built, inspected)
if command -v rpmbuild >/dev/null; then
    rpm_file=$(deploy/linux/build-packages.sh --bin-dir "$bin_dir" --out "$work/rpm" --rpm --package agent --fast)
    files=$(rpm -qpl "$rpm_file" 2>/dev/null)
    for path in /usr/bin/shadowai-agent /usr/lib/systemd/system/shadowai-agent.service \
        /usr/lib/systemd/system/shadowai-agent.path /etc/shadowai/agent.toml; do
        check "rpm holds $path" grep -qx "$path" <<<"$files"
    done
    check "rpm marks agent.toml as config" grep -qx /etc/shadowai/agent.toml <(rpm -qpc "$rpm_file" 2>/dev/null)
    check "rpm scriptlets create and remove the user" \
        bash -c "rpm -qp --scripts '$rpm_file' 2>/dev/null | grep -q 'useradd -r' && rpm -qp --scripts '$rpm_file' 2>/dev/null | grep -q 'userdel shadowai'"
else
    fail "rpmbuild missing (Debian package rpm; scripts/test.sh installs it)"
fi

echo "packaging: $passed passed, $failed failed"
((failed == 0))
