#!/bin/sh
# Benchmarks the node agent on this machine (see bench/agentbench):
#   - latency from the last inbox file written to the reload action
#     starting (goal <= 300 ms, the settle time included);
#   - resident memory after IDLE seconds (default 60) with three bundles
#     (goal <= 12 MiB);
#   - CPU time over those IDLE seconds (goal < 20 ms).
# The idle figures run two agents side by side, twice (A, B, A, B): with
# Go's default GC settings (as shipped) and with a tighter GC, to show
# whether GOGC/GOMEMLIMIT would buy anything.
#
#   ./bench/agent.sh            # DROPS=30 IDLE=60
#   DROPS=10 IDLE=10 ./bench/agent.sh
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/certkeeper" ./cmd/certkeeper
go build -o "$tmp/agentbench" ./bench/agentbench
"$tmp/agentbench" -certkeeper "$tmp/certkeeper" -dir "$tmp" -drops "${DROPS:-30}" -idle "${IDLE:-60}s"
