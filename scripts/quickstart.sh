#!/usr/bin/env bash
# The README's first command: build the collector and the agent, then run
# `shadowai-collector quickstart` (SQLite, private CA, admin login, an agent for this machine).
# Arguments are passed on, e.g. `./scripts/quickstart.sh --data-dir /tmp/demo --http-listen 127.0.0.1:9090`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust from https://rustup.rs and run this again" >&2
    exit 2
fi
echo "building shadowai (release; the first build takes a few minutes)..." >&2
cargo build --release --locked --quiet -p shadowai-collector -p shadowai-agent
exec ./target/release/shadowai-collector quickstart "$@"
