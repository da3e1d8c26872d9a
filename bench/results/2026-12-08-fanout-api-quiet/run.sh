#!/bin/bash
# usage: fapi.sh IMGATE BENCH [extra bench args]
imgate=$1; bench=$2; shift 2
d=$(mktemp -d)
$imgate --config "" --app-ids 101 --max-connections 10100 --ip-max-connections 0 --ip-upgrade-rate 0 --bind 127.0.0.1 --ws-port 0 --http-port 0 --ready-file $d/ready --threads 2 --log-level warn >$d/gw.log 2>&1 &
gw=$!
for _ in $(seq 100); do [[ -s $d/ready ]] && break; sleep 0.1; done
ws=$(sed -n 's/.*"ws":\([0-9]*\).*/\1/p' $d/ready); http=$(sed -n 's/.*"http":\([0-9]*\).*/\1/p' $d/ready)
$bench fanout -n 10000 --conns-per-user 100 --app-base 101 --rate 200 --duration 10 --send-for 10 --http-connections 8 --allow-loss "$@" --ws-port $ws --http-port $http --pid $gw --threads 2 --json-out "$JSON" 2>/dev/null | grep -E "API while"
kill $gw; wait $gw
