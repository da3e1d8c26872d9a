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
CLUSTER_POLL_INTERVAL=${CLUSTER_POLL_INTERVAL:-0.05}  # kill: polls of /user/online (3 users)
CLUSTER_INFLIGHT=${CLUSTER_INFLIGHT:-512}         # setups in flight per members process (--inflight)
CLUSTER_FIRST_SOURCE=${CLUSTER_FIRST_SOURCE:-10}  # process j connects from 127.0.0.<this + j>
CLUSTER_REDIS=${CLUSTER_REDIS:-single}            # single | cluster
CLUSTER_SHARDS=${CLUSTER_SHARDS:-3}               # masters of the Redis Cluster
CLUSTER_OLD_IMGATE=${CLUSTER_OLD_IMGATE:-}        # imgate binary of the odd-numbered nodes ("" = all current)
CLUSTER_ROOMPUSH_API=${CLUSTER_ROOMPUSH_API:-all} # all | first: whose APIs the roompush phase uses

cluster_node_pids=() cluster_node_http=() cluster_node_ws=() cluster_member_pids=() cluster_member_fds=()
cluster_redis_pids=() cluster_redis_ports=()

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
  for fd in "${cluster_member_fds[@]}"; do exec {fd}>&- 2>/dev/null || true; done
  cluster_member_fds=()
  stop_all "${cluster_member_pids[@]}"
  stop_all "${cluster_node_pids[@]}"
  stop_all "${cluster_redis_pids[@]}"
  cluster_member_pids=() cluster_node_pids=() cluster_redis_pids=()
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
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$out/redis-cluster-create.log"
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

