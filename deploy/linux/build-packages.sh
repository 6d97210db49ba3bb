#!/usr/bin/env bash
# Builds the Linux packages from binaries that are already built: .deb with dpkg-deb (Debian's own
# tool) and .rpm with rpmbuild (Debian package `rpm`), from one staged file tree per package.
#
#   cargo build --release --locked --bins
#   deploy/linux/build-packages.sh                         # dist/*.deb and dist/*.rpm (when rpmbuild exists)
#   deploy/linux/build-packages.sh --bin-dir target/debug --out /tmp/pkgs --deb
#
# Options: --bin-dir DIR (default target/release), --out DIR (default dist), --version V (default:
# the workspace version), --deb, --rpm (default: both, rpm only where rpmbuild exists),
# --package agent|collector (default: both), --fast (gzip -1 instead of xz: for tests).
# Why not cargo-deb / cargo-generate-rpm: see docs/deploy/linux.md ("How the packages are built").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin_dir=$root/target/release
out=$root/dist
version=""
want_deb=0 want_rpm=0 fast=0
packages=(agent collector)

while (($#)); do
    case $1 in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --deb) want_deb=1; shift ;;
        --rpm) want_rpm=1; shift ;;
        --package) packages=("$2"); shift 2 ;;
        --fast) fast=1; shift ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ((want_deb == 0 && want_rpm == 0)); then
    want_deb=1
    command -v rpmbuild >/dev/null && want_rpm=1
fi
if [[ -z $version ]]; then
    version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
fi
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "bad version '$version'" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies a binary, without debug information when binutils is there (packages stay small).
install_binary() {
    local from=$1 to=$2
    [[ -x $from ]] || { echo "missing $from: build it first (cargo build --release --locked --bins)" >&2; exit 2; }
    install -D -m 0755 "$from" "$to"
    if command -v strip >/dev/null; then
        strip --strip-debug "$to"
    fi
}

# stage_<package> DIR: the file tree of a package, as it lands on /.
stage_agent() {
    local dir=$1
    install_binary "$bin_dir/shadowai-agent" "$dir/usr/bin/shadowai-agent"
    install -D -m 0644 "$here/shadowai-agent.service" "$dir/lib/systemd/system/shadowai-agent.service"
    install -D -m 0644 "$here/shadowai-agent.path" "$dir/lib/systemd/system/shadowai-agent.path"
    install -D -m 0644 "$here/agent.toml" "$dir/etc/shadowai/agent.toml"
    install -D -m 0644 "$root/docs/deploy/linux.md" "$dir/usr/share/doc/shadowai-agent/README.md"
    install -D -m 0644 "$here/copyright" "$dir/usr/share/doc/shadowai-agent/copyright"
}

stage_collector() {
    local dir=$1
    install_binary "$bin_dir/shadowai-collector" "$dir/usr/bin/shadowai-collector"
    install -D -m 0644 "$here/shadowai-collector.service" "$dir/lib/systemd/system/shadowai-collector.service"
    install -D -m 0644 "$here/collector.toml" "$dir/etc/shadowai/collector.toml"
    install -D -m 0644 "$root/docs/OPERATIONS.md" "$dir/usr/share/doc/shadowai-collector/README.md"
    install -D -m 0644 "$here/copyright" "$dir/usr/share/doc/shadowai-collector/copyright"
}

build_deb() {
    local package=$1 name=shadowai-$1 arch tree size
    arch=$(dpkg --print-architecture)
    tree=$work/deb-$package
    "stage_$package" "$tree"
    install -d -m 0755 "$tree/DEBIAN"
    size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
        "$here/deb/$package/control" >"$tree/DEBIAN/control"
    install -m 0644 "$here/deb/$package/conffiles" "$tree/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        install -m 0755 "$here/deb/$package/$script" "$tree/DEBIAN/$script"
    done
    local compression=(-Zxz)
    ((fast)) && compression=(-Zgzip -z1)
    dpkg-deb --root-owner-group "${compression[@]}" --build "$tree" \
        "$out/${name}_${version}_${arch}.deb" >/dev/null
    echo "$out/${name}_${version}_${arch}.deb"
}

build_rpm() {
    local package=$1 name=shadowai-$1 top=$work/rpm-$1 arch
    arch=$(uname -m)
    mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS}
    "stage_$package" "$top/staged"
    # RPM distributions keep units under /usr/lib/systemd/system
    mkdir -p "$top/staged/usr/lib"
    mv "$top/staged/lib/systemd" "$top/staged/usr/lib/systemd"
    rmdir "$top/staged/lib"
    local rpm_version=${version//-/_} payload=()
    ((fast)) && payload=(--define "_binary_payload w1.gzdio")
    rpmbuild --quiet -bb "$here/rpm/$name.spec" \
        --define "_topdir $top" \
        --define "staged $top/staged" \
        --define "pkg_version $rpm_version" \
        --define "_build_id_links none" \
        --define "__strip /bin/true" "${payload[@]}" \
        --target "$arch" >/dev/null
    local built
    built=$(find "$top/RPMS" -name "*.rpm" | head -n 1)
    cp "$built" "$out/"
    echo "$out/$(basename "$built")"
}

for package in "${packages[@]}"; do
    [[ $package == agent || $package == collector ]] || { echo "unknown package $package" >&2; exit 2; }
    ((want_deb)) && build_deb "$package"
    if ((want_rpm)); then
        command -v rpmbuild >/dev/null || { echo "rpmbuild not found: apt-get install rpm" >&2; exit 2; }
        build_rpm "$package"
    fi
done
