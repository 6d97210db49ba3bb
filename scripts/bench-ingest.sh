#!/usr/bin/env bash
# Collector ingest benchmark: a real `shadowai-collector serve` and `loadgen` with N simulated
# agents over real gRPC + mTLS, on SQLite and on PostgreSQL, each followed by the raw insert rate
# of the same database in the same run. Figures go to docs/BENCHMARKS.md ("Collector ingest").
#
#   bash scripts/bench-ingest.sh                       # 1000 agents x 1000 observations, both databases
#   AGENTS=1000 EVENTS=1000 BACKENDS="sqlite" bash scripts/bench-ingest.sh
#   POSTGRES_ADMIN=postgres://postgres@127.0.0.1:5432/postgres bash scripts/bench-ingest.sh
#   BIN=target/debug/shadowai-collector AGENTS=200 bash scripts/bench-ingest.sh
#
# Writes simulated observations: it uses its own temporary data directory and database.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

AGENTS=${AGENTS:-1000}
EVENTS=${EVENTS:-1000}
BATCH=${BATCH:-500}
CONCURRENCY=${CONCURRENCY:-16}
RAW_ROWS=${RAW_ROWS:-200000}
BACKENDS=${BACKENDS:-"sqlite postgres"}
POSTGRES_ADMIN=${POSTGRES_ADMIN:-${SHADOWAI_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
EXTRA=${EXTRA:-}

# BIN=target/debug/shadowai-collector measures another build (say so beside the figures)
if [[ -z ${BIN:-} ]]; then
    cargo build --release -p shadowai-collector --bin shadowai-collector >&2
fi
bin=${BIN:-target/release/shadowai-collector}
work=$(mktemp -d)
serve_pid=
cleanup() {
    [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

for backend in $BACKENDS; do
    data=$work/$backend
    mkdir -p "$data"
    case $backend in
        sqlite) database="sqlite://$data/shadowai.db" ;;
        postgres)
            name="shadowai_bench_$(date +%s)"
            psql "$POSTGRES_ADMIN" -qc "CREATE DATABASE $name" >&2
            database="${POSTGRES_ADMIN%/*}/$name"
            ;;
    esac
    cat >"$data/collector.toml" <<EOF
[ingest_limits]
max_concurrent_ingest = $CONCURRENCY
EOF
    "$bin" --data-dir "$data" --database "$database" token create --group bench >/dev/null
    "$bin" --data-dir "$data" --database "$database" --config "$data/collector.toml" \
        serve --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 2>"$data/serve.log" &
    serve_pid=$!
    for _ in $(seq 100); do
        grpc=$(grep -o 'agents: https://[^ ]*' "$data/serve.log" | sed 's|agents: https://||' || true)
        [[ -n $grpc ]] && break
        sleep 0.2
    done
    echo "== $backend ($AGENTS agents x $EVENTS observations, batch $BATCH, $CONCURRENCY in flight)"
    # shellcheck disable=SC2086 # EXTRA is a list of options
    "$bin" --data-dir "$data" --database "$database" loadgen --collector "$grpc" \
        --agents "$AGENTS" --events "$EVENTS" --batch "$BATCH" --concurrency "$CONCURRENCY" \
        --watch-pid "$serve_pid" --raw-rows "$RAW_ROWS" $EXTRA
    if [[ $backend == postgres ]]; then
        psql "$database" -Atc "SELECT 'observations: ' || count(*) || ' rows, ' || pg_total_relation_size('observations') / greatest(count(*), 1) || ' bytes/row with indexes' FROM observations"
    else
        rows=$(sqlite3 "$data/shadowai.db" 'SELECT count(*) FROM observations' 2>/dev/null || echo "?")
        echo "observations: $rows rows, database file $(du -b "$data/shadowai.db" | cut -f1) bytes"
    fi
    kill "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=
    if [[ $backend == postgres ]]; then
        psql "$POSTGRES_ADMIN" -qc "DROP DATABASE $name WITH (FORCE)" >&2
    fi
done
