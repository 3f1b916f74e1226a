#!/usr/bin/env bash
# Runs a three-node raftcache cluster on this machine for trying it out.
#
#   deploy/run-local.sh            # build, start nodes 1-3, Ctrl-C stops all three
#
# Node N listens for Redis clients on 6379+N-1 (6379, 6380, 6381), for peers
# on 7380+10*(N-1), for admin on 7379+10*(N-1) and serves Prometheus metrics
# on 9379+N-1 (9379, 9380, 9381: http://127.0.0.1:9379/metrics). Any node
# serves any client. Logs go to the terminal, prefixed with the node's name.
# Override the base ports with RESP_BASE / PEER_BASE / ADMIN_BASE /
# METRICS_BASE, add flags after `--`.
# Each node runs on one thread (THREADS=1, `--threads 1`): the three share this
# machine's CPUs, and one thread per node measured faster than a thread pool
# each (bench/cluster.py); THREADS=0 gives each node one thread per CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

resp_base=${RESP_BASE:-6379}
peer_base=${PEER_BASE:-7380}
admin_base=${ADMIN_BASE:-7379}
metrics_base=${METRICS_BASE:-9379}
threads=${THREADS:-1}
extra=("$@")

cargo build --release -p raftcache-node -p raftcache-ctl
# Where cargo put the binaries: CARGO_TARGET_DIR, build.target-dir in a cargo
# config, or ./target.
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/raftcache"
if [ ! -x "$bin" ]; then
  echo "run-local.sh: no raftcache binary at $bin after the build" >&2
  exit 1
fi

peers=""
for n in 1 2 3; do
  peers+="${peers:+,}$n=127.0.0.1:$((peer_base + 10 * (n - 1)))"
done

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for n in 1 2 3; do
  "$bin" --id "$n" --peers "$peers" --bind 127.0.0.1 \
    --port $((resp_base + n - 1)) \
    --raft-port $((peer_base + 10 * (n - 1))) \
    --admin-port $((admin_base + 10 * (n - 1))) \
    --metrics-port $((metrics_base + n - 1)) \
    --threads "$threads" \
    "${extra[@]}" > >(sed -u "s/^/[node$n] /") 2>&1 &
  pids+=("$!")  # the node's own pid (the log prefixer runs in a substitution)
done

# Say the nodes are up only once each answers the gRPC health check as
# SERVING (a member with a leader): a node that failed to start stops the lot.
ctl="$target_dir/release/raftcachectl"
endpoints="127.0.0.1:$admin_base,127.0.0.1:$((admin_base + 10)),127.0.0.1:$((admin_base + 20))"
deadline=$((SECONDS + 60))
until "$ctl" --endpoints "$endpoints" --timeout 2s health >/dev/null 2>&1; do
  for n in 1 2 3; do
    if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
      echo "run-local.sh: node $n exited during start (see its [node$n] lines above); stopping the others" >&2
      exit 1
    fi
  done
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run-local.sh: the nodes are not all serving after 60 s:" >&2
    "$ctl" --endpoints "$endpoints" --timeout 2s health >&2 || true
    exit 1
  fi
  sleep 0.5
done

echo "raftcache: three nodes on 127.0.0.1 ports $resp_base-$((resp_base + 2)); try: redis-cli -p $resp_base set hello world"
echo "admin: $ctl --endpoints $endpoints status"
echo "metrics: http://127.0.0.1:$metrics_base/metrics, :$((metrics_base + 1))/metrics, :$((metrics_base + 2))/metrics"
wait
