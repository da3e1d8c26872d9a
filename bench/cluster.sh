# bench/cluster.sh: `bench/run cluster`, many nodes on one machine (sourced by
# bench/run; uses its start_gateway, start_redis, free_port, fit, record, ...).
#
# Every process here is limited to RLIMIT_NOFILE (20,000) descriptors, so the
# scenario runs K gateway nodes in Redis mode and K imgate-bench `members`
# processes, process j holding CLUSTER_CONNS connections on node j (users
# n<j>-0 .. n<j>-<CLUSTER_CONNS - 1>, all in the quiet room 101, from source
# address 127.0.0.<CLUSTER_FIRST_SOURCE + j>). Then, in order:
#   login   all K processes log in at once: time, CPU per login (nodes, Redis)
#   idle    CLUSTER_IDLE_SECONDS held with heartbeats: the cost of being held
#   fanout  room pushes through node 0's API (CLUSTER_FANOUT_RATE / s for
#           CLUSTER_FANOUT_SECONDS): every node delivers to its members
#   roompush CLUSTER_ROOMPUSH_COUNT pushes to the empty room 102 through every
#           node's API, as fast as they answer: Redis CPU per room push, and
#           what each node pays per push whatever its members
#   unicast /user/sendMessage through every node's API to users of other nodes,
#           at each of CLUSTER_UNICAST_RATES / s for CLUSTER_UNICAST_SECONDS: latency
#   kill    SIGKILL the last node; poll node 0 (/user/online of 3 of its users,
#           then /user/list) until its users are gone (bounded by --node-ttl
#           CLUSTER_NODE_TTL, reaping)
# bench/run records CPU ticks (/proc/PID/stat) of every process at each phase
# boundary; bench/cluster_table.py turns results.jsonl into the table.
#
# CLUSTER_OLD_IMGATE=PATH runs the odd-numbered nodes with that imgate binary
# (an older build: old and new measured in one run, on the same Redis), and
# CLUSTER_ROOMPUSH_API=first sends the roompush phase through node 0's API
# only, so that the other nodes pay nothing but hearing (or not) the pushes:
# per node, bench/cluster_table.py then shows what a node without members of
# the room pays per push (docs/cluster.md, "Subscriptions on demand").
#
# CLUSTER_REDIS=cluster runs the nodes on a CLUSTER_SHARDS-master Redis Cluster
# (--redis-cluster SEEDS instead of --redis-addr), if the imgate binary has
# that option.
#
# CLUSTER_PHASES picks the phases after login and idle (default all: "fanout
# roompush unicast kill"); the unicast rates are a ramp: it stops after the
# first rate the pushers could not keep up with (fewer than
# CLUSTER_UNICAST_KEEP_UP × the messages due sent in the window: the APIs
# answered too slowly) or that lost deliveries.
# CLUSTER_KILL_CHECK_NODES bounds how many survivors are asked once after the
# kill (each answer is a /user/list of the whole room). CLUSTER_NODE_FLAGS adds
# flags to every node. Every phase mark also records the kernel's memory
# (/proc/meminfo Slab, /proc/net/sockstat TCP pages and sockets).

CLUSTER_NODES=${CLUSTER_NODES:-8}
CLUSTER_CONNS=${CLUSTER_CONNS:-18000}           # per node (fitted to the descriptor limit)
CLUSTER_NODE_THREADS=${CLUSTER_NODE_THREADS:-1}  # --threads of each node (K nodes on 2 cores)
CLUSTER_NODE_TTL=${CLUSTER_NODE_TTL:-10}         # --node-ttl (imgate's default)
CLUSTER_IDLE_SECONDS=${CLUSTER_IDLE_SECONDS:-10}
CLUSTER_FANOUT_RATE=${CLUSTER_FANOUT_RATE:-2}    # room pushes per second (each to every member)
CLUSTER_FANOUT_SECONDS=${CLUSTER_FANOUT_SECONDS:-10}
CLUSTER_ROOMPUSH_COUNT=${CLUSTER_ROOMPUSH_COUNT:-10000}
CLUSTER_UNICAST_RATES=${CLUSTER_UNICAST_RATES:-"1000 3000"}
CLUSTER_UNICAST_SECONDS=${CLUSTER_UNICAST_SECONDS:-10}
CLUSTER_UNICAST_HTTP=${CLUSTER_UNICAST_HTTP:-2}   # HTTP connections per node's API (one request each)
CLUSTER_POLL_INTERVAL=${CLUSTER_POLL_INTERVAL:-0.05}  # kill: polls of /user/online (3 users)
CLUSTER_INFLIGHT=${CLUSTER_INFLIGHT:-512}         # setups in flight per members process (--inflight)
CLUSTER_FIRST_SOURCE=${CLUSTER_FIRST_SOURCE:-10}  # process j connects from 127.0.0.<this + j>
CLUSTER_REDIS=${CLUSTER_REDIS:-single}            # single | cluster
CLUSTER_SHARDS=${CLUSTER_SHARDS:-3}               # masters of the Redis Cluster
CLUSTER_OLD_IMGATE=${CLUSTER_OLD_IMGATE:-}        # imgate binary of the odd-numbered nodes ("" = all current)
CLUSTER_ROOMPUSH_API=${CLUSTER_ROOMPUSH_API:-all} # all | first: whose APIs the roompush phase uses
CLUSTER_PHASES=${CLUSTER_PHASES:-"fanout roompush unicast kill"}
CLUSTER_UNICAST_KEEP_UP=${CLUSTER_UNICAST_KEEP_UP:-0.9}  # ramp: next rate only if sent >= this × due
CLUSTER_KILL_CHECK_NODES=${CLUSTER_KILL_CHECK_NODES:-0}  # survivors asked after the kill; 0: all
CLUSTER_NODE_FLAGS=${CLUSTER_NODE_FLAGS:-}               # more imgate flags for every node
CLUSTER_HEARTBEAT=${CLUSTER_HEARTBEAT:-25}                # seconds between a held connection's heartbeats
CLUSTER_MIN_AVAILABLE_MB=${CLUSTER_MIN_AVAILABLE_MB:-1024}  # below this MemAvailable: stop the load

