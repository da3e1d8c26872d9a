#!/bin/bash
# [LIMITS=default] flood.sh FLOODERS: push latency p99 over wss while FLOODERS `openssl s_time
# -new` processes make full TLS handshakes as fast as they can against the same gateway (from
# 127.0.0.1). Per-address limits off, or with LIMITS=default the gateway's defaults (the members
# then come from 100 addresses, 20 each).
flooders=$1
limits=(--ip-max-connections 0 --ip-upgrade-rate 0)
sources=()
if [[ "${LIMITS:-off}" == default ]]; then limits=(); sources=(--first-source 9 --per-source 20); fi
d=$(mktemp -d)
cd $d
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost -keyout key.pem -out cert.pem 2>/dev/null
/work/main/build/release/src/imgate --config "" --app-ids 101 --bind 127.0.0.1 --ws-port 0 --http-port 0 --ready-file ready.json --threads 2 --log-level warn "${limits[@]}" --tls-cert cert.pem --tls-key key.pem > gw.log 2>&1 &
gw=$!
for _ in $(seq 100); do [[ -s ready.json ]] && break; sleep 0.1; done
ws=$(sed -n 's/.*"ws":\([0-9]*\).*/\1/p' ready.json); http=$(sed -n 's/.*"http":\([0-9]*\).*/\1/p' ready.json)
pids=()
if ((flooders > 0)); then
  for i in $(seq $flooders); do openssl s_time -connect 127.0.0.1:$ws -new -time 25 > flood-$i.txt 2>&1 & pids+=($!); done
fi
/work/main/build/release/bench/imgate-bench fanout "${sources[@]}" -n 2000 --app-base 101 --rate 20 --duration 15 --tls --tls-insecure --ws-port $ws --http-port $http --pid $gw --threads 1 --json-out $d/r.jsonl 2>/dev/null | grep -E "latency|deliveries" | head -4
for p in "${pids[@]}"; do wait $p; done
for i in $(seq $flooders); do grep "connections in" flood-$i.txt | head -1; done
kill $gw; wait $gw 2>/dev/null
python3 -c "
import json
r=json.loads(open('$d/r.jsonl').readline()); d=r['deliveries']; l=d['latency']
print('flooders $flooders: deliveries', d['received'], 'lost', d['lost'], 'latency p50/p99/max ms', l['p50_us']/1000, l['p99_us']/1000, l['max_us']/1000)"
