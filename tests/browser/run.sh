#!/usr/bin/env bash
# Runs the chat page's browser test against a freshly started imgate.
#
#   tests/browser/run.sh path/to/imgate      # the real server
#   tests/browser/run.sh --mock              # tests/browser/mock-gateway.mjs instead (page work)
#
# Installs playwright-core (npm ci; never a browser), starts the servers below on free loopback
# ports, each in a temporary directory with --web-root <repo>/web, waits for their ready files, runs
# chat.test.mjs, then rolling.test.mjs, and stops the servers on exit (in reverse order):
#   default  as upstream (no tokens, no API key)                          -> IMGATE_HTTP
#   secure   --auth-hmac-secret <random> --auth-leeway 1 --api-key <random>, and
#            --allowed-origins http://127.0.0.1:<its HTTP port> (the origin of the chat page it
#            serves; the port is picked before the start) -> IMGATE_SECURE_HTTP,
#            IMGATE_SECURE_WS, BROWSER_AUTH_SECRET, BROWSER_API_KEY, BROWSER_ALLOWED_ORIGIN (not
#            with --mock, which has no origin check), and tokens minted with
#            scripts/mint-token: IMGATE_TOKEN_A, IMGATE_TOKEN_B, IMGATE_TOKEN_BAD (another secret)
#   history  --history-size 100 (docs/history.md: recovery after a reconnect, offline messages)
#                                                                          -> IMGATE_HISTORY_HTTP
#   roll-a, roll-b  two nodes of one cluster: a redis-server (/usr/bin/redis-server, no persistence)
#            on a free loopback port, --redis-addr to it, --history-size 100; rolling.test.mjs
#            stops roll-a with SIGTERM       -> BROWSER_ROLL_{A,B}_{WS,HTTP}, BROWSER_ROLL_A_PID
# IMGATE_BROWSER_SECURE=0 / IMGATE_BROWSER_HISTORY=0 / IMGATE_BROWSER_ROLLING=0 leave out the
# secure / history servers / the cluster and their scenario (e.g. a server without token or
# history support). The mock gateway supports the first two; with --mock, and without
# redis-server, the rolling restart scenario is skipped.
# Exit status: the test's; 77 when a prerequisite (node, npm, chromium; python3 for the secure
# scenario) is missing (CTest does not treat 77 as a skip: in CI, where scripts/bootstrap --test
# installs them, a missing prerequisite fails the test). Screenshots go to $IMGATE_ARTIFACTS (default
# tests/browser/artifacts).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <imgate binary> | --mock" >&2
  exit 2
fi

with_secure=${IMGATE_BROWSER_SECURE:-1}
with_history=${IMGATE_BROWSER_HISTORY:-1}
with_rolling=${IMGATE_BROWSER_ROLLING:-1}
redis_bin=${REDIS_SERVER:-/usr/bin/redis-server}
tools=(node npm)
[[ $with_secure == 1 ]] && tools+=(python3)
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool not found; skipping the browser test" >&2
    exit 77
  fi
done
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium_bin ]]; then
  echo "run.sh: $chromium_bin not found (apt-get install chromium); skipping the browser test" >&2
  exit 77
fi

if [[ $1 == --mock ]]; then
  server=(node "$here/mock-gateway.mjs")
  with_rolling=0 # the mock has no cluster mode
else
  binary=$(realpath "$1")
  if [[ ! -x $binary ]]; then
    echo "run.sh: $1 is not an executable" >&2
    exit 2
  fi
  server=("$binary" --config "")
fi

# playwright-core only; it never downloads browsers, and this makes sure nothing else does either.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp="$here/node_modules/.package-lock.json"
if [[ ! -f $stamp || $here/package-lock.json -nt $stamp || $here/package.json -nt $stamp ]]; then
  if [[ -f $here/package-lock.json ]]; then
    npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
  else
    npm install --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

if [[ $with_rolling == 1 ]] && ! { [[ -x $redis_bin ]] && command -v redis-cli >/dev/null 2>&1; }; then
  echo "run.sh: $redis_bin or redis-cli not found (apt-get install redis-server); skipping the rolling restart scenario" >&2
  with_rolling=0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/imgate-browser-XXXXXX")