# python3 resolved once: a version manager's shim (pyenv) costs seconds per call
# on a loaded machine, and the scenario calls it a few times per node and phase.
cluster_python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
python3() { "$cluster_python" "$@"; }

cluster_node_pids=() cluster_node_http=() cluster_node_ws=() cluster_member_pids=() cluster_member_fds=()
cluster_redis_pids=() cluster_redis_ports=() cluster_watchdog_pid=

# wait_gone TENTHS PID...: until none of the processes is alive, at most TENTHS × 0.1 s.
wait_gone() {
  local tenths=$1 p alive
  shift
  for _ in $(seq "$tenths"); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
}

# stop_all PID...: SIGTERM to all, up to 20 s for all, then SIGKILL (children of this script).
stop_all() {
  local p
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  wait_gone 200 "$@"
  kill -KILL "$@" 2>/dev/null || true
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

stop_cluster() {
  local fd
  stop_process "$cluster_watchdog_pid"
  cluster_watchdog_pid=
  for fd in "${cluster_member_fds[@]}"; do exec {fd}>&- 2>/dev/null || true; done
  cluster_member_fds=()
  stop_all "${cluster_member_pids[@]}"
  stop_all "${cluster_node_pids[@]}"
  stop_all "${cluster_redis_pids[@]}"
  cluster_member_pids=() cluster_node_pids=() cluster_redis_pids=()
  cluster_node_http=() cluster_node_ws=() cluster_redis_ports=()
}

# A Redis Cluster of CLUSTER_SHARDS masters, no replicas, on free ports (bus
# ports too: the default port + 10000 would fall into the ephemeral range).
start_redis_cluster() {
  local i port bus seeds=() flags
  for i in $(seq "$CLUSTER_SHARDS"); do
    port=$(free_port) bus=$(free_port)
    flags=(--port "$port" --cluster-port "$bus" --bind 127.0.0.1 --save '' --appendonly no
      --cluster-enabled yes --cluster-config-file "$out/redis-cluster-$port.conf" --dir "$out"
      --logfile "$out/redis-$port.log")
    printf '%q ' "$REDIS_SERVER" "${flags[@]}" >>"$out/redis.flags"
    echo >>"$out/redis.flags"
    "$REDIS_SERVER" "${flags[@]}" &
    cluster_redis_pids+=($!) cluster_redis_ports+=("$port") seeds+=("127.0.0.1:$port")
  done
  for port in "${cluster_redis_ports[@]}"; do
    for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ((CLUSTER_SHARDS >= 3)); then
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$out/redis-cluster-create.log"
  else  # redis-cli --cluster create wants 3 masters: slots by hand, then MEET
    local lo=0 hi first=${cluster_redis_ports[0]}
    for i in "${!cluster_redis_ports[@]}"; do
      hi=$(((i + 1) * 16384 / CLUSTER_SHARDS - 1))
      redis-cli -p "${cluster_redis_ports[$i]}" CLUSTER ADDSLOTSRANGE "$lo" "$hi" >>"$out/redis-cluster-create.log"
      redis-cli -p "${cluster_redis_ports[$i]}" CLUSTER SET-CONFIG-EPOCH $((i + 1)) >>"$out/redis-cluster-create.log"
      ((i == 0)) || redis-cli -p "$first" CLUSTER MEET 127.0.0.1 "${cluster_redis_ports[$i]}" >>"$out/redis-cluster-create.log"
      lo=$((hi + 1))
    done
  fi
  for port in "${cluster_redis_ports[@]}"; do
    for _ in $(seq 100); do
      redis-cli -p "$port" CLUSTER INFO | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
  done
  echo "redis cluster: $("$REDIS_SERVER" --version | cut -d' ' -f3), $CLUSTER_SHARDS masters on ${seeds[*]}" |
    tee -a "$out/machine.txt"
}

join_by() { local IFS=$1; shift; echo "$*"; }
ticks_or_null() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo null; }
rss_or_null() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo null; }
# Context switches of all of a process's threads (voluntary + not).
switches_or_null() {
  { cat "/proc/$1"/task/*/status 2>/dev/null || true; } | awk '/ctxt_switches:/ {n += $2} END {print NR ? n : "null"}'
}

cluster_phase_on() { [[ " $CLUSTER_PHASES " == *" $1 "* ]]; }

# The kernel's memory now, as JSON fields: Slab / SUnreclaim / MemAvailable (kB,
# /proc/meminfo), TCP sockets in use and TCP buffer pages (/proc/net/sockstat).
kernel_memory_json() {
  awk '/^Slab:/ {s = $2} /^SUnreclaim:/ {u = $2} /^MemAvailable:/ {a = $2}
    END {printf "\"slab_kb\":%d,\"sunreclaim_kb\":%d,\"mem_available_kb\":%d", s, u, a}' /proc/meminfo
  awk '/^TCP:/ {for (i = 2; i < NF; i += 2) v[$i] = $(i + 1)}
    END {printf ",\"tcp_inuse\":%d,\"tcp_mem_pages\":%d,\"tcp_tw\":%d", v["inuse"], v["mem"], v["tw"]}' /proc/net/sockstat
}

# CPU time of all of a process's threads in ns (/proc/PID/task/*/schedstat: finer than the ticks).
cpu_ns_or_null() {
  { cat "/proc/$1"/task/*/schedstat 2>/dev/null || true; } | awk '{n += $1} END {print NR ? n : "null"}'
}

# cluster_mark LABEL: CPU ticks and RSS of every process of the scenario, now.
cluster_mark() {
  local p nodes=() rss=() redis=() members=() nsw=() rsw=() rns=()
  for p in "${cluster_node_pids[@]}"; do
    nodes+=("$(ticks_or_null "$p")") rss+=("$(rss_or_null "$p")") nsw+=("$(switches_or_null "$p")")
  done
  for p in "${cluster_redis_pids[@]}"; do
    redis+=("$(ticks_or_null "$p")") rsw+=("$(switches_or_null "$p")") rns+=("$(cpu_ns_or_null "$p")")
  done
  for p in "${cluster_member_pids[@]}"; do members+=("$(ticks_or_null "$p")"); done
  local busy  # the whole machine's CPU ticks other than idle and iowait (/proc/stat)
  busy=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
  record "{\"scenario\":\"cluster-mark\",\"at\":\"$1\",\"machine_busy_ticks\":$busy,\"wall\":$(date +%s.%N),\"load\":$(cut -d' ' -f1 /proc/loadavg),\"hz\":$(getconf CLK_TCK),\"nodes_ticks\":[$(join_by , "${nodes[@]}")],\"nodes_rss_kb\":[$(join_by , "${rss[@]}")],\"redis_ticks\":[$(join_by , "${redis[@]}")],\"members_ticks\":[$(join_by , "${members[@]}")],\"nodes_switches\":[$(join_by , "${nsw[@]}")],\"redis_switches\":[$(join_by , "${rsw[@]}")],\"redis_cpu_ns\":[$(join_by , "${rns[@]}")],$(kernel_memory_json)}"
}

# cluster_wait_phase PHASE SECONDS: until every members process reported PHASE
# (or ended without it).
cluster_wait_phase() {
  local j done
  for _ in $(seq $(($2 * 10))); do
    done=1
    for j in "${!cluster_member_pids[@]}"; do
      grep -q "\"phase\":\"$1\"" "$out/cluster-members.$j.jsonl" 2>/dev/null && continue
      if kill -0 "${cluster_member_pids[$j]}" 2>/dev/null; then
        done=0
      else
        echo "cluster: members process $j ended before '$1':" >&2
        tail -5 "$out/cluster-members.$j.progress" >&2
        return 1
      fi
    done
    ((done)) && return 0
    sleep 0.1
  done
  echo "cluster: not every members process reported '$1' within $2 s" >&2
  return 1
}

# cluster_tell J LINE: a command to members process J (ignored if it is gone).
cluster_tell() {
  trap '' PIPE
  echo "$2" >&"${cluster_member_fds[$1]}" 2>/dev/null || echo "cluster: members process $1 is gone" >&2
  trap - PIPE
}

json_last() {  # json_last FILE EXPR: EXPR (Python, on d) of the file's last JSON line
  python3 -c 'import json, sys; d = json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# cluster_push PHASE ARGS...: one imgate-bench push run; its line is tagged PHASE.
cluster_push() {
  local phase=$1; shift
  echo "=== cluster $phase: imgate-bench push $* (load average $(cut -d' ' -f1 /proc/loadavg))"
  "$bench" push "$@" --threads 1 --json-out "$out/cluster-push.$phase.jsonl" \
    >"$out/cluster-push.$phase.out" 2>"$out/cluster-push.$phase.progress" || true
  grep -v '^{"mode"' "$out/cluster-push.$phase.out" || true
}

cluster_scenario() {
  local k n j fd redis_flags=() seeds=() node_flags
  k=$CLUSTER_NODES
  n=$(fit "$CLUSTER_CONNS")
  ((k >= 2)) || { echo "cluster: CLUSTER_NODES must be at least 2"; exit 2; }
  ((n <= 20000)) || { echo "cluster: CLUSTER_CONNS above 20,000 needs more than one source address per process"; exit 2; }
  if [[ $CLUSTER_REDIS == cluster ]]; then
    if ! "$imgate" --help 2>/dev/null | grep -c -- --redis-cluster >/dev/null; then
      echo "cluster: CLUSTER_REDIS=cluster needs --redis-cluster support in imgate;" \
           "this build ($imgate) has no such option (imgate --help)"
      exit 2
    fi
    start_redis_cluster
    for port in "${cluster_redis_ports[@]}"; do seeds+=("127.0.0.1:$port"); done
    redis_flags=(--redis-cluster "$(join_by , "${seeds[@]}")")
  else
    start_redis
    cluster_redis_pids=("$redis_pid") cluster_redis_ports=("$redis_port")
    redis_pid=  # stopped with the cluster
    redis_flags=(--redis-addr "127.0.0.1:$redis_port")
  fi
  for port in "${cluster_redis_ports[@]}"; do
    redis-cli -p "$port" CONFIG SET slowlog-log-slower-than 1000 >/dev/null  # µs: the reap's run
  done
  record "{\"scenario\":\"cluster-config\",\"nodes\":$k,\"conns_per_node\":$n,\"node_threads\":$CLUSTER_NODE_THREADS,\"inflight\":$CLUSTER_INFLIGHT,\"node_ttl\":$CLUSTER_NODE_TTL,\"redis\":\"$CLUSTER_REDIS\",\"redis_processes\":${#cluster_redis_pids[@]},\"idle_seconds\":$CLUSTER_IDLE_SECONDS,\"fanout_rate\":$CLUSTER_FANOUT_RATE,\"fanout_seconds\":$CLUSTER_FANOUT_SECONDS,\"roompush_count\":$CLUSTER_ROOMPUSH_COUNT,\"roompush_api\":\"$CLUSTER_ROOMPUSH_API\",\"old_imgate\":\"$CLUSTER_OLD_IMGATE\",\"unicast_rates\":[$(join_by , $CLUSTER_UNICAST_RATES)],\"unicast_seconds\":$CLUSTER_UNICAST_SECONDS,\"phases\":\"$CLUSTER_PHASES\",\"heartbeat\":$CLUSTER_HEARTBEAT,\"imgate\":\"${imgate_label:-$imgate}\",\"load_before\":$(cut -d' ' -f1 /proc/loadavg),$(kernel_memory_json)}"

  # The nodes: one room (101), quiet (no enter / exit: 144,000 users in one
  # room would cost 144,000^2 of them), ports below the ephemeral range.
  node_flags=(--app-ids 101,102 --quiet-app-ids 101,102 --max-connections $((n + 100))
    --node-ttl "$CLUSTER_NODE_TTL" "${redis_flags[@]}")
  # shellcheck disable=SC2206  # word splitting wanted: a list of flags
  [[ -z "$CLUSTER_NODE_FLAGS" ]] || node_flags+=($CLUSTER_NODE_FLAGS)
  gateway_threads=$CLUSTER_NODE_THREADS
  local current=$imgate
  for j in $(seq 0 $((k - 1))); do
    listen_ws=$(free_port) listen_http=$(free_port)
    if [[ -n "$CLUSTER_OLD_IMGATE" ]] && ((j % 2 == 1)); then imgate=$CLUSTER_OLD_IMGATE; fi
    start_gateway "cluster-node.$j" "${node_flags[@]}"
    echo "node $j: binary $imgate" >>"$out/gateways.txt"
    imgate=$current
    cluster_node_pids+=("$gw_pid") cluster_node_http+=("$http_port") cluster_node_ws+=("$ws_port")
    echo "node $j: pid $gw_pid, ws $ws_port, http $http_port" | tee -a "$out/gateways.txt"
    echo "  $(cat "$out/gateway-cluster-node.$j.flags")" >>"$out/gateways.txt"
    gw_pid=
  done
  listen_ws=0 listen_http=0 gateway_threads=2
  for j in $(seq 0 $((k - 1))); do  # connected to Redis, registered
    for _ in $(seq 100); do
      [[ $(curl -s "http://127.0.0.1:${cluster_node_http[$j]}/healthz") == ok ]] && break
      sleep 0.1
    done
  done
  sleep 1

  # login: K members processes at once, each holding its node's connections.
  wait_quiet
  cluster_mark login-start
  for j in $(seq 0 $((k - 1))); do
    mkfifo "$out/cluster-ctl.$j"
    "$bench" members -n "$n" --user-prefix "n$j-" --app-base 101 --apps 1 --inflight "$CLUSTER_INFLIGHT" \
      --heartbeat "$CLUSTER_HEARTBEAT" --first-source $((CLUSTER_FIRST_SOURCE + j)) --ws-port "${cluster_node_ws[$j]}" \
      --http-port "${cluster_node_http[$j]}" --pid "${cluster_node_pids[$j]}" --threads 1 \
      --json-out "$out/cluster-members.$j.jsonl" <"$out/cluster-ctl.$j" \
      >"$out/cluster-members.$j.out" 2>"$out/cluster-members.$j.progress" &
    cluster_member_pids+=($!)
    exec {fd}>"$out/cluster-ctl.$j"
    cluster_member_fds+=("$fd")
  done
  # The machine's memory is shared with other work: below CLUSTER_MIN_AVAILABLE_MB
  # of MemAvailable the watchdog SIGKILLs the load processes and the nodes (their
  # connections close, the kernel's memory comes back) and says so.
  (
    trap - EXIT
    for fd in "${cluster_member_fds[@]}"; do exec {fd}>&-; done  # the members see EOF at the end
    while sleep 1; do
      avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
      if ((avail < CLUSTER_MIN_AVAILABLE_MB)); then
        echo "{\"scenario\":\"cluster-memory-stop\",\"mem_available_mb\":$avail,\"wall\":$(date +%s.%N)}" >>"$out/results.jsonl"
        echo "cluster: MemAvailable $avail MiB < $CLUSTER_MIN_AVAILABLE_MB MiB: SIGKILL to the load processes and nodes" >&2
        kill -KILL "${cluster_member_pids[@]}" "${cluster_node_pids[@]}" 2>/dev/null
        exit 0
      fi
    done
  ) &
  cluster_watchdog_pid=$!
  echo "=== cluster login: $k × imgate-bench members -n $n (load average $(cut -d' ' -f1 /proc/loadavg))"
  cluster_wait_phase setup 900 || true
  cluster_mark login-end
  for j in "${!cluster_member_pids[@]}"; do grep -v '^{"mode"' "$out/cluster-members.$j.out" | sed "s/^/  node $j: /"; done
  # Each node tells Redis about its logins on its own (cluster) thread, behind
  # the login replies: how long until /user/list counts everyone (bounded).
  local held_all=0 listed=null t_end t_listed
  for j in "${!cluster_member_pids[@]}"; do
    held_all=$((held_all + $(json_last "$out/cluster-members.$j.jsonl" 'd["held"]' || echo 0)))
  done
  # Asked of Redis itself where the key is known (SCARD of the room set): a
  # /user/list of 144,000 users leaves ~20 MB in the answering node's heap.
  t_end=$(date +%s.%N)
  # On a Redis Cluster the room set of the one-slot schema ({imgate:101}:room)
  # is asked with redis-cli -c; a schema without that key (0) is counted with
  # /user/list, every 2 s at most (a list of 10^5-10^6 users is costly).
  local via=scard list_at=0
  for _ in $(seq 600); do
    if [[ $CLUSTER_REDIS == single ]]; then
      listed=$(redis-cli -p "${cluster_redis_ports[0]}" SCARD imgate:room:101)
    elif [[ $via == scard ]]; then
      listed=$(redis-cli -c -p "${cluster_redis_ports[0]}" SCARD '{imgate:101}:room' 2>/dev/null || echo 0)
      [[ $listed =~ ^[1-9][0-9]*$ ]] || via=list
    fi
    if [[ $via == list ]] && (($(date +%s) >= list_at)); then
      list_at=$(($(date +%s) + 2))
      listed=$(curl -s --max-time 30 "http://127.0.0.1:${cluster_node_http[0]}/user/list?appID=101" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["userCount"])' 2>/dev/null || echo null)
    fi
    [[ $listed == "$held_all" ]] && break
    sleep 0.2
  done
  t_listed=$(date +%s.%N)
  record "{\"scenario\":\"cluster-listed\",\"via\":\"$via\",\"user_count\":$listed,\"held\":$held_all,\"seconds_after_login\":$(awk -v a="$t_end" -v b="$t_listed" 'BEGIN {printf "%.2f", b - a}')}"
  echo "  /user/list counts $listed of $held_all held, $(awk -v a="$t_end" -v b="$t_listed" 'BEGIN {printf "%.2f", b - a}') s after the last login reply"

  # idle: held, heartbeats every 25 s per connection, nothing pushed.
  echo "=== cluster idle: ${CLUSTER_IDLE_SECONDS} s"
  cluster_mark idle-start
  sleep "$CLUSTER_IDLE_SECONDS"
  cluster_mark idle-end
  for j in "${!cluster_member_pids[@]}"; do cluster_tell "$j" "mark idle"; done
  cluster_wait_phase idle 60 || true

  # fanout: room pushes through node 0's API; member process j expects every
  # accepted push on each of its held connections.
  local accepted held
  if cluster_phase_on fanout; then
  wait_quiet
  cluster_mark fanout-start
  cluster_push fanout --http-port "${cluster_node_http[0]}" --app-base 101 \
    --rate "$CLUSTER_FANOUT_RATE" --duration "$CLUSTER_FANOUT_SECONDS" --send-for "$CLUSTER_FANOUT_SECONDS" \
    --http-connections 2
  accepted=$(json_last "$out/cluster-push.fanout.jsonl" 'd["messages"]["answered_delivered"]' || echo 0)
  for j in "${!cluster_member_pids[@]}"; do
    held=$(json_last "$out/cluster-members.$j.jsonl" 'd["held"]' || echo 0)
    cluster_tell "$j" "mark fanout $((accepted * held))"
  done
  cluster_wait_phase fanout 300 || true
  cluster_mark fanout-end
  fi

  # roompush: room pushes nobody receives; every node gets each from Redis.
  if cluster_phase_on roompush; then
  wait_quiet
  cluster_mark roompush-start
  local roompush_ports
  roompush_ports=$(join_by , "${cluster_node_http[@]}")
  [[ "$CLUSTER_ROOMPUSH_API" == first ]] && roompush_ports=${cluster_node_http[0]}
  cluster_push roompush --node-http-ports "$roompush_ports" --app-base 102 \
    -m "$CLUSTER_ROOMPUSH_COUNT" --rate 0 --http-connections 2
  sleep 1  # the last PUBLISH read by every node
  cluster_mark roompush-end
  fi

  # unicast: every node's API, each push to a user of another node; a ramp
  # over CLUSTER_UNICAST_RATES that stops after the first rate not carried.
  local rate phase unicast_phases=() carried
  cluster_phase_on unicast || CLUSTER_UNICAST_RATES=
  for rate in $CLUSTER_UNICAST_RATES; do
    phase=unicast-$rate
    wait_quiet
    cluster_mark "$phase-start"
    cluster_push "$phase" --node-http-ports "$(join_by , "${cluster_node_http[@]}")" --cross-node \
      --node-users "$n" --user-prefix n --app-base 101 --rate "$rate" \
      --duration "$CLUSTER_UNICAST_SECONDS" --send-for "$CLUSTER_UNICAST_SECONDS" \
      --http-connections "$CLUSTER_UNICAST_HTTP"
    for j in "${!cluster_member_pids[@]}"; do
      cluster_tell "$j" "mark $phase $(json_last "$out/cluster-push.$phase.jsonl" "d['to_node'][$j]" || echo 0)"
    done
    cluster_wait_phase "$phase" 300 || true
    cluster_mark "$phase-end"
    unicast_phases+=("$phase")
    carried=$(python3 - "$out" "$phase" "$CLUSTER_UNICAST_KEEP_UP" "$k" <<'PY'
import json, sys
out, phase, keep_up, k = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
last = lambda f: json.loads(open(f).read().splitlines()[-1])
try:
    m = last(f"{out}/cluster-push.{phase}.jsonl")["messages"]
    lost = sum(last(f"{out}/cluster-members.{j}.jsonl").get("lost", 0) for j in range(k))
    print("yes" if m["sent"] >= keep_up * m["requested"] and lost == 0 else "no")
except Exception:
    print("no")
PY
)
    if [[ $carried != yes ]]; then
      echo "  $rate/s not carried (sent below $CLUSTER_UNICAST_KEEP_UP × the messages due, or lost): the ramp stops"
      break
    fi
  done

  # kill: SIGKILL the last node; its users must leave /user/list everywhere.
  local victim=$((k - 1)) survivors=()
  if cluster_phase_on kill; then
  for j in $(seq 0 $((victim - 1))); do
    ((CLUSTER_KILL_CHECK_NODES == 0 || j < CLUSTER_KILL_CHECK_NODES)) || break
    survivors+=("${cluster_node_http[$j]}")
  done
  for port in "${cluster_redis_ports[@]}"; do redis-cli -p "$port" SLOWLOG RESET >/dev/null; done
  wait_quiet
  cluster_mark kill-start
  echo "=== cluster kill: SIGKILL node $victim (pid ${cluster_node_pids[$victim]}, --node-ttl $CLUSTER_NODE_TTL)"
  "$bench" offline --kill-pid "${cluster_node_pids[$victim]}" --http-port "${cluster_node_http[0]}" \
    --node-http-ports "$(join_by , "${survivors[@]}")" --user-prefix "n$victim-" --app-base 101 \
    --duration $((3 * CLUSTER_NODE_TTL + 30)) --poll-interval "$CLUSTER_POLL_INTERVAL" --threads 1 \
    --json-out "$out/cluster-offline.jsonl" >"$out/cluster-offline.out" 2>"$out/cluster-offline.progress" || true
  grep -v '^{"mode"' "$out/cluster-offline.out" || true
  cluster_mark kill-end
  for port in "${cluster_redis_ports[@]}"; do
    record "{\"scenario\":\"cluster-slowlog\",\"redis_port\":$port,\"entries\":$(redis-cli -p "$port" --json SLOWLOG GET 20 | tr -d '\n')}"
  done
  for j in "${!cluster_member_pids[@]}"; do cluster_tell "$j" "mark kill"; done
  cluster_wait_phase kill 60 || true
  fi

  # end: the members close their connections and finish; then nodes, Redis.
  echo "=== cluster end: closing $((k * n)) connections"
  for fd in "${cluster_member_fds[@]}"; do exec {fd}>&-; done
  cluster_member_fds=()
  wait_gone 900 "${cluster_member_pids[@]}"
  local peaks=()
  for port in "${cluster_redis_ports[@]}"; do
    peaks+=("$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory_peak:\([0-9]*\)$/\1/p')")
  done
  record "{\"scenario\":\"cluster-redis\",\"used_memory_peak\":${peaks[0]},\"used_memory_peak_per_process\":[$(join_by , "${peaks[@]}")]}"
  stop_cluster
  # One results.jsonl: each process's lines, tagged with the scenario and its node.
  for j in $(seq 0 $((k - 1))); do
    sed "s/^{/{\"scenario\":\"cluster-members\",\"node\":$j,/" "$out/cluster-members.$j.jsonl" >>"$out/results.jsonl"
  done
  for phase in fanout roompush "${unicast_phases[@]}"; do
    [[ -f "$out/cluster-push.$phase.jsonl" ]] || continue
    sed "s/^{/{\"scenario\":\"cluster-push\",\"phase\":\"$phase\",/" "$out/cluster-push.$phase.jsonl" >>"$out/results.jsonl"
  done
  [[ ! -f "$out/cluster-offline.jsonl" ]] ||
    sed 's/^{/{"scenario":"cluster-offline",/' "$out/cluster-offline.jsonl" >>"$out/results.jsonl"
}

# ---- bench/run cluster-scale: one appID's unicasts on 1 and on 3 masters ------
#
# For each Redis Cluster size in SCALE_SHARDS (masters, no replicas) and each
# gateway binary (NEW_IMGATE, default the tree's build, and OLD_IMGATE if
# given; the order alternates between sizes), a fresh cluster_scenario with
# SCALE_NODES nodes × SCALE_CONNS users, everyone in appID 101, and only the
# unicast phase: /user/sendMessage (with msgIDs) through every node's API to
# users of other nodes, a ramp over SCALE_RATES for SCALE_SECONDS each that
# stops at the first rate not carried. Each run lands in
# <results>/scale-<side>-<masters>m/; bench/scale_table.py prints per master its
# Redis CPU per unicast and its share, and the derived ceiling.
SCALE_SHARDS=${SCALE_SHARDS:-"1 3"}
SCALE_NODES=${SCALE_NODES:-2}
SCALE_CONNS=${SCALE_CONNS:-2000}
SCALE_RATES=${SCALE_RATES:-"1000 2000 3000 6000 8000"}
SCALE_SECONDS=${SCALE_SECONDS:-10}
SCALE_HTTP=${SCALE_HTTP:-8}  # HTTP connections per node's API

cluster_scale_scenario() {
  local base=$out sides=() order=() shards side i=0 dirs=()
  if [[ -n "${OLD_IMGATE:-}" ]]; then
    cp "$OLD_IMGATE" "$base/bin/imgate-old"
    sides+=(old)
  fi
  cp "${NEW_IMGATE:-$imgate}" "$base/bin/imgate-new"
  sides+=(new)
  echo "cluster-scale: old = ${OLD_IMGATE:-(none)}; new = ${NEW_IMGATE:-$imgate}" | tee -a "$base/machine.txt"
  for shards in $SCALE_SHARDS; do
    order=("${sides[@]}")
    ((i % 2 == 0 || ${#sides[@]} < 2)) || order=(new old)
    i=$((i + 1))
    for side in "${order[@]}"; do
      out=$base/scale-$side-${shards}m
      mkdir -p "$out"
      imgate=$base/bin/imgate-$side
      if [[ $side == old ]]; then imgate_label="old: $OLD_IMGATE"; else imgate_label="new: ${NEW_IMGATE:-this tree}"; fi
      echo
      echo "=== cluster-scale: $side gateway, $shards master(s), $SCALE_NODES nodes × $SCALE_CONNS users in appID 101"
      CLUSTER_REDIS=cluster CLUSTER_SHARDS=$shards CLUSTER_NODES=$SCALE_NODES CLUSTER_CONNS=$SCALE_CONNS \
        CLUSTER_PHASES=unicast CLUSTER_UNICAST_RATES=$SCALE_RATES CLUSTER_UNICAST_SECONDS=$SCALE_SECONDS \
        CLUSTER_UNICAST_HTTP=$SCALE_HTTP cluster_scenario
      python3 "$root/bench/cluster_table.py" "$out/results.jsonl" >"$out/cluster.md" || true
      dirs+=("$out")
    done
  done
  out=$base imgate=$base/bin/imgate-new imgate_label=
  echo
  echo "=== cluster-scale ($base)"
  python3 "$root/bench/scale_table.py" "${dirs[@]}" | tee "$base/scale.md"
}

# ---- bench/run cluster-million: a million logged-in connections as a cluster --
#
# A step-wise ramp over MILLION_STEPS (node counts, default "16 32 56"), each a
# fresh cluster_scenario of that many nodes × MILLION_CONNS (18,000) users on a
# MILLION_SHARDS-master Redis Cluster (3): login, MILLION_IDLE_SECONDS (30: more
# than one heartbeat round) held with heartbeats every MILLION_HEARTBEAT s, one push to everyone, unicasts across
# nodes at MILLION_UNICAST_RATE for 10 s, one node SIGKILLed. The next step runs
# only if this one held every connection and the memory watchdog did not stop
# it. Each step lands in <results>/million-<nodes>/ with its cluster.md.
MILLION_STEPS=${MILLION_STEPS:-"16 32 56"}
MILLION_CONNS=${MILLION_CONNS:-18000}
MILLION_SHARDS=${MILLION_SHARDS:-3}
MILLION_IDLE_SECONDS=${MILLION_IDLE_SECONDS:-30}
MILLION_UNICAST_RATE=${MILLION_UNICAST_RATE:-1000}
# A heartbeat costs the node ~25 µs and the load client ~17 µs (measured at 288,000): every 25 s
# from 1,000,000 connections that is ~1.7 of the 2 cores, so the million heartbeats every 60 s
# (the gateway drops a connection after 360 s without one).
MILLION_HEARTBEAT=${MILLION_HEARTBEAT:-60}
# Setups in flight per load process: 32 processes × 512 starved the 2 cores (setup timeouts of
# 15 s, Redis command timeouts on the nodes); 64 each keeps the login CPU-bound, not queued.
MILLION_INFLIGHT=${MILLION_INFLIGHT:-64}

cluster_million_scenario() {
  local base=$out k held
  for k in $MILLION_STEPS; do
    out=$base/million-$k
    mkdir -p "$out"
    echo
    echo "=== cluster-million: $k nodes × $MILLION_CONNS = $((k * MILLION_CONNS)) connections, $MILLION_SHARDS-master Redis Cluster"
    CLUSTER_REDIS=cluster CLUSTER_SHARDS=$MILLION_SHARDS CLUSTER_NODES=$k CLUSTER_CONNS=$MILLION_CONNS \
      CLUSTER_PHASES="fanout unicast kill" CLUSTER_IDLE_SECONDS=$MILLION_IDLE_SECONDS \
      CLUSTER_FANOUT_RATE=1 CLUSTER_FANOUT_SECONDS=1 CLUSTER_UNICAST_RATES=$MILLION_UNICAST_RATE \
      CLUSTER_KILL_CHECK_NODES=3 CLUSTER_HEARTBEAT=$MILLION_HEARTBEAT \
      CLUSTER_INFLIGHT=$MILLION_INFLIGHT cluster_scenario
    python3 "$root/bench/cluster_table.py" "$out/results.jsonl" | tee "$out/cluster.md" || true
    held=$(python3 -c 'import json, sys
print(sum(json.loads(l).get("held", 0) for l in open(sys.argv[1])
          if "\"phase\":\"setup\"" in l and "cluster-members" in l))' "$out/results.jsonl" 2>/dev/null || echo 0)
    if grep -q cluster-memory-stop "$out/results.jsonl" || ((held < k * MILLION_CONNS)); then
      echo "cluster-million: $k nodes held $held of $((k * MILLION_CONNS)); the ramp stops here"
      break
    fi
  done
  out=$base
}
