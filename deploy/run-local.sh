#!/usr/bin/env bash
# Runs raftcache locally for trying it out: builds the release binary and
# starts a node with its RESP port on 6379 (override with PORT=...). Ctrl-C
# stops it. (A three-node cluster replaces this once replication lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p raftcache-node
exec target/release/raftcache --port "${PORT:-6379}" --bind 127.0.0.1 "$@"