names=() # started servers; each has $work/<name>/{server.log,ready.json,pid}
# alive PID: running and not a zombie (a server the test stopped stays one until it is waited for).
alive() {
  [[ -r /proc/$1/stat ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]
}
cleanup() {
  local status=$? name pid i
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do # the nodes before their redis-server
    name=${names[i]}
    pid=$(cat "$work/$name/pid")
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for name in "${names[@]}"; do
      echo "---- $name server log ($work/$name/server.log) ----" >&2
      tail -n 200 "$work/$name/server.log" >&2
      echo "---- end of $name server log ----" >&2
    done
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME [extra flags...]: starts a server in $work/NAME on free loopback ports.
start_server() {
  local name=$1 dir=$work/$1
  shift
  mkdir "$dir"
  (
    cd "$dir"
    exec "${server[@]}" --log-level "${IMGATE_LOG_LEVEL:-info}" --bind 127.0.0.1 --ws-port 0 --http-port 0 \
      --ready-file "$dir/ready.json" --web-root "$repo/web" "$@" </dev/null >"$dir/server.log" 2>&1
  ) &
  echo $! >"$dir/pid"
  names+=("$name")
}

# ready_status NAME: bounded wait for the ready file {"ws":N,"http":N,"pid":N}; returns 0 when it
# is there, 1 when the server exited first, 2 after 10 s.
ready_status() {
  local dir=$work/$1
  for _ in $(seq 200); do
    [[ -f $dir/ready.json ]] && return 0
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || return 1
    sleep 0.05
  done
  return 2
}

# wait_ready NAME: ready_status, exiting the script unless the server is ready.
wait_ready() {
  local status=0
  ready_status "$1" || status=$?
  case $status in
    0) return 0 ;;
    1) echo "run.sh: the $1 server exited before it was ready" >&2 ;;
    *) echo "run.sh: no ready file from the $1 server after 10 s" >&2 ;;
  esac
  exit 1
}

# free_port: a loopback TCP port free just now, below the ephemeral range (so that the kernel
# does not hand it to another process's outgoing connection meanwhile).
free_port() {
  node -e '
    const net = require("net");
    const pick = () => {
      const port = 20000 + Math.floor(Math.random() * 12000);
      const srv = net.createServer().once("error", pick);
      srv.listen(port, "127.0.0.1", () => srv.close(() => console.log(port)));
    };
    pick();'
}

# port_of NAME ws|http
port_of() {
  node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]])' \
    "$work/$1/ready.json" "$2"
}

# start_redis: redis-server on a free loopback port below the ephemeral range, without persistence,
# in $work/redis (stopped with the servers); sets redis_port once it answers as itself.
start_redis() {
  local dir=$work/redis pid
  mkdir "$dir"
  names+=(redis)
  for _ in 1 2 3; do # another process may take the port first
    redis_port=$(free_port)
    "$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$dir" --logfile '' </dev/null >>"$dir/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 200); do
      alive "$pid" || break
      if redis-cli -h 127.0.0.1 -p "$redis_port" INFO server 2>/dev/null | grep -q "^process_id:$pid"; then
        return 0
      fi
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "run.sh: redis-server did not start" >&2
  exit 1
}

# start_secure: the secure server (secure mode as docs/security.md defines it: tokens, API keys,
# allowed origins). Its pages come from its HTTP port and open their WebSocket on the other
# port, so the Origin the gateway checks is http://127.0.0.1:<HTTP port>: the port is picked
# first, and the start is retried when another process took it meanwhile. Sets
# secure_http_port.
start_secure() {
  local attempt status
  for attempt in 1 2 3; do
    secure_http_port=$(free_port)
    # Leeway 1 s: the test's 3 s tokens expire (close 4001) within a few seconds.
    start_server secure --auth-hmac-secret "$BROWSER_AUTH_SECRET" --auth-leeway 1 --api-key "$BROWSER_API_KEY" \
      --http-port "$secure_http_port" --allowed-origins "http://127.0.0.1:$secure_http_port"
    status=0
    ready_status secure || status=$?
    [[ $status == 0 ]] && return 0
    if [[ $status == 1 ]] && grep -q "cannot listen on .*: address already in use" "$work/secure/server.log"; then
      echo "run.sh: port $secure_http_port was taken before the secure server bound it; another one" >&2
      wait "$(cat "$work/secure/pid")" 2>/dev/null || true
      unset 'names[-1]'
      rm -rf "$work/secure"
      continue
    fi
    wait_ready secure # reports and exits
  done
  echo "run.sh: the secure server found no free HTTP port in 3 attempts" >&2
  exit 1
}

