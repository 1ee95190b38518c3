#!/bin/sh
# A short run of every benchmark under bench/, so that one that no longer
# runs fails `make check`: one run each, a second or two, a few hundred
# operations. The figures are meaningless at this size and go to
# $BENCH_BUILD/bench-smoke-<name>.log only, never to bench/RESULTS.md.
#
# Needs root (each benchmark builds labs of namespaces); without it, says
# so and succeeds. The benchmarks run the build in $BENCH_BUILD (built
# with -Dbench_hooks=true by `make bench-smoke` first). Each is bounded by
# BENCH_TIMEOUT seconds; all run even when one fails, and the script fails
# if any did.
#
# Usage: scripts/bench-smoke.sh [NAME...]   (default: all of them)
set -u

cd "$(dirname "$0")/.." || exit 1
BENCH_BUILD=${BENCH_BUILD:-build-bench}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-90}
PYTHON=${PYTHON:-/usr/bin/python3}

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-smoke: skipped: the benchmarks need root (they build labs of network namespaces)"
	exit 0
fi
if [ ! -x "$BENCH_BUILD/src/ettmd/ettmd" ]; then
	echo "bench-smoke: $BENCH_BUILD/src/ettmd/ettmd is missing: run \`make bench-smoke\`" >&2
	exit 1
fi
# benchlib.py and the drivers read the build directory from ETTM_BUILD.
ETTM_BUILD=$(cd "$BENCH_BUILD" && pwd)
export ETTM_BUILD

# name and the smallest arguments that still exercise every part of it.
args_of() {
	case "$1" in
	guest-to-guest) echo "--runs 1 --seconds 1 --pings 20" ;;
	store) echo "--runs 1 --count 100 --burst 500 --inflight 100 --failovers 1" ;;
	switch) echo "--runs 1 --flows 200" ;;
	trust) echo "--runs 1 -n 20" ;;
	admission) echo "--runs 1" ;;
	nat) echo "--runs 1 --seconds 1 --cpu-seconds 1 --rate 5 --per-host-kpps 1" ;;
	nat-burst) echo "--runs 1 --connections 500 --block-size 256" ;;
	scale) echo "--hosts 4 --runs 1 --settle 1 --idle 2 --commits 20" ;;
	policy) echo "--runs 1 --sizes 10,100 --hosts 2 --changes 3 --seconds 1 --connections 5" ;;
	store-fanout) echo "--runs 1 --members 5,64 --commits 20 --burst 200 --idle-s 1 --voters-at first" ;;
	*) return 1 ;;
	esac
}

names=${*:-guest-to-guest store switch trust admission nat nat-burst policy store-fanout scale}
failed=""
start=$(date +%s)
for name in $names; do
	if ! args=$(args_of "$name"); then
		echo "bench-smoke: no benchmark $name" >&2
		exit 2
	fi
	log="$BENCH_BUILD/bench-smoke-$name.log"
	t0=$(date +%s)
	# SIGINT first: Python raises KeyboardInterrupt, so the driver's labs
	# are torn down by their own "with" blocks before it exits.
	# shellcheck disable=SC2086 # $args is a list of arguments
	timeout --signal=INT --kill-after=60 "$BENCH_TIMEOUT" "$PYTHON" "bench/$name" $args >"$log" 2>&1
	status=$?
	t=$(($(date +%s) - t0))
	if [ $status -eq 0 ]; then
		echo "bench-smoke: $name ok in ${t} s"
	else
		if [ $status -eq 124 ] || [ $status -eq 137 ]; then
			why="timed out after $BENCH_TIMEOUT s"
		else
			why="exit status $status"
		fi
		echo "bench-smoke: $name FAILED ($why) in ${t} s; the end of $log:"
		tail -n 15 "$log" | sed 's/^/    /'
		failed="$failed $name"
	fi
done
echo "bench-smoke: $(($(date +%s) - start)) s in all"
if [ -n "$failed" ]; then
	echo "bench-smoke: failed:$failed"
	exit 1
fi
