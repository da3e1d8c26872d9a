#!/bin/bash
# stime.sh BINARY CERT KEY: server CPU per full and per resumed TLS handshake (openssl s_time, 5 s each)
b=$1; cert=$2; key=$3
$b --config "" --bind 127.0.0.1 --ws-port 22443 --http-port 22444 --tls-cert $cert --tls-key $key --log-level warn --ip-upgrade-rate 0 --ip-max-connections 0 >/dev/null 2>&1 &
pid=$!; sleep 0.5
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
for mode in -new -reuse; do
  c0=$(cpu)
  out=$(openssl s_time -connect 127.0.0.1:22443 $mode -time 5 2>/dev/null | grep "connections in" | head -1)
  c1=$(cpu); n=$(echo "$out" | awk '{print $1}')
  echo "$mode: $out; server CPU per handshake: $(python3 -c "print(round(($c1-$c0)*1e6/100/$n,1))") us"
done
kill $pid; wait $pid 2>/dev/null
