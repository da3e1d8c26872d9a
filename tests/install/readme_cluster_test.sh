#!/usr/bin/env bash
# README's Redis Cluster quick start ("On a Redis Cluster") can be run again: runs its six-server
# block (the loop that starts the servers and `redis-cli --cluster create`) as the README writes
# it, three times (the second with the first run's servers up, the third after they were stopped,
# their nodes.conf left), and checks after each run that the cluster is formed (cluster_state:ok). The
# block is taken from README.md itself, with its ports 7000..7005 replaced by free loopback ports
# (each with its cluster bus port, +10000, free too) and /tmp/rc by a temporary folder.
#   tests/install/readme_cluster_test.sh <repo>
# Exit 77 when redis-server or redis-cli is missing. Every wait is bounded.
set -euo pipefail
repo=$(realpath "$1")
for tool in redis-server redis-cli python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found" >&2; exit 77; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/imgate-readme-cluster-XXXXXX")
ports=()
cleanup() {
  local status=$? port
  for port in "${ports[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# Six ports below the ephemeral range whose bus port (+10000) is free as well.
read -r -a ports <<<"$(python3 - <<'EOF'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
picked = []
while len(picked) < 6:
    port = random.randrange(15000, 22000)
    if port not in picked and free(port) and free(port + 10000):
        picked.append(port)
print(*picked)
EOF
)"

python3 - "$repo/README.md" "$work" "${ports[@]}" >"$work/block.sh" <<'EOF'
import re, sys, textwrap
readme, work, ports = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3:]
start = readme.index("    for port in 7000")
end = readme.index("--cluster-yes", start)
block = textwrap.dedent(readme[start:readme.index("\n", end)]) + "\n"
for i, port in enumerate(ports):
    block = re.sub(rf"\b{7000 + i}\b", port, block)
print(block.replace("/tmp/rc", work + "/rc"))
EOF
echo "the block, as run:"; sed 's/^/  /' "$work/block.sh"

# Run 2 finds run 1's servers still up; run 3 finds them stopped, their nodes.conf left behind.
for run in 1 2 3; do
  echo "run $run"
  if [[ $run == 3 ]]; then
    for port in "${ports[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
    ls "$work"/rc/*/nodes.conf >/dev/null  # the state a re-run must not trip over
  fi
  if ! bash "$work/block.sh" >"$work/run$run.log" 2>&1; then
    cat "$work/run$run.log" >&2
    echo "run $run of the README block failed" >&2
    exit 1
  fi
  state=
  for _ in $(seq 200); do
    state=$(redis-cli -p "${ports[0]}" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')
    [[ $state == ok ]] && break
    sleep 0.1
  done
  [[ $state == ok ]] || { cat "$work/run$run.log" >&2; echo "run $run: cluster_state ${state:-?}" >&2; exit 1; }
done
echo "readme_cluster_test: the README's Redis Cluster block formed a cluster three times in a row"