random_hex() {
  node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))'
}

start_server default
if [[ $with_history == 1 ]]; then
  # The test's own variables are not IMGATE_*: imgate reads IMGATE_* options from its environment.
  start_server history --history-size 100
fi
if [[ $with_secure == 1 ]]; then
  export BROWSER_AUTH_SECRET BROWSER_API_KEY
  BROWSER_AUTH_SECRET=$(random_hex)
  BROWSER_API_KEY=$(random_hex)
  start_secure
fi
if [[ $with_rolling == 1 ]]; then
  start_redis
  roll_flags=(--redis-addr "127.0.0.1:$redis_port" --history-size 100 --node-ttl 2 --shutdown-timeout 2)
  start_server roll-a "${roll_flags[@]}"
  start_server roll-b "${roll_flags[@]}"
fi

wait_ready default
export IMGATE_HTTP="http://127.0.0.1:$(port_of default http)"
export IMGATE_ARTIFACTS=${IMGATE_ARTIFACTS:-$here/artifacts}
export CHROMIUM=$chromium_bin
echo "run.sh: default server at $IMGATE_HTTP (log $work/default/server.log)"

if [[ $with_secure == 1 ]]; then
  export IMGATE_SECURE_HTTP="http://127.0.0.1:$(port_of secure http)"
  if [[ $IMGATE_SECURE_HTTP != "http://127.0.0.1:$secure_http_port" ]]; then
    echo "run.sh: the secure server listens on $IMGATE_SECURE_HTTP, not on port $secure_http_port" >&2
    exit 1
  fi
  export IMGATE_SECURE_WS="ws://127.0.0.1:$(port_of secure ws)/acc"
  export IMGATE_MINT_TOKEN=$repo/scripts/mint-token
  # The mock gateway ignores --allowed-origins: only the real server's origin check is verified.
  if [[ $1 != --mock ]]; then
    export BROWSER_ALLOWED_ORIGIN=$IMGATE_SECURE_HTTP
  fi
  export IMGATE_TOKEN_A IMGATE_TOKEN_B IMGATE_TOKEN_BAD
  suffix=$((RANDOM % 10000))
  IMGATE_TOKEN_A=$("$IMGATE_MINT_TOKEN" --secret "$BROWSER_AUTH_SECRET" --sub "sec-alice-$suffix")
  IMGATE_TOKEN_B=$("$IMGATE_MINT_TOKEN" --secret "$BROWSER_AUTH_SECRET" --sub "安全-$suffix" --app-ids 101,102)
  IMGATE_TOKEN_BAD=$("$IMGATE_MINT_TOKEN" --secret "$(random_hex)" --sub "mallory-$suffix")
  echo "run.sh: secure server at $IMGATE_SECURE_HTTP (log $work/secure/server.log)"
fi
if [[ $with_history == 1 ]]; then
  wait_ready history
  export IMGATE_HISTORY_HTTP="http://127.0.0.1:$(port_of history http)"
  echo "run.sh: history server at $IMGATE_HISTORY_HTTP (log $work/history/server.log)"
fi
if [[ $with_rolling == 1 ]]; then
  wait_ready roll-a
  wait_ready roll-b
  export BROWSER_ROLL_A_WS BROWSER_ROLL_A_HTTP BROWSER_ROLL_A_PID BROWSER_ROLL_B_WS BROWSER_ROLL_B_HTTP
  BROWSER_ROLL_A_WS="ws://127.0.0.1:$(port_of roll-a ws)/acc"
  BROWSER_ROLL_A_HTTP="http://127.0.0.1:$(port_of roll-a http)"
  BROWSER_ROLL_A_PID=$(cat "$work/roll-a/pid")
  BROWSER_ROLL_B_WS="ws://127.0.0.1:$(port_of roll-b ws)/acc"
  BROWSER_ROLL_B_HTTP="http://127.0.0.1:$(port_of roll-b http)"
  echo "run.sh: cluster nodes at $BROWSER_ROLL_A_HTTP and $BROWSER_ROLL_B_HTTP on redis 127.0.0.1:$redis_port"
fi
node "$here/chat.test.mjs"
if [[ $with_rolling == 1 ]]; then
  node "$here/rolling.test.mjs"
else
  echo "- rolling restart skipped"
fi
