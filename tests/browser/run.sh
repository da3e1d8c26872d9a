#!/usr/bin/env bash
# Runs the chat page's browser test against a freshly started imgate.
#
#   tests/browser/run.sh path/to/imgate      # the real server
#   tests/browser/run.sh --mock              # tests/browser/mock-gateway.mjs instead (page work)
#
# Installs playwright-core (npm ci; never a browser), starts the server on free loopback ports in a
# temporary directory with --web-root <repo>/web, waits for its ready file, runs chat.test.mjs with
# IMGATE_HTTP set, and stops the server on exit.
# Exit status: the test's; 77 when a prerequisite (node, npm, chromium) is missing (CTest:
# SKIP_RETURN_CODE 77). Screenshots go to $IMGATE_ARTIFACTS (default tests/browser/artifacts).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <imgate binary> | --mock" >&2
  exit 2
fi

for tool in node npm; do
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

work=$(mktemp -d "${TMPDIR:-/tmp}/imgate-browser-XXXXXX")
server_pid=
cleanup() {
  local status=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f $work/server.log ]]; then
    echo "---- server log ($work/server.log) ----" >&2
    tail -n 200 "$work/server.log" >&2
    echo "---- end of server log ----" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(
  cd "$work"
  exec "${server[@]}" --log-level "${IMGATE_LOG_LEVEL:-info}" --bind 127.0.0.1 --ws-port 0 --http-port 0 \
    --ready-file "$work/ready.json" --web-root "$repo/web" </dev/null >"$work/server.log" 2>&1
) &
server_pid=$!

# Bounded wait for the ready file: {"ws":N,"http":N,"pid":N}.
for _ in $(seq 200); do
  [[ -f $work/ready.json ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: the server exited before it was ready" >&2
    exit 1
  fi
  sleep 0.05
done
if [[ ! -f $work/ready.json ]]; then
  echo "run.sh: no ready file after 10 s" >&2
  exit 1
fi
http_port=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).http)' "$work/ready.json")

export IMGATE_HTTP="http://127.0.0.1:$http_port"
export IMGATE_ARTIFACTS=${IMGATE_ARTIFACTS:-$here/artifacts}
export CHROMIUM=$chromium_bin
echo "run.sh: server at $IMGATE_HTTP (log $work/server.log)"
node "$here/chat.test.mjs"
