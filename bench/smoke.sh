#!/usr/bin/env bash
# Smoke run of imgate-bench (CTest: bench.smoke): starts a real gateway on free
# loopback ports and runs every mode at small scale, then a second gateway with
# history on for the recovery and fill modes. Asserts the tool's own accounting
# only (every setup succeeds, no fan-out / unicast loss at a low rate, churn
# leaves no residue in /system/state, every recovered client got each missed
# push exactly once with consecutive offsets); then a gateway with TLS (a
# certificate made by the openssl CLI) for hold and fan-out over wss:// and
# https://, and --tls-resume (some handshakes must be resumed); no performance
# threshold.
#
#   bench/smoke.sh path/to/imgate path/to/imgate-bench
set -euo pipefail

imgate=${1:?usage: smoke.sh IMGATE IMGATE_BENCH}
bench=${2:?usage: smoke.sh IMGATE IMGATE_BENCH}
dir=$(mktemp -d "${TMPDIR:-/tmp}/imgate-bench-smoke.XXXXXX")
gw=

stop_gateway() {
  if [[ -n "$gw" ]] && kill -0 "$gw" 2>/dev/null; then
    kill -TERM "$gw" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw" 2>/dev/null || true
  fi
  gw=
}
cleanup() {
  stop_gateway
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "bench.smoke: FAIL: $*" >&2
  echo "--- gateway log (tail)" >&2
  tail -n 30 "$dir/gateway.log" >&2 || true
  exit 1
}

# start_gateway FLAGS...: a gateway on free ports; sets gw and the generator's common options.
# Every generator connection comes from 127.0.0.x, as fast as it can: no per-address limits.
start_gateway() {
  rm -f "$dir/ready.json"
  "$imgate" --config "" --bind 127.0.0.1 --ws-port 0 --http-port 0 --ready-file "$dir/ready.json" \
    --threads 2 --log-level warn --ip-max-connections 0 --ip-upgrade-rate 0 "$@" \
    >"$dir/gateway.log" 2>&1 &
  gw=$!
  for _ in $(seq 100); do [[ -s "$dir/ready.json" ]] && break; sleep 0.1; done
  [[ -s "$dir/ready.json" ]] || fail "gateway did not become ready"
  local ready
  ready=$(cat "$dir/ready.json")
  field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$ready"; }
  local ws http pid
  ws=$(field ws)
  http=$(field http)
  pid=$(field pid)
  [[ -n "$ws" && -n "$http" && -n "$pid" ]] || fail "bad ready file: $ready"
  common=(--ws-port "$ws" --http-port "$http" --pid "$pid" --threads 2 --quiet --setup-timeout 10
          --drain-timeout 10 --close-timeout 10)
}

start_gateway --app-ids 101,102,103,104

# run NAME EXPECT... -- ARGS: runs one mode, requires exit 0 and each EXPECT
# (a JSON fragment, or ~REGEX: an extended regular expression) in its JSON line.
run() {
  local name=$1; shift
  local expects=()
  while [[ $1 != -- ]]; do expects+=("$1"); shift; done
  shift
  local start=$SECONDS status=0
  "$bench" "$@" "${common[@]}" >"$dir/$name.out" 2>&1 || status=$?
  cat "$dir/$name.out"
  [[ $status -eq 0 ]] || fail "$name exited with $status"
  local line
  line=$(grep '^{"mode":' "$dir/$name.out" | tail -n 1)
  [[ -n "$line" ]] || fail "$name printed no JSON line"
  for e in '"ok":true' "${expects[@]}"; do
    if [[ $e == '~'* ]]; then
      grep -Eq -- "${e#\~}" <<<"$line" || fail "$name: JSON line does not match ${e#\~}"
    else
      [[ $line == *"$e"* ]] || fail "$name: JSON line lacks $e"
    fi
  done
  echo "bench.smoke: $name ok ($((SECONDS - start)) s)"
}

run hold '"held":300' '"failures":{}' '"residue":{"clientsLen":0,"usersLen":0,"roomsLen":0,"sessions":0}' -- \
  hold -n 300 --apps 4 --duration 2 --heartbeat 1
run fanout '"members":200' '"lost":0' '"extra":0' -- \
  fanout -n 200 --rate 50 --duration 2
run unicast '"members":300' '"lost":0' '"answered_not_online":0' -- \
  unicast -n 300 --apps 4 --rate 200 --duration 2
run churn '"back_to_baseline":true' '"failures":{}' -- \
  churn --rate 150 --duration 3 --apps 4 --abrupt 0.5

kill -0 "$gw" 2>/dev/null || fail "gateway died"
stop_gateway

# History on (docs/history.md): 50 clients drop, 10 room pushes go out, all recover them.
start_gateway --app-ids 101,102,103,104,105,106,107,108 --history-size 20
run recovery '"caught_up":50' '"pushes_received":500' '"duplicates":0' '"gaps":0' \
  '"recovered_true":50' '"wrong_clients":0' -- \
  recovery -n 50 --missed 10
run fill '"stored_pushes":40' '"evictions":0' -- \
  fill --app-base 105 --apps 4 -m 40 --rate 0 --no-msg-id
kill -0 "$gw" 2>/dev/null || fail "gateway died"
stop_gateway

# TLS (--tls-cert: both ports speak TLS): wss:// connections, the API and
# /system/state over https://. A self-signed ECDSA P-256 certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"
start_gateway --app-ids 101,102,103,104 --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"
run tls-hold '"held":300' '"failures":{}' '"full_handshakes":300,"resumed_handshakes":0' \
  '"residue":{"clientsLen":0,"usersLen":0,"roomsLen":0,"sessions":0}' -- \
  hold -n 300 --apps 4 --duration 1 --heartbeat 1 --tls --tls-insecure
run tls-fanout '"members":200' '"lost":0' '"extra":0' -- \
  fanout -n 200 --rate 50 --duration 1 --tls --tls-insecure
# Each client thread's first connection is a full handshake, the others offer its session.
run tls-resume '"held":200' '"failures":{}' '~"resumed_handshakes":[1-9][0-9]*,' -- \
  hold -n 200 --apps 4 --duration 1 --tls --tls-ca "$dir/cert.pem" --tls-resume
kill -0 "$gw" 2>/dev/null || fail "gateway died"
echo "bench.smoke: 9 passed, 0 failed"
