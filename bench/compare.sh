#!/usr/bin/env bash
# Compares this library with Node Sockhop 1.8.4 and with raw Go sockets on
# the scenarios of `sockhop bench`, each side a pair of processes over
# loopback. Runs are interleaved (every implementation once per scenario,
# then the next repetition), so that a load change on the machine touches
# all of them alike, and the table shows medians.
#
#   bench/compare.sh                    # REPS=3, about 4 minutes on 2 cores
#   REPS=5 SCENARIOS="s1 s2seq" bench/compare.sh
#   KEEP=results.tsv bench/compare.sh  # keep every run's JSON line
#   DECODE=struct bench/compare.sh      # receivers decode into structs
#
# go-binary and go-json run `sockhop bench --inline`: handlers on the
# reading goroutine (ConnOptions.InlineHandlers), as in raw Go's loop; the
# bench's handlers never block. go-dispatched is binary mode with the
# library's default, handlers on goroutines of their own (one goroutine
# hand-off per message; blocking handlers allowed).
#
# Receivers decode every object fully, into a map by default on both Go
# sides (as raw Go's baseline and Node's JSON.parse do), so that the
# ratios compare the same work.
#
# Needs go, node and npm (Sockhop 1.8.4 is installed into
# internal/interop/node/node_modules if it is not there yet).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DECODE=${DECODE:-map}
SCENARIOS=${SCENARIOS:-"s1 s2seq s2seq-unix s2par s3 s4 s5"}
IMPLS=${IMPLS:-"go-binary go-json go-dispatched node-1.8.4 raw-go"}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sockhop" ./cmd/sockhop
go build -o "$tmp/rawgo" ./bench/rawgo
if [ ! -d internal/interop/node/node_modules/sockhop ]; then
	npm ci --prefix internal/interop/node --no-audit --no-fund >&2
fi

# Sizes keep a repetition near a minute: the slowest implementation of a
# scenario sets its length (Node 1.8.4 broadcasts at ~120k deliveries/s).
args_for() {
	case $1 in
	s1) echo "--scenario s1 --n 200000" ;;
	s2seq) echo "--scenario s2seq --n 10000" ;;
	s2seq-unix) echo "--scenario s2seq --n 10000 --transport unix" ;;
	s2par) echo "--scenario s2par --n 100000" ;;
	s3) echo "--scenario s3 --n 256" ;;
	s4) echo "--scenario s4 --n 5000" ;;
	s5) echo "--scenario s5" ;;
	*) echo "unknown scenario $1" >&2; exit 2 ;;
	esac
}

run() { # impl scenario
	local a
	a=$(args_for "$2")
	case $1 in
	go-binary) "$tmp/sockhop" bench --json --no-progress --inline --mode binary --decode "$DECODE" $a ;;
	go-json) "$tmp/sockhop" bench --json --no-progress --inline --mode json --decode "$DECODE" $a ;;
	go-dispatched) "$tmp/sockhop" bench --json --no-progress --mode binary --decode "$DECODE" $a ;;
	node-1.8.4) node bench/node/bench.js --json $a ;;
	raw-go) "$tmp/rawgo" -json -decode "$DECODE" $a ;;
	esac
}

results=${KEEP:-$tmp/results.tsv}
: >"$results"
start=$(date +%s)
for rep in $(seq 1 "$REPS"); do
	for sc in $SCENARIOS; do
		for impl in $IMPLS; do
			printf '\r\033[Krep %d/%d: %s %s' "$rep" "$REPS" "$sc" "$impl" >&2
			if line=$(run "$impl" "$sc" 2>"$tmp/err"); then
				printf '%s\t%s\t%s\n' "$impl" "$sc" "$line" >>"$results"
			else
				printf '\nfailed: %s %s: %s\n' "$impl" "$sc" "$(tail -1 "$tmp/err")" >&2
			fi
		done
	done
done
printf '\r\033[K' >&2
echo "$REPS repetitions in $(($(date +%s) - start)) s; Go receivers decode into a $DECODE; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
node bench/node/table.js "$results"
