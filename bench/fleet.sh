#!/bin/bash
# fleet status and push against K real loopback sshd nodes (one sshd per
# node), with parallel-scp/parallel-ssh beside them at K=100, then the
# in-process simulation of fleet status over 10,000 nodes and the join
# benchmark. 1,000 idle sshd take about 1.3 GB.
#
# Usage: bench/fleet.sh              (as root: sshd serves logins)
#   KS=10,100,1000 bench/fleet.sh
set -eu
cd "$(dirname "$0")/.."
KS=${KS:-10,100,1000}
CERTKEEPER_FLEET_SCALE=$KS go test -count=1 -run 'TestFleetScale' -v -timeout 60m ./fleet/ | grep -E 'K=|ok|FAIL'
CERTKEEPER_FLEET_SIM=1 go test -count=1 -run 'TestSimulate10000' -v ./fleet/ | grep -E 'nodes in-process|ok|FAIL'
go test -run XXX -bench Join10000 -benchtime 5x -benchmem ./fleet/ | grep -E 'Benchmark|ok'
