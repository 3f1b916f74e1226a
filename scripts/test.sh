#!/usr/bin/env bash
# Runs every raftcache test on a fresh machine. Installs what it needs first:
# Debian's redis-server/redis-tools (the reference server and real clients) and
# the Python test packages. Usage: scripts/test.sh   (CI runs it via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

sudo_if_needed() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

step "system packages"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v objcopy >/dev/null || missing+=(binutils)  # deploy/image/build.sh
command -v systemd-analyze >/dev/null || missing+=(systemd)  # tests/deploy: verify the unit
command -v ip >/dev/null || missing+=(iproute2)  # tests/chaos: network namespaces
command -v iptables >/dev/null || missing+=(iptables)  # tests/chaos: partitions
command -v chromium >/dev/null || missing+=(chromium)  # tests/chaos/test_report.py: the HTML report in headless chromium
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
redis-server --version

step "python packages"
for req in tests/python/requirements.txt tests/cluster/requirements.txt tests/durability/requirements.txt tests/deploy/requirements.txt; do
  if [ -f "$req" ]; then python3 -m pip install -q --disable-pip-version-check -r "$req"; fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build"
cargo build --workspace --all-targets
export RAFTCACHE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/raftcache"

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

step "python tests: real clients, the differential corpus against redis-server"
python3 -m pytest -q tests/python tests/differential

step "cluster tests: real node processes, kill -9, SIGSTOP, restarts"
python3 -m pytest -q tests/cluster

step "cluster tests with --threads 1 (one thread per node, as bench/cluster.py runs them)"
RAFTCACHE_NODE_ARGS="--threads 1" python3 -m pytest -q tests/cluster

step "durability tests: data directories, crashes, damaged files"
python3 -m pytest -q tests/durability

step "durability tests with --threads 1 (sled on a node's only thread)"
RAFTCACHE_NODE_ARGS="--threads 1" python3 -m pytest -q tests/durability

step "chaos: a short campaign in network namespaces (kills, pauses, partitions, slow and lossy links over every workload), its HTML report in headless chromium, and the unsafe switches each making a short run fail (about 3 min; longer: crates/chaos/README.md)"
python3 -m pytest -q tests/chaos

step "deployment: the FROM scratch image and docker compose (real Docker: kill the leader, rolling restart), run-local.sh, manifests"
python3 -m pytest -q tests/deploy

step "fuzzing: request decoder, frame parser, engine (30 s each; longer: scripts/fuzz.sh 600)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

step "all tests passed"
