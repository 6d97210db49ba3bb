#!/usr/bin/env bash
# UNTESTED HERE (needs macOS: pkgbuild, productbuild, codesign, notarytool). Builds a signed,
# notarizable installer package of the agent from a universal binary:
#
#   cargo build --release --locked -p shadowai-agent --target aarch64-apple-darwin
#   cargo build --release --locked -p shadowai-agent --target x86_64-apple-darwin
#   deploy/macos/build-pkg.sh --version 0.1.0 \
#       --app-identity "Developer ID Application: Example Corp (TEAMID)" \
#       --installer-identity "Developer ID Installer: Example Corp (TEAMID)"
#   xcrun notarytool submit dist/shadowai-agent-0.1.0.pkg --keychain-profile notary --wait
#   xcrun stapler staple dist/shadowai-agent-0.1.0.pkg
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version="" app_identity="" installer_identity=""
while (($#)); do
    case $1 in
        --version) version=$2; shift 2 ;;
        --app-identity) app_identity=$2; shift 2 ;;
        --installer-identity) installer_identity=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -n $version ]] || { echo "--version is required" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
payload=$work/payload
mkdir -p "$payload/usr/local/shadowai/bin" "$payload/usr/local/shadowai/share" "$payload/Library/LaunchDaemons"

lipo -create -output "$payload/usr/local/shadowai/bin/shadowai-agent" \
    "$root/target/aarch64-apple-darwin/release/shadowai-agent" \
    "$root/target/x86_64-apple-darwin/release/shadowai-agent"
chmod 0755 "$payload/usr/local/shadowai/bin/shadowai-agent"
if [[ -n $app_identity ]]; then
    # hardened runtime + secure timestamp: required for notarization; the PPPC profile matches
    # this identifier and team
    codesign --force --options runtime --timestamp --identifier com.shadowai.agent \
        --sign "$app_identity" "$payload/usr/local/shadowai/bin/shadowai-agent"
fi
install -m 0644 "$here/com.shadowai.agent.plist" "$payload/Library/LaunchDaemons/com.shadowai.agent.plist"
sed -e 's#^state_dir = .*#state_dir = "/Library/Application Support/shadowai/state"#' \
    -e 's#^enrollment_token_file = .*#enrollment_token_file = "/Library/Application Support/shadowai/enrollment-token"#' \
    "$root/deploy/linux/agent.toml" >"$payload/usr/local/shadowai/share/agent.toml.example"

pkgbuild --root "$payload" --scripts "$here/scripts" --identifier com.shadowai.agent \
    --version "$version" --install-location / --ownership recommended "$work/agent-component.pkg"

mkdir -p "$root/dist"
product=$root/dist/shadowai-agent-$version.pkg
sign=()
[[ -n $installer_identity ]] && sign=(--sign "$installer_identity" --timestamp)
productbuild --package "$work/agent-component.pkg" --identifier com.shadowai.agent.installer \
    --version "$version" "${sign[@]}" "$product"
echo "$product"
