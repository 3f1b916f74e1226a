#!/usr/bin/env bash
# Fuzzes the parsers and the engine with libFuzzer (cargo fuzz): the client
# request decoder (arbitrary bytes, split arbitrarily), the RESP frame parser
# (parse/encode round trip) and the engine (any command of the table with
# arbitrary arguments; two replicas must agree and a snapshot must restore the
# same digest). See tests/fuzz/fuzz_targets/.
#
# Usage: scripts/fuzz.sh [seconds per target, default 60] [target ...]
#
# Installs cargo-fuzz if missing. libFuzzer's instrumentation flags are
# unstable rustc options; this machine has one stable toolchain, so the build
# runs with RUSTC_BOOTSTRAP=1, which allows them on stable. A finding fails the
# script and leaves the input under tests/fuzz/artifacts/<target>/; replay it
# with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -O <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(resp_request resp_frame engine)

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir tests/fuzz -O
for target in "${targets[@]}"; do
  mkdir -p "tests/fuzz/corpus/$target"
  log="tests/fuzz/$target.log"
  echo "fuzzing $target for ${seconds}s"
  if cargo fuzz run --fuzz-dir tests/fuzz -O "$target" -- \
      -max_total_time="$seconds" -max_len=1024 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$log" || true
  else
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed (full output: $log)" >&2
    exit 1
  fi
done
