#!/usr/bin/env bash
# Smoke test of peer.js against itself: a node server and a node client, each
# driven through a fifo. Usage: ./smoke.sh --port 50123 | --path /tmp/x.sock
set -euo pipefail
cd "$(dirname "$0")"
d=$(mktemp -d)
SP= CP=
trap 'exec 3>&- 4>&- 2>/dev/null; [ -z "$SP$CP" ] || kill $SP $CP 2>/dev/null; rm -rf "$d"' EXIT
mkfifo "$d/s.in" "$d/c.in"

# wait_for FILE REGEX: the peer printed a matching line (5 s max)
wait_for() {
    for _ in $(seq 50); do grep -qE -- "$2" "$1" && return 0; sleep 0.1; done
    echo "FAIL: no /$2/ in $1:"; cat "$1" "${1%.out}.err"; exit 1
}

node peer.js server "$@" <"$d/s.in" >"$d/s.out" 2>"$d/s.err" & SP=$!
exec 3>"$d/s.in"
wait_for "$d/s.out" '"listening"'
node peer.js client "$@" <"$d/c.in" >"$d/c.out" 2>"$d/c.err" & CP=$!
exec 4>"$d/c.in"
wait_for "$d/c.out" '"connected"'
wait_for "$d/s.out" '"connect"'

# client -> server
echo '{"cmd":"send","data":"hello"}' >&4
wait_for "$d/s.out" '"type":"String","data":"hello","request":false'
echo '{"cmd":"send","class":"Widget","data":{"a":1}}' >&4
wait_for "$d/s.out" '"type":"Widget","data":\{"a":1\}'
echo '{"cmd":"send","base64":"AQID"}' >&4      # 1.x writes Node's array form
wait_for "$d/s.out" '"type":"Buffer","data":\{"type":"Buffer","data":\[1,2,3\]\},"base64":"AQID"'
echo '{"cmd":"send","type":"Buffer","data":"AQID"}' >&4  # the 2.x / Go form
wait_for "$d/s.out" '"type":"Buffer","data":"AQID","base64":"AQID"'
echo '{"cmd":"request","data":{"q":1},"id":1}' >&4
wait_for "$d/c.out" '"reply","id":1,"type":"Object","data":\{"echo":\{"q":1\},"type":"Object"\}'
echo '{"cmd":"request","base64":"AQID","id":2}' >&4
wait_for "$d/c.out" '"reply","id":2,"type":"Buffer",.*"base64":"AwIB"'

# server -> client
echo '{"cmd":"send","data":[1,"x"]}' >&3
wait_for "$d/c.out" '"type":"Array","data":\[1,"x"\],"request":false'
echo '{"cmd":"request","data":42,"id":"k"}' >&3
wait_for "$d/s.out" '"reply","id":"k","type":"Object","data":\{"echo":42,"type":"Number"\}'
echo '{"cmd":"send","data":0}' >&3             # 1.8.4 server refuses falsy values
wait_for "$d/s.out" '"cmd_error","cmd":"send",.*"code":"ERR_BAD_DATA"'

# pings both ways for a while: nobody drops the connection
echo '{"cmd":"ping","ms":50}' >&3
echo '{"cmd":"ping","ms":50}' >&4
sleep 0.5
! grep -q disconnect "$d/s.out" "$d/c.out" || { echo "FAIL: ping disconnect"; exit 1; }

# exit command (client), then stdin EOF (server): both exit 0 by themselves
echo '{"cmd":"exit"}' >&4
wait "$CP"; echo "client exit status $?"
wait_for "$d/s.out" '"disconnect"'
exec 3>&-
wait "$SP"; echo "server exit status $?"
SP= CP=

echo "--- server stdout"; cat "$d/s.out"
echo "--- client stdout"; cat "$d/c.out"
echo "--- stderr"; cat "$d/s.err" "$d/c.err"
echo PASS