# cluster_mark LABEL: CPU ticks and RSS of every process of the scenario, now.
cluster_mark() {
  local p nodes=() rss=() redis=() members=() nsw=() rsw=()
  for p in "${cluster_node_pids[@]}"; do
    nodes+=("$(ticks_or_null "$p")") rss+=("$(rss_or_null "$p")") nsw+=("$(switches_or_null "$p")")
  done
  for p in "${cluster_redis_pids[@]}"; do redis+=("$(ticks_or_null "$p")") rsw+=("$(switches_or_null "$p")"); done
  for p in "${cluster_member_pids[@]}"; do members+=("$(ticks_or_null "$p")"); done
  local busy  # the whole machine's CPU ticks other than idle and iowait (/proc/stat)
  busy=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
  record "{\"scenario\":\"cluster-mark\",\"at\":\"$1\",\"machine_busy_ticks\":$busy,\"wall\":$(date +%s.%N),\"load\":$(cut -d' ' -f1 /proc/loadavg),\"hz\":$(getconf CLK_TCK),\"nodes_ticks\":[$(join_by , "${nodes[@]}")],\"nodes_rss_kb\":[$(join_by , "${rss[@]}")],\"redis_ticks\":[$(join_by , "${redis[@]}")],\"members_ticks\":[$(join_by , "${members[@]}")],\"nodes_switches\":[$(join_by , "${nsw[@]}")],\"redis_switches\":[$(join_by , "${rsw[@]}")]}"
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
    if ! "$imgate" --help 2>/dev/null | grep -q -- --redis-cluster; then
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
  record "{\"scenario\":\"cluster-config\",\"nodes\":$k,\"conns_per_node\":$n,\"node_threads\":$CLUSTER_NODE_THREADS,\"inflight\":$CLUSTER_INFLIGHT,\"node_ttl\":$CLUSTER_NODE_TTL,\"redis\":\"$CLUSTER_REDIS\",\"redis_processes\":${#cluster_redis_pids[@]},\"idle_seconds\":$CLUSTER_IDLE_SECONDS,\"fanout_rate\":$CLUSTER_FANOUT_RATE,\"fanout_seconds\":$CLUSTER_FANOUT_SECONDS,\"roompush_count\":$CLUSTER_ROOMPUSH_COUNT,\"roompush_api\":\"$CLUSTER_ROOMPUSH_API\",\"old_imgate\":\"$CLUSTER_OLD_IMGATE\",\"unicast_rates\":[$(join_by , $CLUSTER_UNICAST_RATES)],\"unicast_seconds\":$CLUSTER_UNICAST_SECONDS,\"load_before\":$(cut -d' ' -f1 /proc/loadavg)}"

  # The nodes: one room (101), quiet (no enter / exit: 144,000 users in one
  # room would cost 144,000^2 of them), ports below the ephemeral range.
  node_flags=(--app-ids 101,102 --quiet-app-ids 101,102 --max-connections $((n + 100))
    --node-ttl "$CLUSTER_NODE_TTL" "${redis_flags[@]}")
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
      --first-source $((CLUSTER_FIRST_SOURCE + j)) --ws-port "${cluster_node_ws[$j]}" \
      --http-port "${cluster_node_http[$j]}" --pid "${cluster_node_pids[$j]}" --threads 1 \
      --json-out "$out/cluster-members.$j.jsonl" <"$out/cluster-ctl.$j" \
      >"$out/cluster-members.$j.out" 2>"$out/cluster-members.$j.progress" &
    cluster_member_pids+=($!)
    exec {fd}>"$out/cluster-ctl.$j"
    cluster_member_fds+=("$fd")
  done
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
  for _ in $(seq 600); do
    if [[ $CLUSTER_REDIS == single ]]; then
      listed=$(redis-cli -p "${cluster_redis_ports[0]}" SCARD imgate:room:101)
    else
      listed=$(curl -s "http://127.0.0.1:${cluster_node_http[0]}/user/list?appID=101" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["userCount"])' 2>/dev/null || echo null)
    fi
    [[ $listed == "$held_all" ]] && break
    sleep 0.2
  done
  t_listed=$(date +%s.%N)
  record "{\"scenario\":\"cluster-listed\",\"user_count\":$listed,\"held\":$held_all,\"seconds_after_login\":$(awk -v a="$t_end" -v b="$t_listed" 'BEGIN {printf "%.2f", b - a}')}"
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
  wait_quiet
  cluster_mark fanout-start
  cluster_push fanout --http-port "${cluster_node_http[0]}" --app-base 101 \
    --rate "$CLUSTER_FANOUT_RATE" --duration "$CLUSTER_FANOUT_SECONDS" --send-for "$CLUSTER_FANOUT_SECONDS" \
    --http-connections 2
  local accepted held
  accepted=$(json_last "$out/cluster-push.fanout.jsonl" 'd["messages"]["answered_delivered"]' || echo 0)
  for j in "${!cluster_member_pids[@]}"; do
    held=$(json_last "$out/cluster-members.$j.jsonl" 'd["held"]' || echo 0)
    cluster_tell "$j" "mark fanout $((accepted * held))"
  done
  cluster_wait_phase fanout 300 || true
  cluster_mark fanout-end

  # roompush: room pushes nobody receives; every node gets each from Redis.
  wait_quiet
  cluster_mark roompush-start
  local roompush_ports
  roompush_ports=$(join_by , "${cluster_node_http[@]}")
  [[ "$CLUSTER_ROOMPUSH_API" == first ]] && roompush_ports=${cluster_node_http[0]}
  cluster_push roompush --node-http-ports "$roompush_ports" --app-base 102 \
    -m "$CLUSTER_ROOMPUSH_COUNT" --rate 0 --http-connections 2
  sleep 1  # the last PUBLISH read by every node
  cluster_mark roompush-end

  # unicast: every node's API, each push to a user of another node.
  local rate phase
  for rate in $CLUSTER_UNICAST_RATES; do
    phase=unicast-$rate
    wait_quiet
    cluster_mark "$phase-start"
    cluster_push "$phase" --node-http-ports "$(join_by , "${cluster_node_http[@]}")" --cross-node \
      --node-users "$n" --user-prefix n --app-base 101 --rate "$rate" \
      --duration "$CLUSTER_UNICAST_SECONDS" --send-for "$CLUSTER_UNICAST_SECONDS" --http-connections 2
    for j in "${!cluster_member_pids[@]}"; do
      cluster_tell "$j" "mark $phase $(json_last "$out/cluster-push.$phase.jsonl" "d['to_node'][$j]" || echo 0)"
    done
    cluster_wait_phase "$phase" 300 || true
    cluster_mark "$phase-end"
  done

  # kill: SIGKILL the last node; its users must leave /user/list everywhere.
  local victim=$((k - 1)) survivors=()
  for j in $(seq 0 $((victim - 1))); do survivors+=("${cluster_node_http[$j]}"); done
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

  # end: the members close their connections and finish; then nodes, Redis.
  echo "=== cluster end: closing $((k * n)) connections"
  for fd in "${cluster_member_fds[@]}"; do exec {fd}>&-; done
  cluster_member_fds=()
  wait_gone 900 "${cluster_member_pids[@]}"
  record "{\"scenario\":\"cluster-redis\",\"used_memory_peak\":$(redis-cli -p "${cluster_redis_ports[0]}" INFO memory | tr -d '\r' | sed -n 's/^used_memory_peak:\([0-9]*\)$/\1/p')}"
  stop_cluster
  # One results.jsonl: each process's lines, tagged with the scenario and its node.
  for j in $(seq 0 $((k - 1))); do
    sed "s/^{/{\"scenario\":\"cluster-members\",\"node\":$j,/" "$out/cluster-members.$j.jsonl" >>"$out/results.jsonl"
  done
  for phase in fanout roompush $(printf 'unicast-%s ' $CLUSTER_UNICAST_RATES); do
    sed "s/^{/{\"scenario\":\"cluster-push\",\"phase\":\"$phase\",/" "$out/cluster-push.$phase.jsonl" >>"$out/results.jsonl"
  done
  sed 's/^{/{"scenario":"cluster-offline",/' "$out/cluster-offline.jsonl" >>"$out/results.jsonl"
}
