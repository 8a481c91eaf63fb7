#!/usr/bin/env bash
# Compares this library with Node Sockhop 1.8.4, with raw Go sockets and
# with gRPC-go, NATS and net/rpc (JSON-RPC) on the scenarios of `sockhop
# bench`, each side a pair of processes over loopback (NATS: three, the
# broker being one). Runs are interleaved (every implementation once per
# scenario, then the next repetition), so that a load change on the
# machine touches all of them alike, and the table shows medians.
#
#   bench/compare.sh                    # REPS=3, about 5 minutes on 2 cores
#   REPS=5 SCENARIOS="s1 s2seq" bench/compare.sh
#   KEEP=results.tsv bench/compare.sh  # keep every run's JSON line
#   DECODE=map bench/compare.sh         # receivers decode into maps
#   IMPLS="go-binary raw-go grpc" bench/compare.sh
#   CLIENTS=1 bench/compare.sh          # also s1, s2par and s4 at 10, 100
#                                       # and 1,000 connections (long)
#
# go-binary and go-json run `sockhop bench --inline --pipelined`: handlers
# on the reading goroutine (ConnOptions.InlineHandlers), and s2par's
# requests kept in flight by one goroutine per connection with
# Client.RequestFunc, as in raw Go's loop; the bench's handlers never
# block. go-dispatched is binary mode with the library's defaults:
# handlers on goroutines of their own (one goroutine hand-off per message;
# blocking handlers allowed) and a goroutine per request in flight, each
# calling Request.
#
# Receivers decode every object fully, into a struct by default on every
# Go side (DECODE=map: into a map, as Node's JSON.parse does), so that the
# ratios compare the same work.
#
# grpc, nats and netrpc are bench/others (a Go module of its own, so that
# their dependencies stay out of the library's go.mod; see its README):
# the same scenarios, payload and decoding over gRPC-go (JSON codec),
# NATS (embedded nats-server as the broker) and net/rpc with jsonrpc. They
# run s1, s2seq, s2par, s4 and s5 (netrpc not s4: net/rpc cannot push),
# not s2seq-unix nor s3.
#
# Needs go, node and npm (Sockhop 1.8.4 is installed into
# internal/interop/node/node_modules if it is not there yet).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DECODE=${DECODE:-struct}
SCENARIOS=${SCENARIOS:-"s1 s2seq s2seq-unix s2par s3 s4 s5"}
# Throughput at 10, 100 and 1,000 connections: NAME-cK runs scenario NAME
# with --clients K (s1: the connections share the messages; s2par: 64/K
# requests in flight on each, at least one, so about max(64, K) in all;
# s4: K receivers).
if [ "${CLIENTS:-0}" = 1 ]; then
	SCENARIOS="$SCENARIOS s1-c10 s1-c100 s1-c1000 s2par-c10 s2par-c100 s2par-c1000 s4-c10 s4-c1000"
fi
IMPLS=${IMPLS:-"go-binary go-json go-dispatched node-1.8.4 raw-go grpc nats netrpc"}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sockhop" ./cmd/sockhop
go build -o "$tmp/rawgo" ./bench/rawgo
for impl in $IMPLS; do
	case $impl in
	grpc) (cd bench/others && go build -o "$tmp/grpcbench" ./grpcbench) ;;
	nats) (cd bench/others && go build -o "$tmp/natsbench" ./natsbench) ;;
	netrpc) (cd bench/others && go build -o "$tmp/rpcbench" ./rpcbench) ;;
	esac
done
if [ ! -d internal/interop/node/node_modules/sockhop ]; then
	npm ci --prefix internal/interop/node --no-audit --no-fund >&2
fi

# Sizes keep a repetition near a minute: the slowest implementation of a
# scenario sets its length (Node 1.8.4 broadcasts at ~120k deliveries/s).
args_for() {
	case $1 in
	*-c*)
		local base=${1%-c*} k=${1##*-c}
		case $base in
		s2par) echo "$(args_for "$base") --clients $k --inflight $((64 / k > 0 ? 64 / k : 1))" ;;
		*) echo "$(args_for "$base") --clients $k" ;;
		esac
		;;
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

# bench/others runs neither s2seq-unix nor s3, and netrpc cannot run s4;
# the Node bench takes --clients for s4 only.
supports() { # impl scenario
	case $1:$2 in
	node-1.8.4:s1-c* | node-1.8.4:s2par-c*) return 1 ;;
	netrpc:s4-c*) return 1 ;;
	grpc:s2seq-unix | grpc:s3 | nats:s2seq-unix | nats:s3) return 1 ;;
	netrpc:s2seq-unix | netrpc:s3 | netrpc:s4) return 1 ;;
	esac
}

run() { # impl scenario
	local a
	a=$(args_for "$2")
	case $1 in
	go-binary) "$tmp/sockhop" bench --json --no-progress --inline --pipelined --mode binary --decode "$DECODE" $a ;;
	go-json) "$tmp/sockhop" bench --json --no-progress --inline --pipelined --mode json --decode "$DECODE" $a ;;
	go-dispatched) "$tmp/sockhop" bench --json --no-progress --mode binary --decode "$DECODE" $a ;;
	node-1.8.4) node bench/node/bench.js --json $a ;;
	raw-go) "$tmp/rawgo" -json -decode "$DECODE" $a ;;
	grpc) "$tmp/grpcbench" -json -decode "$DECODE" $a ;;
	nats) "$tmp/natsbench" -json -decode "$DECODE" $a ;;
	netrpc) "$tmp/rpcbench" -json -decode "$DECODE" $a ;;
	esac
}

results=${KEEP:-$tmp/results.tsv}
: >"$results"
start=$(date +%s)
for rep in $(seq 1 "$REPS"); do
	for sc in $SCENARIOS; do
		for impl in $IMPLS; do
			supports "$impl" "$sc" || continue
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
